"""Chapter 06: the wording bank — many ways to ask for each verifiable task, split so that transfer can be measured.

One YAML file per family in ``data/wording_bank/`` (written for this course), with four lists:

* ``human``: 40 training wordings written by hand, as 40 different people would (the positive
  control: what "more clean, human-written wordings" buys). The first 6 are chapter 05's phrasings.
* ``grammar``: the template condition — a few hand-written fragments multiplied by slot patterns
  (``"{verb} {obj} {how}."``): cheap, automatic, and narrower than ``human``.
* ``heldout``: 12 wordings no training set and no generator ever sees; the first 2 are chapter
  05's held-out phrasings. Exact match on them measures robustness to new wordings.
* ``novel``: 5 held-out wordings whose content words no training wording uses (``content_words``):
  transfer there cannot come from recognising a task word seen in training.

``tests/test_wordings.py`` checks the split (no held-out wording near any training source).
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal, Optional, Sequence

import yaml

from .records import Record
from .verifiable import FAMILIES, Example, instances

Pool = Literal["human", "grammar", "heldout", "novel"]
POOLS: tuple[str, ...] = ("human", "grammar", "heldout", "novel")
# Function words ignored when comparing vocabularies (``content_words``).
STOPWORDS = frozenset("""a an the of to in on and or with each every all it its them they this that these those
is are be as by for from at me my you your i we us please what which how many much do does give write put
make then so than there here one ones only just""".split())


@dataclass(frozen=True)
class Wordings:
    """A family's wording bank: training pools (``human``, ``grammar``) and held-out ones (``heldout``, ``novel``)."""

    family: str
    human: tuple[str, ...]
    grammar: tuple[str, ...]
    heldout: tuple[str, ...]
    novel: tuple[str, ...]

    def pool(self, name: Pool) -> tuple[str, ...]:
        """One of the four lists by name."""
        if name not in POOLS:
            raise ValueError(f"pool {name!r} is not one of {POOLS}")
        return getattr(self, name)


def expand(patterns: Sequence[str], slots: dict[str, Sequence[str]]) -> list[str]:
    """Every combination of slot values in every pattern, in order, duplicates dropped."""
    out: dict[str, None] = {}
    for pattern in patterns:
        names = re.findall(r"{(\w+)}", pattern)
        unknown = [n for n in names if n not in slots]
        if unknown:
            raise KeyError(f"pattern {pattern!r} uses undefined slots {unknown}")
        for values in itertools.product(*(slots[n] for n in names)):
            out[pattern.format(**dict(zip(names, values)))] = None
    return list(out)


def bank_families() -> list[str]:
    """Families that have a wording bank, in ``verifiable.FAMILIES`` order."""
    files = {p.name[:-5] for p in resources.files(__package__).joinpath("wording_bank").iterdir()
             if p.name.endswith(".yaml")}
    return [f for f in FAMILIES if f in files]


@lru_cache(maxsize=None)
def load_wordings(family: str) -> Wordings:
    """The wording bank of ``family`` (``data/wording_bank/<family>.yaml``)."""
    path = resources.files(__package__).joinpath("wording_bank", f"{family}.yaml")
    if not path.is_file():
        raise KeyError(f"no wording bank for {family!r}; banks: {bank_families()}")
    raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    grammar = raw["grammar"]
    return Wordings(family, tuple(raw["human"]), tuple(expand(grammar["patterns"], grammar["slots"])),
                    tuple(raw["heldout"]), tuple(raw["novel"]))


def content_words(text: str) -> set[str]:
    """Lower-case alphabetic words of ``text`` minus ``STOPWORDS``."""
    return set(re.findall(r"[a-z]+", text.lower())) - STOPWORDS


def training_wordings(family: str, source: Literal["human", "grammar"], k: Optional[int], seed: int = 0) -> list[str]:
    """The first ``k`` (None: all) wordings of a seed-shuffled training pool: nested in ``k`` for a given seed."""
    pool = list(load_wordings(family).pool(source))
    random.Random(f"wordings/{family}/{source}/{seed}").shuffle(pool)
    return pool if k is None else pool[:k]


def worded_examples(split: str, n_per_family: int, wordings: dict[str, Sequence[str]], seed: int = 0) -> list[Example]:
    """``n_per_family`` inputs of ``split`` per family, each paired with its family's wordings in turn (shuffled).

    Wordings are assigned round-robin, so every wording gets the same number of inputs (within one):
    a condition with more wordings has the same inputs and the same number of examples.
    """
    out = []
    for family, pool in wordings.items():
        if not pool:
            raise ValueError(f"no wordings given for {family!r}")
        for j, (inp, output) in enumerate(instances(FAMILIES[family], split, n_per_family, seed)):
            out.append(Example(Record(pool[j % len(pool)], inp, output), family))
    random.Random(f"worded/{split}/{seed}").shuffle(out)
    return out


def crossed_examples(split: str, n_inputs: int, pool: Pool, families: Sequence[str], seed: int = 0) -> list[Example]:
    """Every wording of ``pool`` crossed with the same ``n_inputs`` inputs per family: paired test items."""
    return crossed_with(split, n_inputs, {f: load_wordings(f).pool(pool) for f in families}, seed)


def crossed_with(split: str, n_inputs: int, wordings: dict[str, Sequence[str]], seed: int = 0) -> list[Example]:
    """Every given wording of each family crossed with the same ``n_inputs`` inputs of ``split``."""
    out = []
    for family, pool in wordings.items():
        for inp, output in instances(FAMILIES[family], split, n_inputs, seed):
            out.extend(Example(Record(w, inp, output), family) for w in pool)
    return out


def guard_wordings(family: str) -> list[str]:
    """The wordings a family's test sets use (held-out and novel): what no training set may contain."""
    bank = load_wordings(family)
    return list(bank.heldout) + list(bank.novel)


def drop_leaks(pool: dict[str, Sequence[str]], threshold: float = 0.7) -> tuple[dict[str, list[str]], int]:
    """``pool`` (family -> wordings) without wordings within ROUGE-L ``threshold`` of a test wording; (kept, dropped).

    Generators can write a test wording by chance; training on it would make "held-out" a lie.
    """
    from ..text import rouge_l

    kept, dropped = {}, 0
    for family, wordings in pool.items():
        guard = guard_wordings(family)
        kept[family] = [w for w in wordings if all(rouge_l(g, w) < threshold for g in guard)]
        dropped += len(wordings) - len(kept[family])
    return kept, dropped


def distinct(texts) -> list[str]:
    """``texts`` with whitespace collapsed and repeats removed, first occurrence first."""
    seen: dict[str, None] = {}
    for t in texts:
        seen.setdefault(" ".join(t.split()), None)
    return list(seen)
