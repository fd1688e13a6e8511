"""Chapter 08: greedy ROUGE-L near-duplicate removal, the Self-Instruct decision made fast.

The reference pipelines keep a new instruction only if its ROUGE-L F against every instruction
already in the pool is at most 0.7 (they drop it when ``max(scores) > 0.7``), comparing one
candidate against the whole pool in Python (rouge-score's dynamic programme, ~n·m steps per pair).
``dedup`` makes exactly the same decisions, in the same order, but

* tokenizes every text once and maps each distinct token to one Unicode character, so a text
  becomes a short string that rapidfuzz reads directly (no per-call conversion of Python lists);
* groups the kept texts by token count: for lengths m and n the F-measure is at most
  2·min(m,n)/(m+n) (the LCS cannot exceed the shorter text), so whole groups are skipped without
  computing any LCS, and within a group F depends only on the LCS length, so "F > threshold" becomes
  "LCS >= L" for one integer L computed with rouge-score's own float formula (exact at the boundary);
* asks rapidfuzz (C++, bit-parallel LCS) whether any text of a group reaches L, with L as the
  score cutoff so it can stop early.
"""
from __future__ import annotations

from typing import Callable, Iterable

from rapidfuzz import process
from rapidfuzz.distance import LCSseq

from ..text import f_measure, tokenize

THRESHOLD = 0.7  # Self-Instruct and Alpaca: drop a candidate when max ROUGE-L F > 0.7


def _code_point(token_id: int) -> str:
    """The character standing for token number ``token_id`` (skipping the surrogate block)."""
    return chr(token_id + 0x800 if token_id >= 0xD800 else token_id)


def min_lcs_above(threshold: float, m: int, n: int) -> int | None:
    """Smallest LCS length l with F(l; m, n) > threshold (rouge-score floats), or None if even l = min(m, n) is not."""
    hi = min(m, n)
    if hi == 0 or f_measure(hi, m, n) <= threshold:
        return None
    lo = max(1, int(threshold * (m + n) / 2) - 1)   # F ~ 2l/(m+n): start just below the real answer
    while lo > 1 and f_measure(lo - 1, m, n) > threshold:
        lo -= 1
    while f_measure(lo, m, n) <= threshold:
        lo += 1
    return lo


class DedupIndex:
    """The kept texts, grouped by token count; ``add_if_new`` is one step of the greedy filter."""

    def __init__(self, threshold: float = THRESHOLD, tokenizer: Callable[[str], list[str]] = tokenize):
        self.threshold = threshold
        self.tokenizer = tokenizer
        self._vocab: dict[str, str] = {}
        self._groups: dict[int, list[str]] = {}
        self._cutoffs: dict[tuple[int, int], int | None] = {}
        self.size = 0

    def _ids(self, text: str) -> str:
        """The text as a string with one character per token (token ids as code points, surrogates skipped)."""
        vocab = self._vocab
        return "".join([vocab.setdefault(tok, _code_point(len(vocab))) for tok in self.tokenizer(text)])

    def _cutoff(self, m: int, n: int) -> int | None:
        key = (m, n)
        if key not in self._cutoffs:
            self._cutoffs[key] = min_lcs_above(self.threshold, m, n)
        return self._cutoffs[key]

    def is_duplicate_ids(self, ids: str) -> bool:
        """True if some kept text has ROUGE-L F > threshold with this token sequence (from ``_ids``)."""
        n = len(ids)
        if n == 0:
            return False
        for m, group in self._groups.items():
            cutoff = self._cutoff(m, n)
            if cutoff is None:       # length bound: no text of this length can be that similar
                continue
            if process.extractOne(ids, group, scorer=LCSseq.similarity, processor=None,
                                  score_cutoff=cutoff) is not None:
                return True
        return False

    def is_duplicate(self, text: str) -> bool:
        """True if ``text`` has ROUGE-L F > threshold with some kept text."""
        return self.is_duplicate_ids(self._ids(text))

    def add(self, text: str) -> None:
        """Keep ``text`` unconditionally (pool texts: seeds, an existing machine pool)."""
        ids = self._ids(text)
        self._groups.setdefault(len(ids), []).append(ids)
        self.size += 1

    def add_if_new(self, text: str) -> bool:
        """Keep ``text`` if it is not a near-duplicate of anything kept; return whether it was kept."""
        ids = self._ids(text)
        if self.is_duplicate_ids(ids):
            return False
        self._groups.setdefault(len(ids), []).append(ids)
        self.size += 1
        return True


def dedup(texts: Iterable[str], threshold: float = THRESHOLD, pool: Iterable[str] = (), *,
          tokenizer: Callable[[str], list[str]] = tokenize) -> list[int]:
    """Indices of ``texts`` kept by the greedy filter: in order, keep a text iff its ROUGE-L F with
    every ``pool`` text and every text kept so far is <= ``threshold``.

    ``tokenizer=lambda s: tokenize(s, cjk=False)`` is rouge-score's tokenizer (Chinese scores 0).
    """
    index = DedupIndex(threshold, tokenizer)
    for text in pool:
        index.add(text)
    return [i for i, text in enumerate(texts) if index.add_if_new(text)]
