"""Chapter 00: the course's models — ``load_model`` / ``load_tokenizer`` by name (``models.loader``),
the course TinyGPT's cache (``models.course``), and ``load_llm``: the ``LLM`` interface every later
chapter generates text through (``models.llm``).
"""
from .loader import (HUB_ALIASES, SMOLLM2, SMOLLM2_GGUF, SMOLLM2_INSTALL, SMOLLM2_PACKAGE, ModelNotAvailableError,
                     load_model, load_tokenizer, resolve, smollm2_checkpoint, smollm2_package_dir,
                     smollm2_tokenizer_dir)
from .llm import LLM, ScriptedLLM, load_llm

__all__ = ["HUB_ALIASES", "LLM", "ModelNotAvailableError", "SMOLLM2", "SMOLLM2_GGUF", "SMOLLM2_INSTALL",
           "SMOLLM2_PACKAGE", "ScriptedLLM", "load_llm", "load_model", "load_tokenizer", "resolve",
           "smollm2_checkpoint", "smollm2_package_dir", "smollm2_tokenizer_dir"]
