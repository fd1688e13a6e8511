"""Chapter 09: the evaluation items and the named metrics that the harness and the CLI know.

An ``EvalItem`` is what every metric reads: the chat turns a model answers, the references, the
verifiable family (if any, for its checker) and a text for perplexity. ``as_items`` builds them from
verifiable ``Example``s, ``Record``s, Alpaca-style dicts (``output`` or a ``references`` list) and
plain strings (text for perplexity only).

A ``Metric`` scores each item (a JSON-able value, ``None`` when it cannot, e.g. an unparseable
judge verdict) and aggregates values: by default the mean of the non-None values; corpus metrics
(BLEU, chrF, perplexity) recompute from the items themselves, and the bootstrap resamples items.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from instructlib.data.formats import user_content
from instructlib.data.records import Record
from instructlib.data.verifiable import FAMILIES, Example, exact_check
from instructlib.evaluation import metrics as m
from instructlib.evaluation import overlap


@dataclass(frozen=True)
class EvalItem:
    """One test item: the conversation to answer, references, verifiable family, perplexity text."""

    messages: tuple[tuple[str, str], ...]  # (role, content) pairs, the user's turn(s)
    references: tuple[str, ...] = ()
    family: Optional[str] = None
    text: Optional[str] = None  # plain text for perplexity; None: the conversation and first reference

    @property
    def question(self) -> str:
        """The last user turn (what a judge is shown as the instruction)."""
        return [c for r, c in self.messages if r == "user"][-1]

    def chat(self) -> list[dict]:
        """The conversation as chat messages."""
        return [{"role": r, "content": c} for r, c in self.messages]

    def check(self, prediction: str, reference: str) -> bool:
        """The family's checker (exact, case-sensitive after stripping for items without a family)."""
        return FAMILIES[self.family].check(prediction, reference) if self.family else exact_check(prediction, reference)

    def to_dict(self) -> dict:
        """JSON-able form (what the data hash is computed from)."""
        return {"messages": [list(t) for t in self.messages], "references": list(self.references),
                "family": self.family, "text": self.text}


def _record_item(record: Record, family: Optional[str] = None, references: Sequence[str] = ()) -> EvalItem:
    refs = tuple(references) or (record.output,)
    return EvalItem((("user", user_content(record)),), refs, family)


def as_item(obj: Any) -> EvalItem:
    """An ``EvalItem`` from an Example, Record, dict or str (see the module docstring)."""
    if isinstance(obj, EvalItem):
        return obj
    if isinstance(obj, Example):
        return _record_item(obj.record, obj.family)
    if isinstance(obj, Record):
        return _record_item(obj)
    if isinstance(obj, str):
        return EvalItem((), (), None, obj)
    if isinstance(obj, dict):
        if "text" in obj and "instruction" not in obj:
            return EvalItem((), (), None, str(obj["text"]))
        refs = obj.get("references") or [obj.get("output", "")]
        record = Record(obj["instruction"], obj.get("input", ""), refs[0])
        return _record_item(record, obj.get("family"), refs)
    raise TypeError(f"cannot evaluate an item of type {type(obj).__name__}")


def as_items(data: Sequence[Any]) -> list[EvalItem]:
    """``as_item`` for every element."""
    return [as_item(x) for x in data]


def perplexity_texts(item: EvalItem, llm) -> tuple[str, str]:
    """(context, context + continuation) whose NLL difference scores the continuation.

    A record's continuation is its first reference after the model's chat prompt (``llm.chat_prompt``),
    so the perplexity is that of the *answer given the instruction*, the tokens SFT trains on; a
    plain-text item has an empty context (the whole text is scored).
    """
    if item.text is not None:
        return "", item.text
    prompt = llm.chat_prompt(item.chat())
    return prompt, prompt + item.references[0]


# --- metrics ------------------------------------------------------------------------------------

def mean_of_values(values: Sequence, predictions: Sequence[str], items: Sequence[EvalItem]) -> float:
    """Mean of the non-None per-item values (nan if there are none)."""
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else float("nan")


@dataclass(frozen=True)
class Metric:
    """A named metric: per-item ``score(predictions, items, llm)`` and an ``aggregate`` over values."""

    name: str
    score: Callable[[Sequence[str], Sequence[EvalItem], Any], list]
    aggregate: Callable[[Sequence, Sequence[str], Sequence[EvalItem]], float] = mean_of_values
    corpus: bool = False            # True: the aggregate is not a mean, the bootstrap recomputes it
    needs_generation: bool = True
    key: str = "1"                  # extra cache identity (a version, a judge's fingerprint)
    description: str = ""


def _em(preds, items, llm):
    return [m.exact_match(p, it.references) for p, it in zip(preds, items)]


def _strict_loose(which: int):
    def score(preds, items, llm):
        return [max(m.strict_loose(p, r, it.check)[which] for r in it.references) for p, it in zip(preds, items)]
    return score


def _rouge(preds, items, llm):
    return overlap.rouge_l_scores(preds, [it.references for it in items])


def _sentence_bleu(preds, items, llm):
    return [overlap.sentence_bleu(p, it.references) for p, it in zip(preds, items)]


def _bleu(values, preds, items):
    return overlap.corpus_bleu(preds, [it.references for it in items])


def _sentence_chrf(preds, items, llm):
    return [overlap.sentence_chrf(p, it.references) for p, it in zip(preds, items)]


def _chrf(values, preds, items):
    return overlap.corpus_chrf(preds, [it.references for it in items])


def _nll(preds, items, llm):
    """Per item [NLL of the continuation, its token count] = nll(context + continuation) - nll(context)."""
    pairs = [perplexity_texts(it, llm) for it in items]
    full = llm.nll([f for _, f in pairs])
    unique = sorted({c for c, _ in pairs} - {""})
    scored = dict(zip(unique, llm.nll(unique))) if unique else {}
    return [[nll - scored.get(c, (0.0, 0))[0], n - scored.get(c, (0.0, 0))[1]] for (c, _), (nll, n) in zip(pairs, full)]


def _ppl(values, preds, items):
    total = sum(v[0] for v in values)
    tokens = sum(v[1] for v in values)
    return math.exp(total / tokens) if tokens else float("nan")


METRICS: dict[str, Metric] = {metric.name: metric for metric in [
    Metric("em", _em, description="exact match after SuperNI normalisation (language-aware), best reference"),
    Metric("strict", _strict_loose(0), description="IFEval strict: the family's checker on the response"),
    Metric("loose", _strict_loose(1), description="IFEval loose: the checker on any harmless rewrite"),
    Metric("rougeL", _rouge, description="ROUGE-L F (instructlib.text, CJK by character), best reference"),
    Metric("bleu", _sentence_bleu, _bleu, corpus=True, description="corpus BLEU, sacrebleu, tokenize zh for Chinese"),
    Metric("chrf", _sentence_chrf, _chrf, corpus=True, description="corpus chrF, sacrebleu"),
    Metric("ppl", _nll, _ppl, corpus=True, needs_generation=False, key="2",
           description="perplexity of the reference answer given the prompt (of the whole text for text items)"),
]}


def judge_metric(judge, *, reference_guided: bool = True, name: str = "judge", fingerprint: str = "") -> Metric:
    """Mean 1-10 rating by ``judge`` (unparseable verdicts excluded and counted)."""
    from instructlib.evaluation.judge import grade_single

    def score(preds, items, llm):
        refs = [it.references[0] if reference_guided and it.references else None for it in items]
        ratings = grade_single(judge, [it.question for it in items], list(preds), refs, progress=False)
        return [r.score for r in ratings]

    return Metric(name, score, key=f"{fingerprint or getattr(judge, 'name', 'judge')}:{reference_guided}",
                  description="LLM-as-judge rating 1-10")


def get_metric(metric: str | Metric) -> Metric:
    """A Metric by name (``em``, ``strict``, ``loose``, ``rougeL``, ``bleu``, ``chrf``, ``ppl``) or as given."""
    if isinstance(metric, Metric):
        return metric
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; known: {', '.join(METRICS)}")
    return METRICS[metric]
