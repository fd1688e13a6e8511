"""Chapter 06: the template-count experiment — fine-tune on 1, 6 or all templates, measure new phrasings.

One run = one (condition, seed): render the training inputs of ``families`` with the condition's
templates (``template_data.templated_examples``; or chapter 05's phrasings for ``"ch05"``),
fine-tune a copy of the base model with chapter 05's loop (``instructlib.train``) for a fixed number
of steps, and measure exact match on new inputs in three settings: (a) the condition's own
templates, (b) the held-out templates, (c) chapter 05's held-out phrasings.

Runs are slow, so ``run_grid`` keeps each finished run as one row of a ``JSONLStage`` file: a rerun
(or several processes, each given some of the seeds) computes only what is missing.
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence, Union

from ..data.collate import DataCollatorForInstructions, encode_dataset
from ..data.verifiable import Example, exact_match, make_examples, score_by_family
from ..train import TrainConfig, train
from ..train.answers import generate_answers
from .stage import JSONLStage
from .template_data import templated_examples

Condition = Union[int, None, str]  # n templates, None = all, "ch05" = chapter 05's phrasings, "none" = no training
SETTINGS = ("a_seen", "b_heldout", "c_ch05")


@dataclass(frozen=True)
class ExperimentSizes:
    """Everything that defines a run besides condition and seed (part of the cache key)."""

    families: tuple[str, ...]
    n_train: int = 200
    n_eval: int = 25
    steps: int = 250
    batch: int = 32
    lr: float = 4e-3
    max_len: int = 128
    max_new_tokens: int = 20


# Later chapters add conditions by name (chapter 07: paraphrase_data.EXPERIMENT_CONDITIONS):
# ``builder(split, n_per_family, seed, families) -> list[Example]``.
CONDITION_BUILDERS: dict[str, Callable[..., list[Example]]] = {}


def condition_examples(condition: Condition, split: str, n: int, seed: int, families: Sequence[str]) -> list[Example]:
    """A condition's examples of ``split``: rendered with its templates, chapter 05's phrasings, or a named builder."""
    if isinstance(condition, str) and condition in CONDITION_BUILDERS:
        return CONDITION_BUILDERS[condition](split, n, seed, families)
    if condition == "ch05":
        return make_examples(split, n, seed, families=list(families))
    return templated_examples(split, n, n_templates=condition, seed=seed, families=list(families))


def evaluation_sets(sizes: ExperimentSizes) -> dict[str, list[Example]]:
    """The fixed sets (b) held-out templates and (c) chapter 05's held-out phrasings (new inputs)."""
    fams = list(sizes.families)
    return {"b_heldout": templated_examples("test", sizes.n_eval, seed=0, templates="heldout", families=fams),
            "c_ch05": make_examples("test", sizes.n_eval, seed=0, phrasings="heldout", families=fams)}


def answers(model, tokenizer, examples: Sequence[Example], max_new_tokens: int = 20) -> list[str]:
    """Greedy answers (chat template, cut at end of text and at the first newline)."""
    return generate_answers(model, tokenizer, [e.record for e in examples], template="chat",
                            max_new_tokens=max_new_tokens)


def run_condition(base, tokenizer, condition: Condition, seed: int, sizes: ExperimentSizes, device=None,
                  prepare: Optional[Callable] = None) -> dict:
    """Fine-tune a copy of ``base`` (``prepare``-d, e.g. wrapped with LoRA) on one condition; score the settings."""
    from ..config import set_seed

    set_seed(seed)
    model = copy.deepcopy(base)
    row = {"condition": condition, "seed": seed, "tokens": 0, "final_loss": None}
    if condition != "none":
        train_set = condition_examples(condition, "train", sizes.n_train, seed, sizes.families)
        data, _ = encode_dataset([e.record for e in train_set], tokenizer, sizes.max_len, "chat")
        model = prepare(model) if prepare else model
        config = TrainConfig(max_steps=sizes.steps, batch_size=sizes.batch, lr=sizes.lr,
                             warmup_steps=max(1, sizes.steps // 20), min_lr_ratio=0.1, weight_decay=0.01,
                             group_by_length=True, seed=seed, progress=False)
        result = train(model, data, DataCollatorForInstructions(tokenizer), config, device=device)
        row.update(tokens=result.tokens, final_loss=result.history.train[-1]["loss"] if result.history.train else None)
    seen = [] if condition == "none" else condition_examples(condition, "test", sizes.n_eval, seed, sizes.families)
    sets = {"a_seen": seen, **evaluation_sets(sizes)}
    for name, examples in sets.items():
        if not examples:
            row[name], row[name + "_family"], row[name + "_predictions"] = None, {}, []
            continue
        preds = answers(model, tokenizer, examples, sizes.max_new_tokens)
        row[name] = exact_match(preds, examples)
        row[name + "_family"] = score_by_family(preds, examples)
        row[name + "_predictions"] = preds
    return row


def run_key(condition: Condition, seed: int) -> str:
    """The cache key of one run."""
    return f"{condition}/{seed}"


def run_grid(base, tokenizer, conditions: Sequence[Condition], seeds: Sequence[int], sizes: ExperimentSizes,
             path, device=None, progress: bool = True, prepare: Optional[Callable] = None) -> dict[tuple, dict]:
    """Every (condition, seed) run, computing only those missing from the JSONL cache at ``path``."""
    from tqdm.auto import tqdm

    with JSONLStage(path, key=lambda row: row["key"]) as stage:
        todo = [(c, s) for c in conditions for s in seeds if run_key(c, s) not in stage.done]
        for condition, seed in tqdm(todo, desc="fine-tuning runs", disable=not progress or not todo):
            row = run_condition(base, tokenizer, condition, seed, sizes, device, prepare)
            stage.append({"key": run_key(condition, seed), "sizes": asdict(sizes), **row})
        rows = {r["key"]: r for r in stage.rows()}
    return {(c, s): rows[run_key(c, s)] for c in conditions for s in seeds}


def cache_name(sizes: ExperimentSizes, base, label: str) -> str:
    """A file name that changes whenever the sizes, the label or the base model's weights change."""
    import torch

    from .templates import stable_seed

    with torch.no_grad():
        fingerprint = [round(float(p.double().sum()), 4) for p in list(base.parameters())[:8]]
    return f"ch06-experiment-{label}-{stable_seed(asdict(sizes), label, fingerprint) % 10**10:010d}.jsonl"
