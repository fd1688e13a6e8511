"""Chapter 06: the wording-diversity experiment — how many distinct training wordings buy how much on new ones.

One run = (source, k, seed): the same training inputs of every testbed family, each paired with one
of ``k`` wordings per family drawn from the bank's ``human`` list (the positive control: clean,
hand-written) or its ``grammar`` list (the template condition), fine-tuned with chapter 05's loop
for a fixed number of steps (one token budget for every condition: only the wordings change).
Scored with teacher-forced greedy exact match (``train.exact``) on three sets of new inputs:

* ``seen``: the run's own wordings — the ceiling: can the model do the tasks at all?
* ``heldout``: every held-out wording x the same inputs (paired across runs), and
* ``novel``: held-out wordings whose content words no training wording uses.

Runs go through the one run cache (``train.experiment.cached_train``); their scores are kept next
to the weights, so a rerun of the notebook only reads them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional, Sequence

from ..data.collate import DataCollatorForInstructions, encode_dataset
from ..data.verifiable import Example, solve
from ..data.wordings import crossed_examples, training_wordings, worded_examples
from ..train import TrainConfig
from ..train.exact import greedy_exact
from ..train.experiment import CachedRun, cached_train
from .templates import stable_seed

Source = Literal["human", "grammar"]
SETS = ("seen", "heldout", "novel")


@dataclass(frozen=True)
class Testbed:
    """Everything that defines a run besides (source, k, seed); part of every run's cache key."""

    families: tuple[str, ...]
    n_train: int = 2000   # training inputs per family: the same inputs in every condition
    steps: int = 1000     # chapter 06's cpu recipe: the word families' ceiling at this budget
    batch: int = 16
    lr: float = 3e-3
    n_test: int = 45      # test inputs per family, crossed with every held-out and novel wording
    n_seen: int = 100     # test inputs per family in the run's own wordings
    max_len: int = 128


def condition_wordings(families: Sequence[str], source: Source, k: Optional[int], seed: int) -> dict[str, list[str]]:
    """The ``k`` training wordings per family of one condition (None: the whole pool)."""
    return {f: training_wordings(f, source, k, seed) for f in families}


def evaluation_sets(testbed: Testbed) -> dict[str, list[Example]]:
    """The fixed, paired test sets: every held-out (novel) wording crossed with the same new inputs."""
    fams = list(testbed.families)
    return {"heldout": crossed_examples("test", testbed.n_test, "heldout", fams),
            "novel": crossed_examples("test", testbed.n_test, "novel", fams)}


def train_run(make_base: Callable, tokenizer, testbed: Testbed, source: Source, k: Optional[int], seed: int,
              base_key: str, device=None) -> CachedRun:
    """Fine-tune ``make_base()`` on one condition (or load the cached run): chapter 05's loop, fixed budget."""
    wordings = condition_wordings(testbed.families, source, k, seed)
    train_set = worded_examples("train", testbed.n_train, wordings, seed=0)  # same inputs in every run
    data, _ = encode_dataset([e.record for e in train_set], tokenizer, testbed.max_len, "chat")
    config = TrainConfig(max_steps=testbed.steps, batch_size=testbed.batch, lr=testbed.lr,
                         warmup_steps=max(1, testbed.steps // 20), min_lr_ratio=0.1, weight_decay=0.01,
                         group_by_length=True, seed=seed, progress=False)
    return cached_train(f"ch06-wordings-{source}-{k or 'all'}", make_base, data, DataCollatorForInstructions(tokenizer),
                        config, key={"base": base_key, "source": source, "k": k}, device=device)


def run_condition(make_base: Callable, tokenizer, testbed: Testbed, source: Source, k: Optional[int], seed: int,
                  base_key: str, device=None) -> dict:
    """One run's per-item scores on ``seen``, ``heldout`` and ``novel`` (computed once, kept with the run)."""
    run = train_run(make_base, tokenizer, testbed, source, k, seed, base_key, device)
    wordings = condition_wordings(testbed.families, source, k, seed)
    sets = {"seen": seen_examples(testbed, wordings), **evaluation_sets(testbed)}

    def score() -> dict:
        return {name: greedy_exact(run.model, tokenizer, [e.record for e in items], "chat", max_length=testbed.max_len)
                for name, items in sets.items()}

    scores = run.memo(f"scores-{stable_seed(asdict(testbed), SETS) % 10**10:010d}", score)
    return {"source": source, "k": k, "seed": seed, "wordings": wordings, "scores": scores,
            "train_seconds": run.info["train_seconds"], "tokens": run.info["tokens"], "from_cache": run.from_cache}


def seen_examples(testbed: Testbed, wordings: dict[str, Sequence[str]]) -> list[Example]:
    """New inputs in a run's own training wordings: the ceiling (can the model do the tasks at all?)."""
    return worded_examples("test", testbed.n_seen, wordings, seed=1)


def per_family(scores: Sequence[bool], items: Sequence[Example]) -> dict[str, float]:
    """Exact match per family, in the order the families first appear."""
    hits: dict[str, list[bool]] = {}
    for ok, e in zip(scores, items):
        hits.setdefault(e.family, []).append(bool(ok))
    return {f: sum(v) / len(v) for f, v in hits.items()}


def blind_baseline(items: Sequence[Example], families: Sequence[str]) -> float:
    """Best exact match of a model that ignores the instruction: one family's rule for every input of a shape.

    Inputs are grouped by shape (the set of families whose rule applies to them); in each group the
    baseline applies the single rule that is right most often there.
    """
    groups: dict[tuple, list[Example]] = {}
    for e in items:
        shape = tuple(f for f in families if solve(f, e.record.input))
        groups.setdefault(shape, []).append(e)
    right = 0
    for shape, members in groups.items():
        right += max(sum(solve(f, e.record.input) == e.record.output for e in members) for f in shape)
    return right / len(items)


def majority_baseline(items: Sequence[Example]) -> dict[str, float]:
    """Per family, exact match of always giving that family's most frequent answer."""
    by: dict[str, Counter] = {}
    for e in items:
        by.setdefault(e.family, Counter())[e.record.output] += 1
    return {f: c.most_common(1)[0][1] / sum(c.values()) for f, c in by.items()}
