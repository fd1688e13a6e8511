"""Chapter 09: unseen tasks — how many distinct training instructions before a model follows one it never saw.

Zhang, Wang & Charton (2024) trained small transformers on string-rewriting rules and found that
they follow *rules never seen in training* only once training covers several hundred distinct rules,
even with few examples per rule. This module rebuilds that experiment at the course's scale.

An instruction is a word-replacement rule, "Replace cat with dog.", applied to a short list of words
(the output is the list with every ``cat`` replaced). The right answer's new word appears only in the
instruction, so no model that ignores the instruction can be right, and a model that memorised its
training rules scores 0 on a rule it never saw. Every run fine-tunes the course TinyGPT for the same
number of steps on the same number of examples; only the number of distinct rules ``n`` changes (the
examples are spread evenly over them). Three test sets of new inputs:

* ``seen``: the run's own rules — the ceiling: can the model do the task at all at this budget?
* ``unseen``: rules no run trains on (fixed, so paired across runs), over the same training words;
* ``new words``: rules between words that appear nowhere in any training record (in the diagnostic
  ``reserved_as_fillers`` they fill training inputs, never a rule).

Within a seed the rule sets are nested (the first ``n`` of one shuffled list), so a larger ``n``
only adds rules. Runs go through the course's run cache (``train.experiment.cached_train``).
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

from ..config import cache_dir, get_profile
from ..data.collate import DataCollatorForInstructions, encode_dataset
from ..data.records import Record
from ..data.verifiable import WORDS
from ..generate.wording_experiment import recipe_config
from ..train.exact import greedy_exact
from ..train import TrainConfig
from ..train.experiment import CachedRun, cached_train, load_course_base, load_run, processes_for, run_dir, run_in_processes

Rule = tuple[str, str]
SCORES = "scores-rules"  # the memo that holds a run's per-item verdicts


@dataclass(frozen=True)
class RuleBed:
    """Everything that defines a run besides (n, seed); part of every run's cache key."""

    n_rules: tuple[int, ...] = (4, 16, 64, 256, 1024, 4096)  # distinct training rules per condition
    steps: int = 1000           # one budget for every condition: steps x batch training examples
    batch: int = 16
    lr: float = 3e-3
    reserved_words: int = 14    # words kept out of every training record: the ``new words`` rules use them
    unseen_rules: int = 200     # held-out rules over the training words
    new_word_rules: int = 100
    per_rule: int = 5           # test inputs per held-out rule
    n_seen: int = 500           # test inputs in the run's own rules
    max_len: int = 128
    threads: int = 1            # torch's CPU threads: a 1 M-parameter model trains fastest on one of 2 shared cores
    reserved_as_fillers: bool = False  # the diagnostic: reserved words may fill training inputs (never a rule's)


@dataclass(frozen=True)
class RuleSplit:
    """Which words and rules go where: the leak-free partition every run shares."""

    train_words: tuple[str, ...]
    reserved_words: tuple[str, ...]
    pool: tuple[Rule, ...]            # every rule a run may train on (over train_words, minus unseen)
    unseen: tuple[Rule, ...]          # held out from every run
    new_words: tuple[Rule, ...]       # both words reserved


@lru_cache(maxsize=8)
def rule_split(bed: RuleBed) -> RuleSplit:
    """Partition the words and the rules (fixed, independent of the run's seed)."""
    rng = random.Random(9)
    words = list(WORDS)
    rng.shuffle(words)
    reserved, train_words = sorted(words[:bed.reserved_words]), sorted(words[bed.reserved_words:])
    pairs = [(a, b) for a in train_words for b in train_words if a != b]
    rng.shuffle(pairs)
    new = [(a, b) for a in reserved for b in reserved if a != b]
    rng.shuffle(new)
    return RuleSplit(tuple(train_words), tuple(reserved), tuple(pairs[bed.unseen_rules:]),
                     tuple(pairs[:bed.unseen_rules]), tuple(new[:bed.new_word_rules]))


def training_rules(bed: RuleBed, n: int, seed: int) -> list[Rule]:
    """The ``n`` rules of run (n, seed): a prefix of the seed's shuffled pool, so conditions are nested."""
    pool = list(rule_split(bed).pool)
    if not 1 <= n <= len(pool):
        raise ValueError(f"n={n} rules: the pool has {len(pool)}")
    random.Random(seed).shuffle(pool)
    return pool[:n]


def rule_record(rule: Rule, fillers: Sequence[str], rng: random.Random) -> Record:
    """One example: 3-5 words from ``fillers`` with the rule's word at one or two places, and the rewrite."""
    x, y = rule
    others = [w for w in fillers if w not in rule]
    words = rng.sample(others, rng.randint(3, 5))
    for pos in rng.sample(range(len(words)), rng.randint(1, 2)):
        words[pos] = x
    return Record(f"Replace {x} with {y}.", " ".join(words), " ".join(y if w == x else w for w in words))


def parse_rule(instruction: str) -> Rule:
    """(X, Y) of "Replace X with Y."; anything else is a ValueError."""
    body = instruction.strip()
    if not (body.startswith("Replace ") and body.endswith(".") and " with " in body):
        raise ValueError(f"not a replacement rule: {instruction!r}")
    x, y = body[len("Replace "):-1].split(" with ", 1)
    return x, y


def apply_rule(instruction: str, text: str) -> str:
    """The reference solver: parse the rule and rewrite ``text`` word by word."""
    x, y = parse_rule(instruction)
    return " ".join(y if w == x else w for w in text.split())


def cycled(rules: Sequence[Rule], count: int, fillers: Sequence[str], seed: int) -> list[Record]:
    """``count`` examples spread evenly over ``rules`` (rule ``i % len(rules)`` for example ``i``)."""
    rng = random.Random(seed)
    return [rule_record(rules[i % len(rules)], fillers, rng) for i in range(count)]


def training_records(bed: RuleBed, n: int, seed: int) -> list[Record]:
    """Run (n, seed)'s training examples: ``steps * batch`` of them, whatever ``n`` is (one budget)."""
    split = rule_split(bed)
    fillers = split.train_words + split.reserved_words if bed.reserved_as_fillers else split.train_words
    return cycled(training_rules(bed, n, seed), bed.steps * bed.batch, fillers, seed=1000 + seed)


def rule_test_sets(bed: RuleBed, n: int, seed: int) -> dict[str, list[Record]]:
    """``seen`` (the run's own rules), ``unseen`` and ``new words`` (the same items for every run)."""
    split = rule_split(bed)
    return {"seen": cycled(training_rules(bed, n, seed), bed.n_seen, split.train_words, seed=2000 + seed),
            "unseen": cycled(split.unseen, len(split.unseen) * bed.per_rule, split.train_words, seed=1),
            "new words": cycled(split.new_words, len(split.new_words) * bed.per_rule, split.train_words, seed=2)}


def located(answer: str, record: Record) -> bool:
    """Did ``answer`` rewrite exactly the rule's positions (every other word copied), whatever it wrote there?"""
    words, given, (x, _) = answer.split(), record.input.split(), parse_rule(record.instruction)
    return len(words) == len(given) and all((w != g) == (g == x) for w, g in zip(words, given))


def copy_baseline(records: Sequence[Record]) -> float:
    """Exact match of answering with the input unchanged (every input holds the rule's word: 0)."""
    return sum(r.input == r.output for r in records) / len(records)


def train_rules(make_base: Callable, tokenizer, bed: RuleBed, n: int, seed: int, base_key: str,
                device=None) -> CachedRun:
    """Fine-tune ``make_base()`` on ``n`` rules with chapter 05's loop (or load the cached run)."""
    name, data, config, key = _rules_run(tokenizer, bed, n, seed, base_key)
    run = cached_train(name, make_base, data, DataCollatorForInstructions(tokenizer), config, key=key, device=device)
    _RUN_DIRS[_where(tokenizer, bed, n, seed, base_key)] = run.path
    return run


def _rules_run(tokenizer, bed: RuleBed, n: int, seed: int, base_key: str) -> tuple[str, list[dict], TrainConfig, dict]:
    """What names run (n, seed) in the cache: its name, encoded training data, config and key."""
    data, _ = encode_dataset(training_records(bed, n, seed), tokenizer, bed.max_len, "chat")
    config = recipe_config(bed.steps, bed.batch, bed.lr, seed, threads=bed.threads)
    # the training data's hash is part of the key too, so reserved_as_fillers needs no entry of its own
    settings = {k: v for k, v in asdict(bed).items() if k not in ("n_rules", "reserved_as_fillers")}
    name = f"ch09-rules-{n}" + ("-reserved-fillers" if bed.reserved_as_fillers else "")
    return name, data, config, {"base": base_key, "n": n, "bed": settings}


# Each run's cache directory, named once per process: naming it means encoding and hashing the run's
# 16,000 training examples (seconds), which a cached rerun would otherwise do twice (check, then load).
_RUN_DIRS: dict[tuple, Path] = {}


def _where(tokenizer, bed: RuleBed, n: int, seed: int, base_key: str) -> tuple:
    """What a run's directory depends on, the encoded data aside (a function of the tokenizer and the rest)."""
    vocab = json.dumps([sorted(tokenizer.get_vocab().items()), getattr(tokenizer, "chat_template", None),
                        tokenizer.eos_token])
    return (str(cache_dir()), get_profile().name, base_key, bed, n, seed, hashlib.sha256(vocab.encode()).hexdigest())


def _rules_run_dir(tokenizer, bed: RuleBed, n: int, seed: int, base_key: str) -> Path:
    """The cache directory of run (n, seed), whether or not it is built."""
    where = _where(tokenizer, bed, n, seed, base_key)
    if where not in _RUN_DIRS:
        name, data, config, key = _rules_run(tokenizer, bed, n, seed, base_key)
        _RUN_DIRS[where] = run_dir(name, config, data, None, key)
    return _RUN_DIRS[where]


def rules_run_done(tokenizer, bed: RuleBed, n: int, seed: int, base_key: str) -> bool:
    """Is run (n, seed) trained and scored in the cache (``run_rules`` would only read it)?"""
    return _done(_rules_run_dir(tokenizer, bed, n, seed, base_key))


def _done(path: Path) -> bool:
    """Does ``path`` hold a trained and scored run?"""
    return (path / "model.pt").exists() and (path / f"{SCORES}.json").exists()


def run_rules(make_base: Callable, tokenizer, bed: RuleBed, n: int, seed: int, base_key: str,
              device=None) -> dict:
    """``train_rules``, then its per-item exact match on the three sets (computed once, kept with the run)."""
    known = _RUN_DIRS.get(_where(tokenizer, bed, n, seed, base_key))  # named already, e.g. by prebuild_course_rules
    if known is not None and _done(known):  # read the run without encoding its data again
        run = load_run(known, make_base, device)
    else:
        run = train_rules(make_base, tokenizer, bed, n, seed, base_key, device)
    sets = rule_test_sets(bed, n, seed)
    scores = run.memo(SCORES, lambda: {name: greedy_exact(run.model, tokenizer, items, "chat",
                                                                   max_length=bed.max_len)
                                               for name, items in sets.items()})
    return {"n": n, "seed": seed, "scores": scores, "train_seconds": run.info["train_seconds"],
            "from_cache": run.from_cache}


def _course_rules_job(bed: RuleBed, n: int, seed: int, base_key: str) -> bool:
    """One ``run_rules`` on the course TinyGPT in a worker process (training and scoring on ``bed.threads``)."""
    from ..config import cpu_threads

    base, tokenizer = load_course_base(base_key)
    with cpu_threads(bed.threads):
        return run_rules(lambda: copy.deepcopy(base), tokenizer, bed, n, seed, base_key)["from_cache"]


def prebuild_course_rules(tokenizer, jobs: Sequence[tuple[RuleBed, int, int]], base_key: str,
                          processes: int | None = None) -> int:
    """Train and score the ``(bed, n, seed)`` runs of the course TinyGPT missing from the cache, side by side
    in worker processes (as many as the cores hold at ``bed.threads`` each); returns how many were built.
    For the CPU: the results equal those of ``run_rules`` in a loop, which then reads them from the cache."""
    missing = [(bed, n, seed, base_key) for bed, n, seed in jobs
               if not rules_run_done(tokenizer, bed, n, seed, base_key)]
    if missing:
        processes = processes or processes_for(max(bed.threads for bed, *_ in missing), len(missing))
        run_in_processes(_course_rules_job, missing, processes, desc="rule runs")
    return len(missing)


def rule_clusters(records: Sequence[Record]) -> list[str]:
    """Each item's cluster for ``stats.cluster_bootstrap``: its rule (items of one rule rise and fall together)."""
    return [r.instruction for r in records]


def course_rulebed(profile=None, max_len: int = 128) -> RuleBed:
    """The experiment at ``profile``'s sizes (``ci``: seconds; ``cpu``/``gpu``: the real one), for a model
    whose context holds ``max_len`` tokens."""
    from ..config import as_profile

    p = as_profile(profile)
    return RuleBed(n_rules=p.pick(ci=(2, 8), cpu=RuleBed.n_rules), steps=p.pick(ci=3, cpu=1000),
                   batch=p.pick(ci=4, cpu=16), unseen_rules=p.pick(ci=6, cpu=200), new_word_rules=p.pick(ci=4, cpu=100),
                   per_rule=p.pick(ci=2, cpu=5), n_seen=p.pick(ci=8, cpu=500), max_len=max_len)
