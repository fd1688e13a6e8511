"""Chapter 10: the model this chapter deploys — chapter 09's hand-written testbed model as a transformers directory.

The served model is condition (a) of chapter 09's capstone, seed 0 (``evaluation.wording_capstone.course_run``,
also ``load_model("tinygpt-sft-hand")``): the course TinyGPT fine-tuned with chapter 05's loop on chapter
06's testbed — four word families, each in chapter 05's six hand-written phrasings. It does the tasks in
those phrasings and handles new wordings badly, which is what the online round sets out to change.

``deployed_model_dir()`` exports that run once (per run: a retrained run gets a new directory) as a
GPT-2 directory with its tokenizer, which ``load_model(dir)``, ``instructlib serve --model DIR`` and
peft adapters all accept; ``deployed_info()`` says what it was trained on.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path

from ..config import cache_dir, get_profile

_EXPORTED: dict[tuple[str, str], Path] = {}  # (cache, profile) -> directory: the run is loaded once per process


def deployed_model_dir(progress: bool = True) -> Path:
    """Directory of the deployed model (GPT-2 format + tokenizer + ``deployed.json``), exported on first use."""
    where = (str(cache_dir()), get_profile().name)
    if where in _EXPORTED and _EXPORTED[where].is_dir():
        return _EXPORTED[where]
    from ..evaluation.wording_capstone import course_run
    from ..files import build_once
    from ..generate.wording_experiment import HAND, TESTBED_FAMILIES, course_testbed, hand_wordings
    from ..models import load_tokenizer

    run = course_run(HAND, 0, progress)
    key = hashlib.sha256(run.path.name.encode()).hexdigest()[:10]

    def build(out: Path) -> None:
        tokenizer = load_tokenizer("tinygpt")
        model = run.model.cpu().eval()
        hf = model.to_hf(eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.eos_token_id,
                         pad_token_id=tokenizer.pad_token_id)
        hf.save_pretrained(out)
        tokenizer.save_pretrained(out)
        testbed = course_testbed(max_len=model.config.block_size)
        (out / "deployed.json").write_text(json.dumps({
            "condition": HAND, "seed": 0, "run": run.path.name, "families": list(TESTBED_FAMILIES),
            "wordings": hand_wordings(TESTBED_FAMILIES), "testbed": asdict(testbed),
            "steps": run.info["step"], "tokens": run.info["tokens"]}, indent=1))

    _EXPORTED[where] = build_once(cache_dir() / f"deploy-tinygpt-{get_profile().name}-{key}", build)
    return _EXPORTED[where]


def load_deployed(progress: bool = True):
    """(model, tokenizer) of ``deployed_model_dir``: a transformers GPT2LMHeadModel in eval mode."""
    from ..models import load_model, load_tokenizer

    path = str(deployed_model_dir(progress))
    return load_model(path), load_tokenizer(path)


def deployed_info() -> dict:
    """What the deployed model was trained on: condition, seed, run, families, wordings, testbed."""
    return json.loads((deployed_model_dir(progress=False) / "deployed.json").read_text())
