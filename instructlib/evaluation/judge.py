"""Chapter 09: LLM-as-judge — single-answer grading (1-10) and pairwise comparison in both orders.

A judge is any model behind the LLM interface (``llm.chat``). Its verdicts are text, so parsing is
part of the method: ``parse_rating`` and ``parse_pairwise`` accept the formats we ask for
(``Rating: [[7]]``, ``[[A]]``) and a few common deviations, and return ``None`` for anything else,
including *conflicting* verdicts ("[[A]] ... [[B]]"). Unparseable verdicts are counted, excluded
from every mean, and reported — never silently turned into a score.

Pairwise comparison runs each pair twice, answers swapped (MT-Bench): if the two verdicts disagree,
the pair is a tie. How often they disagree — the *position-flip rate* — measures position bias, and
the 3x3 *swap table* (verdict with order 1-2 x verdict with order 2-1, in positions) shows its shape.
On verifiable tasks the truth is known, so a judge can be validated before it is trusted:
``agreement`` compares its verdicts with exact match.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from instructlib.evaluation.bootstrap import Interval, bootstrap_ci
from instructlib.evaluation.cache import Cache, cached_chat

POSITIONS = ("A", "B", "tie")

SINGLE_SYSTEM = "You are a careful, strict grader of answers to instructions."
SINGLE_TEMPLATE = """Rate the answer to the instruction below on a scale of 1 to 10, where 10 means fully \
correct and 1 means wrong.{ref_block}

[Instruction]
{question}

[Answer]
{answer}

Reply with the rating only, in exactly this format: Rating: [[5]]"""

PAIRWISE_TEMPLATE = """Which of the two answers follows the instruction better and is correct?{ref_block}

[Instruction]
{question}

[Answer A]
{answer_a}

[Answer B]
{answer_b}

Reply with [[A]] if answer A is better, [[B]] if answer B is better, or [[C]] for a tie."""


def _ref_block(reference: Optional[str]) -> str:
    return "" if reference is None else f"\n\n[Reference answer]\n{reference}"


def single_messages(question: str, answer: str, reference: Optional[str] = None) -> list[dict]:
    """The chat that asks a judge to rate one answer from 1 to 10 (reference-guided if given)."""
    user = SINGLE_TEMPLATE.format(ref_block=_ref_block(reference), question=question, answer=answer)
    return [{"role": "system", "content": SINGLE_SYSTEM}, {"role": "user", "content": user}]


def pairwise_messages(question: str, answer_a: str, answer_b: str, reference: Optional[str] = None) -> list[dict]:
    """The chat that asks a judge which of two answers (shown as A and B) is better."""
    user = PAIRWISE_TEMPLATE.format(ref_block=_ref_block(reference), question=question,
                                    answer_a=answer_a, answer_b=answer_b)
    return [{"role": "system", "content": SINGLE_SYSTEM}, {"role": "user", "content": user}]


# --- parsing ------------------------------------------------------------------------------------

_NUM = r"(\d+(?:\.\d+)?)"
_RATING_PATTERNS = (
    re.compile(r"\[\[\s*" + _NUM + r"\s*\]\]"),                                   # [[7]]
    re.compile(r"\b(?:rating|score|grade)\s*(?:is|of)?\s*[:=]?\s*\[?\s*" + _NUM, re.IGNORECASE),
    re.compile(_NUM + r"\s*(?:/|out of)\s*10\b", re.IGNORECASE),                  # 7/10, 7 out of 10
    re.compile(r"^\s*\[?\s*" + _NUM + r"\s*\]?\s*\.?\s*$"),                       # the whole reply is a number
)


def parse_rating(text: str, low: float = 1, high: float = 10) -> Optional[float]:
    """The judge's 1-10 rating, or None if it is missing, out of range or ambiguous.

    Formats are tried in order of strictness (``[[7]]``, ``Rating: 7``, ``7/10``, a bare ``7``); the
    first format that matches decides, and if it matches several *different* numbers the reply is
    ambiguous (None).
    """
    for pattern in _RATING_PATTERNS:
        found = {float(m) for m in pattern.findall(text)}
        if not found:
            continue
        if len(found) > 1:
            return None
        value = found.pop()
        return value if low <= value <= high else None
    return None


_PAIR_BRACKET = re.compile(r"\[\[\s*([ABC]|tie)\s*\]\]", re.IGNORECASE)
_PAIR_PHRASES = (  # the letters themselves must be capitals: "answer: a dog" is not a verdict
    re.compile(r"\[\s*([ABC])\s*\]"),                                                     # [A] (one bracket)
    re.compile(r"^\W*(?:(?i:answer)\s*)?\(?([AB])\)?\W*$"),                       # "A", "(B).", "Answer A"
    re.compile(r"\b(?i:answer|assistant|response)\s+([AB])\s+(?i:is|was)\s+(?:\w+\s+)?(?i:better|more|the better)"),
    re.compile(r"\b(?i:verdict|choice|winner|answer)\s*(?i:is)?\s*[:：]\s*\[?\s*([ABC])\b"),
    re.compile(r"\b(tie)\b", re.IGNORECASE),
)


def _position(token: str) -> str:
    token = token.upper()
    return "tie" if token in ("C", "TIE") else token


def parse_pairwise(text: str) -> Optional[str]:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise verdict; None if missing or conflicting."""
    for pattern in (_PAIR_BRACKET, *_PAIR_PHRASES):
        found = {_position(m) for m in pattern.findall(text)}
        if found:
            return found.pop() if len(found) == 1 else None
    return None


# --- running a judge ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rating:
    """One single-answer judgment: the parsed rating (None if unparseable) and the raw reply."""

    score: Optional[float]
    raw: str


@dataclass(frozen=True)
class PairVerdict:
    """One pair judged in both orders, in *positions*: ``forward`` with answer 1 shown as A, ``backward`` swapped."""

    forward: Optional[str]
    backward: Optional[str]
    raw: tuple[str, str] = ("", "")

    @property
    def parsed(self) -> bool:
        """Both orders gave a parseable verdict."""
        return self.forward is not None and self.backward is not None

    @property
    def votes(self) -> tuple[Optional[str], Optional[str]]:
        """The two verdicts as winners among the answers: ``"1"``, ``"2"`` or ``"tie"``."""
        fwd = {"A": "1", "B": "2", "tie": "tie"}.get(self.forward) if self.forward else None
        bwd = {"A": "2", "B": "1", "tie": "tie"}.get(self.backward) if self.backward else None
        return fwd, bwd

    @property
    def winner(self) -> Optional[str]:
        """``"1"``, ``"2"`` or ``"tie"`` (the two orders disagree, or both say tie); None if unparseable."""
        if not self.parsed:
            return None
        fwd, bwd = self.votes
        return fwd if fwd == bwd else "tie"

    @property
    def flipped(self) -> Optional[bool]:
        """True when swapping the order changed which answer won (None if unparseable)."""
        if not self.parsed:
            return None
        fwd, bwd = self.votes
        return fwd != bwd


def _chat(judge, conversations: list[list[dict]], max_new_tokens: int, batch_size: int, progress: bool,
          cache: Optional[Cache]) -> list[str]:
    return cached_chat(judge, conversations, cache=cache, max_new_tokens=max_new_tokens, temperature=0.0,
                       batch_size=batch_size, progress=progress)


def grade_single(judge, questions: Sequence[str], answers: Sequence[str],
                 references: Optional[Sequence[Optional[str]]] = None, *, max_new_tokens: int = 16,
                 batch_size: int = 8, progress: bool = True, cache: Optional[Cache] = None) -> list[Rating]:
    """Ask ``judge`` to rate every answer 1-10; unparseable replies get ``score=None``.

    With ``cache`` (an ``evaluation.cache.Cache``) the judge's replies are stored and a rerun is instant.
    """
    refs = list(references) if references is not None else [None] * len(questions)
    if not len(questions) == len(answers) == len(refs):
        raise ValueError(f"{len(questions)} questions, {len(answers)} answers, {len(refs)} references")
    convs = [single_messages(q, a, r) for q, a, r in zip(questions, answers, refs)]
    replies = _chat(judge, convs, max_new_tokens, batch_size, progress, cache)
    return [Rating(parse_rating(r), r) for r in replies]


def compare_pairwise(judge, questions: Sequence[str], answers_1: Sequence[str], answers_2: Sequence[str],
                     references: Optional[Sequence[Optional[str]]] = None, *, max_new_tokens: int = 16,
                     batch_size: int = 8, progress: bool = True, cache: Optional[Cache] = None) -> list[PairVerdict]:
    """Judge every pair twice (1 as A, then 2 as A) in one batch; see ``PairVerdict`` for the tie rule."""
    refs = list(references) if references is not None else [None] * len(questions)
    if not len(questions) == len(answers_1) == len(answers_2) == len(refs):
        raise ValueError("questions, answers_1, answers_2 and references must have the same length")
    n = len(questions)
    convs = [pairwise_messages(q, a, b, r) for q, a, b, r in zip(questions, answers_1, answers_2, refs)]
    convs += [pairwise_messages(q, b, a, r) for q, a, b, r in zip(questions, answers_1, answers_2, refs)]
    replies = _chat(judge, convs, max_new_tokens, batch_size, progress, cache)
    return [PairVerdict(parse_pairwise(replies[k]), parse_pairwise(replies[n + k]), (replies[k], replies[n + k]))
            for k in range(n)]


# --- summaries ----------------------------------------------------------------------------------

def swap_table(verdicts: Sequence[PairVerdict]) -> dict[str, dict[str, int]]:
    """Counts of (forward position, backward position), rows and columns ``A``, ``B``, ``tie``, ``None``.

    A consistent judge lives on the cells (A, B), (B, A), (tie, tie): the same *answer* wins in both
    orders. A judge that always picks the first slot fills (A, A).
    """
    keys = [*POSITIONS, "None"]
    table = {r: {c: 0 for c in keys} for r in keys}
    for v in verdicts:
        table[str(v.forward) if v.forward else "None"][str(v.backward) if v.backward else "None"] += 1
    return table


def position_flip_rate(verdicts: Sequence[PairVerdict]) -> float:
    """Share of fully parsed pairs whose winner changed when the answers swapped places (nan if none)."""
    flips = [v.flipped for v in verdicts if v.parsed]
    return float(np.mean(flips)) if flips else float("nan")


def first_position_rate(verdicts: Sequence[PairVerdict]) -> float:
    """Share of parsed single verdicts (either order) that chose the answer shown first (A); 0.5 = unbiased."""
    picks = [p for v in verdicts for p in (v.forward, v.backward) if p in ("A", "B")]
    return float(np.mean([p == "A" for p in picks])) if picks else float("nan")


@dataclass(frozen=True)
class JudgeSummary:
    """Counts and intervals for a batch of judgments (unparseable ones excluded and counted)."""

    n: int
    unparseable: int
    mean: Optional[Interval]            # mean rating, or share of pairs won by answer 1 (ties = 1/2)
    agreement: Optional[Interval]       # with the ground truth, when given
    flip_rate: Optional[float] = None   # pairwise only
    first_position_rate: Optional[float] = None
    tie_rate: Optional[float] = None

    def as_dict(self) -> dict:
        """Flat dict for a table row."""
        out = {"n": self.n, "unparseable": self.unparseable}
        for key in ("mean", "agreement"):
            iv = getattr(self, key)
            out.update({key: iv.value if iv else None, f"{key}_low": iv.low if iv else None,
                        f"{key}_high": iv.high if iv else None})
        for key in ("flip_rate", "first_position_rate", "tie_rate"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out


def summarize_ratings(ratings: Sequence[Rating], truth: Optional[Sequence[bool]] = None, *,
                      threshold: float = 6, seed: int = 0) -> JudgeSummary:
    """Mean rating and, with ``truth`` (e.g. exact match), agreement of ``rating >= threshold`` with it."""
    keep = [k for k, r in enumerate(ratings) if r.score is not None]
    scores = [ratings[k].score for k in keep]
    mean = bootstrap_ci(scores, seed=seed) if scores else None
    agreement = None
    if truth is not None:
        if len(truth) != len(ratings):
            raise ValueError(f"{len(truth)} truth values for {len(ratings)} ratings")
        hits = [float((ratings[k].score >= threshold) == bool(truth[k])) for k in keep]
        agreement = bootstrap_ci(hits, seed=seed) if hits else None
    return JudgeSummary(len(ratings), len(ratings) - len(keep), mean, agreement)


def summarize_pairwise(verdicts: Sequence[PairVerdict], truth: Optional[Sequence[Optional[str]]] = None, *,
                       seed: int = 0) -> JudgeSummary:
    """Win share of answer 1 (ties count 1/2), flip rate, and agreement with the ``truth`` winners.

    ``truth[k]`` is ``"1"`` or ``"2"`` (the answer that is correct) or None (both right or both
    wrong: such pairs are left out of the agreement). A tie on a decisive pair counts as disagreement.
    """
    parsed = [v for v in verdicts if v.parsed]
    wins = [{"1": 1.0, "2": 0.0, "tie": 0.5}[v.winner] for v in parsed]
    agreement = None
    if truth is not None:
        if len(truth) != len(verdicts):
            raise ValueError(f"{len(truth)} truth values for {len(verdicts)} verdicts")
        hits = [float(v.winner == t) for v, t in zip(verdicts, truth) if v.parsed and t is not None]
        agreement = bootstrap_ci(hits, seed=seed) if hits else None
    ties = float(np.mean([v.winner == "tie" for v in parsed])) if parsed else float("nan")
    return JudgeSummary(len(verdicts), len(verdicts) - len(parsed), bootstrap_ci(wins, seed=seed) if wins else None,
                        agreement, position_flip_rate(verdicts), first_position_rate(verdicts), ties)


# --- verdicts read from the judge's probabilities -----------------------------------------------

RATING_CHOICES = tuple(f"Rating: [[{k}]]" for k in range(1, 11))
PAIR_CHOICES = ("[[A]]", "[[B]]")


def choice_logprobs(judge, conversations: Sequence[list[dict]], choices: Sequence[str], *,
                    batch_size: int = 8) -> np.ndarray:
    """(conversations, choices) array of log P(choice | the conversation's prompt), in nats.

    The judge's reply is not generated but *scored*: every choice is one complete reply, so nothing
    needs parsing and every item gets a verdict. Computed as ``nll(prompt) - nll(prompt + choice)``;
    ValueError if a choice's tokens do not extend the prompt's or the text would be truncated.
    """
    prompts = [judge.chat_prompt(list(c)) for c in conversations]
    tokenizer, limit = judge.tokenizer, judge._max_length()
    for p in prompts:
        head = tokenizer(p, add_special_tokens=False)["input_ids"]
        for c in choices:
            ids = tokenizer(p + c, add_special_tokens=False)["input_ids"]
            if ids[:len(head)] != head or len(ids) >= limit:
                raise ValueError(f"choice {c!r} does not extend the prompt's tokens within {limit} positions")
    base = judge.nll(prompts, batch_size=batch_size)
    full = judge.nll([p + c for p in prompts for c in choices], batch_size=batch_size)
    m = len(choices)
    return np.array([[base[i][0] - full[i * m + j][0] for j in range(m)] for i in range(len(prompts))])


def expected_ratings(judge, questions: Sequence[str], answers: Sequence[str],
                     references: Optional[Sequence[Optional[str]]] = None, *, batch_size: int = 8) -> list[float]:
    """Single grading read from probabilities: the expected rating over the replies "Rating: [[1]]" ... "[[10]]"."""
    refs = list(references) if references is not None else [None] * len(questions)
    convs = [single_messages(q, a, r) for q, a, r in zip(questions, answers, refs)]
    lp = choice_logprobs(judge, convs, RATING_CHOICES, batch_size=batch_size)
    p = np.exp(lp - lp.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    return (p @ np.arange(1, 11)).tolist()


def pairwise_log_odds(judge, questions: Sequence[str], answers_1: Sequence[str], answers_2: Sequence[str],
                      references: Optional[Sequence[Optional[str]]] = None, *, batch_size: int = 8) -> np.ndarray:
    """(pairs, 2) array of log P("[[A]]") - log P("[[B]]"): column 0 with answer 1 shown as A, column 1 swapped."""
    refs = list(references) if references is not None else [None] * len(questions)
    convs = [pairwise_messages(q, a, b, r) for q, a, b, r in zip(questions, answers_1, answers_2, refs)]
    convs += [pairwise_messages(q, b, a, r) for q, a, b, r in zip(questions, answers_1, answers_2, refs)]
    lp = choice_logprobs(judge, convs, PAIR_CHOICES, batch_size=batch_size)
    odds = lp[:, 0] - lp[:, 1]
    return np.stack([odds[:len(questions)], odds[len(questions):]], axis=1)


def pairwise_by_probability(judge, questions: Sequence[str], answers_1: Sequence[str], answers_2: Sequence[str],
                            references: Optional[Sequence[Optional[str]]] = None, *,
                            batch_size: int = 8) -> list[PairVerdict]:
    """Pairwise judging read from probabilities: in each order, the more probable of "[[A]]" and "[[B]]"."""
    return verdicts_from_log_odds(pairwise_log_odds(judge, questions, answers_1, answers_2, references,
                                                    batch_size=batch_size))


def verdicts_from_log_odds(log_odds: np.ndarray) -> list[PairVerdict]:
    """One ``PairVerdict`` per row of ``pairwise_log_odds``: "A" where log P(A) > log P(B), in each order."""
    return [PairVerdict("A" if f > 0 else "B", "A" if b > 0 else "B", (f"log odds A:B {f:+.2f}", f"log odds A:B {b:+.2f}"))
            for f, b in np.asarray(log_odds)]


def debiased_winners(log_odds: np.ndarray) -> list[str]:
    """Answer ``"1"`` or ``"2"`` per pair, position bias removed: answer 1 wins when the judge favours slot A
    more with answer 1 in it than with answer 2 in it (a constant preference for a slot cancels)."""
    return ["1" if f > b else "2" for f, b in np.asarray(log_odds)]
