"""Chapter 09: overlap metrics — ROUGE-L (``instructlib.text``), BLEU and chrF (``sacrebleu``).

Overlap metrics grade *how much text a prediction shares* with a reference, not whether it is right:
"今天天气不好" shares most of its characters with "今天天气很好" and means the opposite.

Tokenisation decides everything for Chinese. sacrebleu's default ``13a`` tokenizer splits on spaces
and punctuation, so a Chinese sentence is one "word" and BLEU is 0 even for a perfect copy; its ``zh``
tokenizer makes every Chinese character a token (and leaves other text as ``13a`` would), so it is
safe for mixed text. ``lang="auto"`` picks ``zh`` when any reference contains a CJK character.
ROUGE-L comes from ``instructlib.text.rouge_l`` (equal to rouge-score on English, per character on
Chinese, where rouge-score returns 0). chrF compares character n-grams and needs no tokenizer.
"""
from __future__ import annotations

from typing import Sequence

from sacrebleu.metrics import BLEU, CHRF

from instructlib import text
from instructlib.evaluation.metrics import Lang, References, check_lengths, as_references, max_over_references


def bleu_tokenizer(references: Sequence[References], lang: Lang = "auto") -> str:
    """sacrebleu tokenizer for a corpus: ``zh`` for Chinese (or any CJK reference with ``auto``), else ``13a``."""
    if lang == "zh":
        return "zh"
    if lang == "en":
        return "13a"
    if lang != "auto":
        raise ValueError(f"lang={lang!r} is not 'auto', 'en' or 'zh'")
    return "zh" if any(text.has_cjk(r) for refs in references for r in as_references(refs)) else "13a"


def _streams(references: Sequence[References]) -> list[list[str]]:
    """sacrebleu's reference streams: stream k holds every item's k-th reference.

    Items with fewer references repeat their last one; a duplicate reference changes neither the
    clipped n-gram counts nor the closest reference length, so the score is unchanged.
    """
    refs = [as_references(r) for r in references]
    width = max((len(r) for r in refs), default=1)
    return [[r[min(k, len(r) - 1)] for r in refs] for k in range(width)]


def corpus_bleu(predictions: Sequence[str], references: Sequence[References], lang: Lang = "auto",
                tokenize: str | None = None) -> float:
    """Corpus BLEU (0-100) by sacrebleu, tokenizer chosen by ``bleu_tokenizer`` unless given."""
    check_lengths(predictions, references)
    tok = tokenize or bleu_tokenizer(references, lang)
    return BLEU(tokenize=tok).corpus_score(list(predictions), _streams(references)).score


def sentence_bleu(prediction: str, references: References, lang: Lang = "auto", tokenize: str | None = None) -> float:
    """Sentence BLEU (0-100) with effective n-gram order, as sacrebleu computes it."""
    refs = as_references(references)
    tok = tokenize or bleu_tokenizer([refs], lang)
    return BLEU(tokenize=tok, effective_order=True).sentence_score(prediction, refs).score


def corpus_chrf(predictions: Sequence[str], references: Sequence[References]) -> float:
    """Corpus chrF (0-100, character 6-grams, beta 2) by sacrebleu."""
    check_lengths(predictions, references)
    return CHRF().corpus_score(list(predictions), _streams(references)).score


def sentence_chrf(prediction: str, references: References) -> float:
    """Sentence chrF (0-100) by sacrebleu."""
    return CHRF().sentence_score(prediction, as_references(references)).score


def rouge_l(prediction: str, references: References) -> float:
    """ROUGE-L F (0-1), the best over the references (``instructlib.text.rouge_l``, CJK-aware)."""
    return max_over_references(lambda p, r: text.rouge_l(r, p), prediction, references)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[References]) -> list[float]:
    """Per-item ROUGE-L F, best over each item's references."""
    check_lengths(predictions, references)
    return [rouge_l(p, r) for p, r in zip(predictions, references)]
