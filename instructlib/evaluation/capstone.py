"""Chapter 09: the capstone experiment — chapter 05's recipe on several training sets, one token budget, several seeds.

``run_capstone(train_sets, eval_sets, seeds=...)`` takes the training data *by condition*
(``{"hand-written": records, "+ templates": records, ...}``), fine-tunes the course TinyGPT on each
with chapter 05's full fine-tuning recipe for the same number of training tokens, once per seed, and
evaluates every model with the harness. It returns the per-seed table and a summary with the mean
over seeds and a Student-t 95 % interval. Every fine-tune is a run of chapter 05's cache
(``train.experiment.cached_train``: keyed by the encoded data, the training configuration with its
seed, and the base model), so a rerun only evaluates.

Notebook 09 uses ``run_capstone`` to evaluate chapter 05's recipe over seeds; its capstone proper
runs on chapter 06's testbed (``evaluation.wording_capstone``). Seed 0 of each capstone condition is
a named model, ``load_model("tinygpt-sft-all")`` etc. (``models.loader.FINETUNED_ALIASES``):
``capstone_model(name)`` builds one (a cache hit after the notebook ran), and importing this module
registers it as the loader's on-demand builder.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from instructlib.config import get_device
from instructlib.data.collate import DataCollatorForInstructions, encode_dataset
from instructlib.data.records import Record
from instructlib.evaluation.bootstrap import mean_over_seeds
from instructlib.evaluation.harness import EvalTable, evaluate
from instructlib.files import build_once, move_aside
from instructlib.models.loader import (FINETUNED_ALIASES, finetuned_dir, finetuned_path, register_finetuned_builder,
                                       save_finetuned)

if TYPE_CHECKING:
    from instructlib.train import TrainConfig


@dataclass(frozen=True)
class Recipe:
    """Chapter 05's full fine-tuning recipe for TinyGPT (notebook 05, section 5)."""

    steps: int = 1000                 # optimizer steps of the reference condition
    batch_size: int = 32
    lr: float = 4e-3
    warmup_fraction: float = 0.05
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.01
    eval_every_fraction: float = 0.1  # evaluate 10 times per run ...
    patience: int = 4                 # ... and stop after 4 evaluations without improvement
    template: str = "chat"


def _records(data: Sequence[Any]) -> list[Record]:
    return [getattr(x, "record", x) for x in data]


def mean_tokens(encoded: Sequence[dict]) -> float:
    """Mean tokens per encoded example (prompt + response + end-of-text)."""
    return sum(len(e["input_ids"]) for e in encoded) / len(encoded)


def steps_for_budget(encoded: Sequence[dict], batch_size: int, token_budget: float) -> int:
    """Optimizer steps that show the model about ``token_budget`` real tokens of this data set."""
    return max(1, round(token_budget / (batch_size * mean_tokens(encoded))))


def recipe_config(recipe: Recipe, steps: int, seed: int, with_eval: bool, progress: bool = True) -> TrainConfig:
    """Chapter 05's recipe as a ``TrainConfig`` for ``steps`` optimizer steps (validation only ``with_eval``)."""
    from instructlib.train import TrainConfig

    return TrainConfig(max_steps=steps, batch_size=recipe.batch_size, lr=recipe.lr,
                       warmup_steps=max(1, round(steps * recipe.warmup_fraction)), min_lr_ratio=recipe.min_lr_ratio,
                       weight_decay=recipe.weight_decay,
                       eval_every=max(1, round(steps * recipe.eval_every_fraction)) if with_eval else 0,
                       patience=recipe.patience if with_eval else None, group_by_length=True, seed=seed,
                       progress=progress)


def _finetune_run(name: str, records: Sequence[Any], steps: int, seed: int, recipe: Recipe,
                  eval_records: Optional[Sequence[Any]], base_name: str, progress: bool) -> dict:
    """The arguments of ``cached_train`` for one capstone fine-tune (the run's identity)."""
    import copy

    from instructlib.models import load_model, load_tokenizer
    from instructlib.models.course import course_model_dir

    if base_name != "tinygpt":
        raise ValueError("the capstone fine-tunes the course TinyGPT; other bases are future work")
    base, tokenizer = load_model(base_name), load_tokenizer(base_name)
    max_len = base.config.block_size
    train_data = encode_dataset(_records(records), tokenizer, max_len, recipe.template)[0]
    eval_data = encode_dataset(_records(eval_records), tokenizer, max_len, recipe.template)[0] if eval_records else None
    safe = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    return {"name": f"capstone-{safe}-seed{seed}", "make_model": lambda: copy.deepcopy(base), "train_data": train_data,
            "collate": DataCollatorForInstructions(tokenizer),
            "config": recipe_config(recipe, steps, seed, eval_data is not None, progress),
            "eval_data": eval_data, "key": {"base": course_model_dir().name}}


def cached_finetune(name: str, records: Sequence[Any], *, steps: int, seed: int, recipe: Recipe = Recipe(),
                    eval_records: Optional[Sequence[Any]] = None, base_name: str = "tinygpt", progress: bool = True):
    """Chapter 05's recipe on the course model through chapter 05's run cache: (model, meta), trained only on a miss.

    The run is ``train.experiment.cached_train``'s (keyed by the encoded data, the training
    configuration and the base model's version), stored as ``sft-runs/capstone-<name>-seed<seed>-...``.
    """
    from instructlib.train.experiment import cached_train

    run = cached_train(**_finetune_run(name, records, steps, seed, recipe, eval_records, base_name, progress),
                       device=get_device())
    info = run.info
    meta = {"name": name, "seed": seed, "steps_planned": info["config"]["max_steps"], "steps": info["step"],
            "tokens": info["tokens"], "best_val_loss": info["best_val_loss"], "stopped_early": info["stopped_early"],
            "examples": len(records), "recipe": asdict(recipe), "base": info["key"]["base"], "run": run.path.name}
    return run.model.cpu().eval(), meta


def run_capstone(train_sets: Mapping[str, Sequence[Any]], eval_sets: Mapping[str, Sequence[Any]], *,
                 seeds: Sequence[int] = (0, 1, 2), token_budget: Optional[float] = None, recipe: Recipe = Recipe(),
                 metrics: Sequence[str] = ("em", "strict", "loose", "rougeL"), eval_records: Optional[Sequence[Any]] = None,
                 include_base: bool = True, max_new_tokens: int = 20, progress: bool = True) -> tuple[EvalTable, Any, list[dict]]:
    """Fine-tune per (condition, seed) under one token budget and evaluate; (per-seed table, summary, runs).

    ``token_budget`` defaults to ``recipe.steps`` batches of the *first* condition (chapter 05's budget
    when that is the hand-written set). The summary DataFrame has one row per (condition, data,
    metric): mean over seeds with a Student-t 95 % interval, and the tokens each condition trained on.
    """
    from instructlib.models import LLM, load_llm, load_tokenizer

    if not train_sets:
        raise ValueError("run_capstone needs at least one training set")
    tokenizer = load_tokenizer("tinygpt")
    max_len = load_model_block_size()
    encoded = {c: encode_dataset(_records(d), tokenizer, max_len, recipe.template)[0] for c, d in train_sets.items()}
    first = next(iter(encoded.values()))
    budget = token_budget or recipe.steps * recipe.batch_size * mean_tokens(first)
    models: dict[str, Any] = {}
    runs: list[dict] = []
    if include_base:
        models["base"] = load_llm("tinygpt")
    for condition, data in train_sets.items():
        steps = steps_for_budget(encoded[condition], recipe.batch_size, budget)
        for seed in seeds:
            model, meta = cached_finetune(condition, data, steps=steps, seed=seed, recipe=recipe,
                                          eval_records=eval_records, progress=progress)
            models[f"{condition}/seed{seed}"] = LLM.wrap(model, tokenizer, name=f"{condition}/seed{seed}")
            runs.append({"condition": condition, "seed": seed, **{k: meta[k] for k in
                         ("examples", "steps_planned", "steps", "tokens", "best_val_loss", "stopped_early")}})
    table = evaluate(models, eval_sets, metrics, max_new_tokens=max_new_tokens, progress=progress)
    return table, summarize_seeds(table, runs), runs


def load_model_block_size() -> int:
    """Context length of the course TinyGPT (prompt + answer must fit)."""
    from instructlib.models.course import course_model_meta

    return int(course_model_meta()["gpt_config"]["block_size"])


def summarize_seeds(table: EvalTable, runs: Sequence[dict] = ()) -> Any:
    """One row per (condition, data, metric): the mean over seeds with a Student-t 95 % interval.

    A model evaluated once (the base model: no seed) keeps its bootstrap interval over items;
    the ``interval`` column says which kind each row has.
    """
    import pandas as pd

    groups: dict[tuple[str, str, str], list[dict]] = {}
    for row in table.rows:
        condition = row["model"].rsplit("/seed", 1)[0]
        groups.setdefault((condition, row["data"], row["metric"]), []).append(row)
    tokens: dict[str, list[int]] = {}
    for r in runs:
        tokens.setdefault(r["condition"], []).append(r["tokens"])
    out = []
    for (condition, data, metric), rows in groups.items():
        if len(rows) == 1:
            low, high, kind = rows[0]["low"], rows[0]["high"], "items (bootstrap)"
            mean = rows[0]["value"]
        else:
            iv = mean_over_seeds([r["value"] for r in rows])
            mean, low, high, kind = iv.value, iv.low, iv.high, "seeds (t)"
        seen = tokens.get(condition)
        out.append({"condition": condition, "data": data, "metric": metric, "mean": mean, "low": low, "high": high,
                    "runs": len(rows), "interval": kind,
                    "train_tokens": sum(seen) / len(seen) if seen else math.nan})
    return pd.DataFrame(out)


# --- the named models of the course's capstone (chapter 09's testbed runs) ---------------------

# load_model aliases (models.loader.FINETUNED_ALIASES) -> capstone condition (evaluation.wording_capstone)
ALIAS_CONDITIONS = {
    "tinygpt-sft-hand": "hand-written",
    "tinygpt-sft-templates": "+ templates",
    "tinygpt-sft-backtranslation": "+ back-translation",
    "tinygpt-sft-selfinstruct": "+ self-instruct",
    "tinygpt-sft-all": "all",
    "tinygpt-sft-control": "positive control",
}


def _condition(name: str) -> str:
    if name not in ALIAS_CONDITIONS:
        raise KeyError(f"{name!r} is not a capstone model; known: {', '.join(ALIAS_CONDITIONS)}")
    return ALIAS_CONDITIONS[name]


def build_capstone_model(name: str, out: Path, progress: bool = False) -> None:
    """Write the alias ``name`` into ``out``: its condition's seed 0 of notebook 09's capstone (cached run)."""
    from instructlib.evaluation.wording_capstone import course_run

    condition = _condition(name)
    run = course_run(condition, 0, progress)
    save_finetuned(out, run.model.cpu().eval(), {
        "alias": name, "condition": condition, "seed": 0, "run": run.path.name, "steps": run.info["step"],
        "steps_planned": run.info["config"]["max_steps"], "tokens": run.info["tokens"],
        "base": run.info["key"]["base"], "description": FINETUNED_ALIASES[name]})


def capstone_model(name: str, progress: bool = True) -> Path:
    """Build (once) the named fine-tuned model and return its directory; ``load_model(name)`` then loads it.

    A directory built from another run (the condition's data, the testbed or the base changed since)
    is moved aside to ``<dir>.replaced-<n>`` (kept, not deleted) and the alias is rebuilt.
    """
    import json

    from instructlib.evaluation.wording_capstone import course_run

    condition = _condition(name)
    path = finetuned_path(name)
    if (path / "meta.json").exists():
        current = course_run(condition, 0, progress).path.name
        if json.loads((path / "meta.json").read_text()).get("run") != current:
            move_aside(path)
    if not (path / "meta.json").exists():
        build_once(path, lambda out: build_capstone_model(name, out, progress))
    return finetuned_dir(name)


for _name in ALIAS_CONDITIONS:
    register_finetuned_builder(_name, build_capstone_model)
