"""Chapter 06: words, CJK detection and ROUGE-L, the one text-similarity module (built in the open in 08).

``tokenize`` is the tokenizer of the ``rouge-score`` package (lowercase, keep ``[a-z0-9]+`` runs,
no stemming) with one addition: every CJK character is a token of its own. On text without CJK
characters the two tokenizers agree token for token, so ``rouge_l`` equals
``rouge_score.rouge_scorer.RougeScorer(["rougeL"]).score(reference, candidate)["rougeL"].fmeasure``
bit for bit; on Chinese, where rouge-score finds no tokens and returns 0 even for identical
strings, ``rouge_l`` compares characters. The longest common subsequence is computed by
rapidfuzz (C++, bit-parallel) over token sequences, never by a Python loop.
"""
from __future__ import annotations

import re
from typing import Hashable, Sequence

from rapidfuzz.distance import LCSseq

# Unicode blocks whose characters count as "CJK": each one is a token and a word.
CJK_RANGES: tuple[tuple[int, int], ...] = (
    (0x3040, 0x309F),    # Hiragana
    (0x30A0, 0x30FF),    # Katakana
    (0x3400, 0x4DBF),    # CJK Unified Ideographs Extension A
    (0x4E00, 0x9FFF),    # CJK Unified Ideographs
    (0xAC00, 0xD7AF),    # Hangul syllables
    (0xF900, 0xFAFF),    # CJK Compatibility Ideographs
    (0x20000, 0x2FA1F),  # CJK Unified Ideographs Extensions B-F, Compatibility Supplement
)
_CJK_CLASS = "".join(f"{chr(lo)}-{chr(hi)}" for lo, hi in CJK_RANGES)
_CJK_RE = re.compile(f"[{_CJK_CLASS}]")
_TOKEN_RE = re.compile(f"[a-z0-9]+|[{_CJK_CLASS}]")
_ASCII_TOKEN_RE = re.compile("[a-z0-9]+")
_WORD_RE = re.compile(f"[{_CJK_CLASS}]|[^\\s{_CJK_CLASS}]+")


def is_cjk(ch: str) -> bool:
    """True if the single character ``ch`` is a CJK ideograph, kana or Hangul syllable."""
    return _CJK_RE.fullmatch(ch) is not None


def has_cjk(text: str) -> bool:
    """True if ``text`` contains at least one CJK character."""
    return _CJK_RE.search(text) is not None


def cjk_share(text: str) -> float:
    """Fraction of the non-whitespace characters of ``text`` that are CJK (0.0 for empty text)."""
    visible = [ch for ch in text if not ch.isspace()]
    if not visible:
        return 0.0
    return sum(1 for ch in visible if is_cjk(ch)) / len(visible)


def words(text: str) -> list[str]:
    """Words of ``text``: whitespace-separated runs, except that each CJK character is one word.

    Chinese has no spaces, so ``len(text.split())`` counts a whole Chinese sentence as one word;
    one character per word is the unit that needs no segmenter (a Chinese word is 1-2 characters).
    Case and punctuation are kept: ``words("Write 一首诗.") == ["Write", "一", "首", "诗", "."]``.
    """
    return _WORD_RE.findall(text)


def tokenize(text: str, cjk: bool = True) -> list[str]:
    """ROUGE tokens: lowercased ``[a-z0-9]+`` runs (as rouge-score, no stemming) and single CJK characters.

    ``cjk=False`` is rouge-score's tokenizer exactly: CJK characters are dropped, so a Chinese
    sentence has no tokens at all (used to reproduce the reference pipelines' behaviour).
    """
    return (_TOKEN_RE if cjk else _ASCII_TOKEN_RE).findall(text.lower())


def lcs_length(a: Sequence[Hashable], b: Sequence[Hashable]) -> int:
    """Length of the longest common subsequence of two token sequences (rapidfuzz, C++)."""
    return int(LCSseq.similarity(a, b))


def f_measure(lcs: int, reference_len: int, candidate_len: int) -> float:
    """ROUGE-L F from an LCS length, with rouge-score's float operations (so results are bit-identical)."""
    if reference_len == 0 or candidate_len == 0:
        return 0.0
    precision = lcs / candidate_len
    recall = lcs / reference_len
    if precision + recall > 0:
        return 2 * precision * recall / (precision + recall)
    return 0.0


def rouge_l_tokens(reference: Sequence[Hashable], candidate: Sequence[Hashable]) -> float:
    """ROUGE-L F-measure of two already tokenized sequences (tokens or token ids)."""
    if not reference or not candidate:
        return 0.0
    return f_measure(lcs_length(reference, candidate), len(reference), len(candidate))


def rouge_l(reference: str, candidate: str) -> float:
    """ROUGE-L F = 2PR/(P+R) over ``tokenize`` tokens; equals rouge-score's rougeL fmeasure on English."""
    return rouge_l_tokens(tokenize(reference), tokenize(candidate))
