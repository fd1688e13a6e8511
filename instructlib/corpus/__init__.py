"""Chapter 01: the course corpus, built offline from project-written text (chapter 03 pretrains on it).

Two sources, both written for this project (see ``README.md`` in this folder for every byte):
* ``paragraphs.txt``: hand-written prose paragraphs;
* ``generate.py``: documents drawn from templates over the word lists in ``words.py`` (stories,
  facts, dialogues, arithmetic, sorted lists, spelling/reversing/uppercasing).

Generated document ``i`` depends only on ``(CORPUS_VERSION, i)``, so a smaller profile's corpus is a
prefix of a larger one's and the split never depends on the profile: every 20th generated document
and every 8th paragraph is held out.

    >>> train = load_corpus("train")          # list[str], size set by the profile
    >>> heldout = load_corpus("heldout")
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Union

from ..config import Profile, as_profile
from .generate import GENERATORS, WEIGHTS

CORPUS_VERSION = "2"
SPLITS = ("train", "heldout")
HELDOUT_EVERY = 20  # generated document i is held out when i % 20 == 19
PARAGRAPH_HELDOUT_EVERY = 8
# Number of generated documents per profile (about 300 characters each).
SIZES = {"ci": 1_000, "cpu": 12_000, "gpu": 100_000}

Size = Union[None, int, str, Profile]


@dataclass(frozen=True)
class Document:
    """One document with its provenance (``source``) and split."""

    text: str
    source: str  # "paragraphs.txt:<line>" or "generated:<kind>:<index>"
    split: str


def _n_generated(size: Size) -> int:
    if size is None or isinstance(size, (str, Profile)):
        return SIZES[as_profile(size).name]
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"corpus size must be a profile name or a non-negative int, got {size!r}")
    return size


def paragraphs() -> list[Document]:
    """The hand-written paragraphs of ``paragraphs.txt`` (blank-line separated), with line numbers."""
    text = resources.files(__package__).joinpath("paragraphs.txt").read_text(encoding="utf-8")
    docs, start, lines = [], 0, []
    for lineno, line in enumerate(text.splitlines() + [""], start=1):
        if line.strip():
            start, lines = (lineno if not lines else start), lines + [line.strip()]
        elif lines:
            split = "heldout" if len(docs) % PARAGRAPH_HELDOUT_EVERY == PARAGRAPH_HELDOUT_EVERY - 1 else "train"
            docs.append(Document(" ".join(lines), f"paragraphs.txt:{start}", split))
            lines = []
    return docs


def generated(i: int) -> Document:
    """Generated document number ``i`` (a pure function of ``CORPUS_VERSION`` and ``i``)."""
    rng = random.Random(f"instructlib-corpus-v{CORPUS_VERSION}-{i}")
    kind = rng.choices(list(WEIGHTS), weights=list(WEIGHTS.values()))[0]
    split = "heldout" if i % HELDOUT_EVERY == HELDOUT_EVERY - 1 else "train"
    return Document(GENERATORS[kind](rng), f"generated:{kind}:{i}", split)


@lru_cache(maxsize=4)
def _documents(n: int) -> tuple[Document, ...]:
    return tuple(paragraphs()) + tuple(generated(i) for i in range(n))


def documents(size: Size = None) -> list[Document]:
    """All documents (both splits) with provenance; ``size`` is a profile or a generated count."""
    return list(_documents(_n_generated(size)))


def build_corpus(size: Size = None) -> list[str]:
    """Texts of all documents, both splits, in a fixed order."""
    return [d.text for d in documents(size)]


def load_corpus(split: str = "train", size: Size = None) -> list[str]:
    """Texts of one split (``"train"`` or ``"heldout"``) for the profile (or count) ``size``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return [d.text for d in documents(size) if d.split == split]


def corpus_digest(size: Size = None) -> str:
    """SHA-256 of the corpus (texts and splits): changes whenever any byte of it changes."""
    h = hashlib.sha256()
    for d in documents(size):
        h.update(f"{d.split}\x00{d.text}\x00".encode("utf-8"))
    return h.hexdigest()
