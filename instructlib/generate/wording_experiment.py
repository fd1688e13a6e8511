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
to the weights, so a rerun of the notebook only reads them. Chapters 07-09 put their generators
through the same testbed (``course_testbed``) with ``run_pool``: any labelled pool of wordings per
family, compared with ``compare_pools``.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable, Literal, Optional, Sequence

import torch

from ..config import CPU_THREADS, cpu_threads, get_device, stable_seed
from ..data.collate import DataCollatorForInstructions, encode_dataset
from ..data.verifiable import Example, solve
from ..data.wordings import crossed_examples, distinct, load_wordings, training_wordings, worded_examples
from ..train import TrainConfig
from ..train.exact import greedy_exact
from ..train.experiment import CachedRun, cached_train, load_course_base, processes_for, run_in_processes

Source = Literal["human", "grammar"]
SETS = ("seen", "heldout", "novel")
# labels of the wording pools chapters 06-09 share (a label names a run in the cache: same label, same run)
HAND, TEMPLATES, CONTROL = "hand-written", "+ templates", "positive control"


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
    return _train(make_base, tokenizer, *condition_job(testbed, source, k, seed, base_key), device)


# A job names one run of the cache: (testbed, run name, wordings per family, seed, key).
Job = tuple[Testbed, str, dict[str, list[str]], int, dict]


def condition_job(testbed: Testbed, source: Source, k: Optional[int], seed: int, base_key: str) -> Job:
    """The run of chapter 06's condition (source, k, seed)."""
    return (testbed, f"ch06-wordings-{source}-{k or 'all'}", condition_wordings(testbed.families, source, k, seed),
            seed, {"base": base_key, "source": source, "k": k})


def pool_job(testbed: Testbed, label: str, wordings: dict[str, Sequence[str]], seed: int, base_key: str) -> Job:
    """The run of a labelled wording pool (chapters 07-10)."""
    return (testbed, run_name(label), {f: list(w) for f, w in wordings.items()}, seed,
            {"base": base_key, "condition": label})


def run_name(label: str) -> str:
    """The run cache's name of a labelled wording pool ("+ back-translation" -> "testbed-back-translation")."""
    return "testbed-" + "-".join("".join(ch if ch.isalnum() else " " for ch in label).split())


def train_pool(make_base: Callable, tokenizer, testbed: Testbed, label: str, wordings: dict[str, Sequence[str]],
               seed: int, base_key: str, device=None) -> CachedRun:
    """Fine-tune on the testbed's training inputs worded with ``wordings`` (any source): one run of the cache.

    Chapters 07-09 name their pools with the same ``label`` ("hand-written", "positive control", ...),
    so a pool trained for one chapter is a cache hit for the next.
    """
    return _train(make_base, tokenizer, *pool_job(testbed, label, wordings, seed, base_key), device)


def recipe_config(steps: int, batch: int, lr: float, seed: int, **changes) -> TrainConfig:
    """The testbed's fine-tuning recipe (chapter 05's loop): 5 % warmup, cosine to 10 %, length-grouped batches."""
    return TrainConfig(max_steps=steps, batch_size=batch, lr=lr, warmup_steps=max(1, steps // 20), min_lr_ratio=0.1,
                       weight_decay=0.01, group_by_length=True, seed=seed, progress=False, **changes)


def training_data(tokenizer, testbed: Testbed, wordings: dict[str, Sequence[str]]) -> list[dict]:
    """A run's encoded training examples: the testbed's inputs (the same in every run) worded with ``wordings``."""
    train_set = worded_examples("train", testbed.n_train, wordings, seed=0)
    return encode_dataset([e.record for e in train_set], tokenizer, testbed.max_len, "chat")[0]


def _train(make_base: Callable, tokenizer, testbed: Testbed, name: str, wordings: dict[str, Sequence[str]],
           seed: int, key: dict, device=None) -> CachedRun:
    data = training_data(tokenizer, testbed, wordings)
    config = recipe_config(testbed.steps, testbed.batch, testbed.lr, seed)
    return cached_train(name, make_base, data, DataCollatorForInstructions(tokenizer), config, key=key, device=device)


def _course_job(testbed: Testbed, name: str, wordings: dict[str, list[str]], seed: int, key: dict) -> bool:
    """Train and score one run of the course TinyGPT in a worker process; True when it was cached already."""
    import copy

    base, tokenizer = load_course_base(key["base"])
    with cpu_threads(CPU_THREADS):
        run = _train(lambda: copy.deepcopy(base), tokenizer, testbed, name, wordings, seed, key)
        score_run(run, tokenizer, testbed, wordings, seed)
    return run.from_cache


def prebuild_course_runs(jobs: Sequence[Job], processes: Optional[int] = None) -> list[bool]:
    """Train and score the course TinyGPT's testbed runs side by side in worker processes, where the cores
    hold more than one run at ``config.CPU_THREADS`` threads each (4 physical cores: two at a time); returns, per job,
    whether it was trained now. A run's numbers depend on its thread count, not on its process, so the loop
    that follows reads exactly what it would have built. On 2 cores this does nothing: a second 2-thread run
    would only share the same two cores (``processes_for``). Jobs on another base than the course model are left to the loop
    (a worker can only load the course's)."""
    from ..models.course import course_model_dir

    mine = [i for i, job in enumerate(jobs) if job[-1]["base"] == course_model_dir().name]
    processes = processes or processes_for(CPU_THREADS, len(mine))
    trained = [False] * len(jobs)
    if processes > 1 and mine:
        cached = run_in_processes(_course_job, [jobs[i] for i in mine], processes, desc="testbed runs")
        for i, was_cached in zip(mine, cached):
            trained[i] = not was_cached
    return trained


def run_condition(make_base: Callable, tokenizer, testbed: Testbed, source: Source, k: Optional[int], seed: int,
                  base_key: str, device=None) -> dict:
    """One run's per-item scores on ``seen``, ``heldout`` and ``novel`` (computed once, kept with the run)."""
    run = train_run(make_base, tokenizer, testbed, source, k, seed, base_key, device)
    wordings = condition_wordings(testbed.families, source, k, seed)
    return {"source": source, "k": k, **score_run(run, tokenizer, testbed, wordings, seed)}


def run_pool(make_base: Callable, tokenizer, testbed: Testbed, label: str, wordings: dict[str, Sequence[str]],
             seed: int, base_key: str, device=None) -> dict:
    """``train_pool`` then its scores on ``seen``, ``heldout`` and ``novel`` (as ``run_condition``)."""
    run = train_pool(make_base, tokenizer, testbed, label, wordings, seed, base_key, device)
    return {"label": label, **score_run(run, tokenizer, testbed, wordings, seed)}


def run_pools(make_base: Callable, tokenizer, testbed: Testbed, pools: dict[str, dict[str, Sequence[str]]],
              seeds: Sequence[int], base_key: str, device=None, desc: Optional[str] = None) -> dict[tuple[str, int], dict]:
    """``run_pool`` for every (label, seed), labels outer: ``{(label, seed): its dict}``. On a CPU whose cores
    hold several runs, the missing ones train side by side first (``prebuild_course_runs``); ``desc``: a progress bar."""
    from tqdm.auto import tqdm

    todo = [(label, s) for label in pools for s in seeds]
    trained = [False] * len(todo)
    if torch.device(device or get_device()).type == "cpu":
        trained = prebuild_course_runs([pool_job(testbed, label, pools[label], s, base_key) for label, s in todo])
    runs = {}
    for (label, seed), now in zip(tqdm(todo, desc=desc, disable=desc is None), trained):
        runs[label, seed] = run_pool(make_base, tokenizer, testbed, label, pools[label], seed, base_key, device)
        runs[label, seed]["from_cache"] &= not now  # trained by a worker just now
    return runs


def score_run(run: CachedRun, tokenizer, testbed: Testbed, wordings: dict[str, Sequence[str]], seed: int) -> dict:
    """Per-item greedy exact match of a trained run on the three test sets, memoised next to its weights."""
    sets = {"seen": seen_examples(testbed, wordings), **evaluation_sets(testbed)}

    def score() -> dict:
        return {name: greedy_exact(run.model, tokenizer, [e.record for e in items], "chat", max_length=testbed.max_len)
                for name, items in sets.items()}

    scores = run.memo(f"scores-{stable_seed(asdict(testbed), SETS) % 10**10:010d}", score)
    return {"seed": seed, "wordings": {f: list(w) for f, w in wordings.items()}, "scores": scores,
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


TESTBED_FAMILIES = ("count_words", "first_last_word", "comma_list", "repeat_word")  # chapter 06's ceiling families


def hand_wordings(families: Sequence[str]) -> dict[str, list[str]]:
    """Chapter 05's six hand-written training phrasings per family (the bank's first six ``human`` wordings)."""
    return {f: list(load_wordings(f).human[:6]) for f in families}


def control_wordings(families: Sequence[str]) -> dict[str, list[str]]:
    """All 40 clean hand-written wordings per family: the positive control, what an ideal generator gives."""
    return {f: list(load_wordings(f).human) for f in families}


def plus_hand(families: Sequence[str], *extra: dict[str, Sequence[str]]) -> dict[str, list[str]]:
    """Chapter 05's phrasings plus the ``extra`` wordings per family (repeats removed, order kept)."""
    hand = hand_wordings(families)
    return {f: distinct(hand[f] + [w for e in extra for w in e.get(f, [])]) for f in families}


def course_testbed(profile=None, max_len: int = 128) -> Testbed:
    """The testbed chapters 06-10 share, at ``profile``'s sizes (``ci``: seconds; ``cpu``/``gpu``: the real one)."""
    from ..config import as_profile

    p = as_profile(profile)
    return Testbed(families=TESTBED_FAMILIES, n_train=p.pick(ci=4, cpu=2000), steps=p.pick(ci=3, cpu=1000),
                   batch=p.pick(ci=4, cpu=16), lr=3e-3, n_test=p.pick(ci=1, cpu=45), n_seen=p.pick(ci=2, cpu=100),
                   max_len=max_len)


def score_matrix(runs: dict, condition: str, seeds: Sequence[int], name: str):
    """(seeds, items) array of one pool's exact-match verdicts on test set ``name``."""
    import numpy as np

    return np.array([runs[condition, s]["scores"][name] for s in seeds], dtype=float)


def compare_pools(runs: dict, testbed: Testbed, seeds: Sequence[int], conditions: Sequence[str],
                  reference: str = HAND, n_boot: int = 2000):
    """One row per pool label (chapters 07-09's comparisons): wordings per family, the ceiling (``seen``),
    held-out and novel exact match with intervals, and the paired difference to ``reference`` on both.

    Interval columns hold (mean, low, high) from ``stats.cluster_bootstrap`` (wordings are the clusters;
    differences are paired by seed and item).
    """
    import pandas as pd

    from ..stats import cluster_bootstrap

    clusters = {name: [(e.family, e.record.instruction) for e in items]
                for name, items in evaluation_sets(testbed).items()}
    rows = []
    for c in conditions:
        row = {"condition": c,
               "wordings per family": sum(len(w) for w in runs[c, seeds[0]]["wordings"].values()) / len(testbed.families),
               "seen": float(score_matrix(runs, c, seeds, "seen").mean())}
        for name in ("heldout", "novel"):
            m = score_matrix(runs, c, seeds, name)
            row[name] = cluster_bootstrap(m, clusters[name], n_boot=n_boot)
            row[f"{name} vs {reference}"] = cluster_bootstrap(m - score_matrix(runs, reference, seeds, name),
                                                              clusters[name], n_boot=n_boot)
        rows.append(row)
    return pd.DataFrame(rows).set_index("condition")
