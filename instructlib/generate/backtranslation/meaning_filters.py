"""Chapter 07: filters that keep a paraphrase only if it keeps the meaning and adds something new.

Each ``make_*`` function returns a check for ``Funnel.run``: ``check(row) -> None`` to keep the row,
or a short reason string to reject it. A row is a ``round_trip`` candidate: a dict with at least
``source`` and ``paraphrase`` (and ``lang``, the language both are in).

* language: the paraphrase is written in the expected script (a round trip through a weak
  translator often comes back half in the pivot language, or with its punctuation);
* vocabulary (optional): every word is one the translator was taught (sampling glitches glue words);
* length ratio: a paraphrase much shorter or longer than its source has dropped or invented content;
* fidelity: chrF (sacrebleu) between source and paraphrase, a surface proxy for meaning;
* numbers and placeholders preserved: "Repeat the word 3 times" must not come back with 5;
* checker: for verifiable families, a model that answers the paraphrased instruction on known
  inputs must do as well as with the original phrasing (see ``add_checker_scores``);
* novelty: ROUGE-L against the source and against the pool of phrasings already kept; a
  paraphrase identical (or nearly) to one we already have adds nothing. Put it last: its pool
  grows with every row that passes it.

Fidelity wants the paraphrase *close* to the source, novelty wants it *far*: the thresholds trade
one against the other, and chapter 07 picks them from a precision/recall plot.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Callable, Iterable, Optional, Sequence

Check = Callable[[dict], Optional[str]]

# "one" is left out on purpose: "the last one", "one of them" are pronouns far more often than numbers
NUMBER_WORDS = {w: str(i) for i, w in enumerate(
    "zero _ two three four five six seven eight nine ten eleven twelve".split()) if w != "_"}
CJK_PUNCTUATION = re.compile("[\u3000-\u303f\uff00-\uffef]")
PLACEHOLDER = re.compile(r"\{[^{}\s]+\}")
NUMBER = re.compile(r"\d+(?:\.\d+)?")


def script_share(text: str, lang: str) -> float:
    """Share of the text's letters (punctuation and digits aside) in ``lang``'s script: CJK for zh, other for en."""
    from ...text import is_cjk

    if lang not in ("en", "zh"):
        raise ValueError(f"unknown language {lang!r}")
    letters = [ch for ch in text if ch.isalpha()]
    share = sum(map(is_cjk, letters)) / len(letters) if letters else 0.0
    return share if lang == "zh" else (1.0 - share if letters else 0.0)


def make_language_check(min_share: float = 0.9) -> Check:
    """Reject empty paraphrases and those with less than ``min_share`` of their letters in ``row['lang']``."""
    def language(row: dict) -> Optional[str]:
        text = row["paraphrase"].strip()
        if not text:
            return "empty"
        lang = row.get("lang", "en")
        if lang == "en" and CJK_PUNCTUATION.search(text):  # "？" or "。" left over from the pivot
            return "wrong script"
        return None if script_share(text, lang) >= min_share else "wrong script"
    return language


def make_vocabulary_check(known: Iterable[str]) -> Check:
    """Reject paraphrases with a word outside ``known`` (e.g. every word of the translator's corpus).

    A small translator sampling at a high temperature glues pieces of words together
    ("differencereasing"); a word it was never taught is a sampling glitch, not a paraphrase.
    """
    from ...text import tokenize

    vocabulary = {w for text in known for w in tokenize(text)}

    def vocabulary_check(row: dict) -> Optional[str]:
        unknown = [w for w in tokenize(row["paraphrase"]) if w not in vocabulary]
        return "unknown word" if unknown else None
    return vocabulary_check


def length_ratio(source: str, paraphrase: str) -> float:
    """Tokens of the paraphrase over tokens of the source (``text.tokenize``: CJK characters count one each)."""
    from ...text import tokenize

    return len(tokenize(paraphrase)) / max(1, len(tokenize(source)))


def make_length_check(low: float = 0.5, high: float = 2.0) -> Check:
    """Reject paraphrases whose token-length ratio to the source is outside [low, high]."""
    def length(row: dict) -> Optional[str]:
        r = length_ratio(row["source"], row["paraphrase"])
        return None if low <= r <= high else ("too short" if r < low else "too long")
    return length


def chrf(source: str, paraphrase: str) -> float:
    """Sentence chrF (sacrebleu, 0-100) of the paraphrase against the source."""
    from sacrebleu.metrics import CHRF

    return CHRF().sentence_score(paraphrase, [source]).score


def make_fidelity_check(min_chrf: float = 30.0) -> Check:
    """Reject paraphrases whose chrF against the source is below ``min_chrf``."""
    def fidelity(row: dict) -> Optional[str]:
        score = chrf(row["source"], row["paraphrase"])
        return None if score >= min_chrf else "low chrF"
    return fidelity


def numbers_and_placeholders(text: str) -> Counter:
    """Multiset of the numbers (digits or English number words) and ``{placeholders}`` in ``text``."""
    found = Counter(PLACEHOLDER.findall(text))
    stripped = PLACEHOLDER.sub(" ", text)
    found.update(NUMBER.findall(stripped))
    found.update(NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", stripped.lower()) if w in NUMBER_WORDS)
    return found


def make_numbers_check() -> Check:
    """Reject paraphrases that lose, change or add a number or a ``{placeholder}``."""
    def numbers(row: dict) -> Optional[str]:
        src, par = numbers_and_placeholders(row["source"]), numbers_and_placeholders(row["paraphrase"])
        if src == par:
            return None
        lost, added = src - par, par - src
        kind = "placeholder" if any(k.startswith("{") for k in (lost + added)) else "number"
        return f"{kind} lost" if lost else f"{kind} added"
    return numbers


def make_novelty_check(max_rouge: float = 0.8, pool: Optional[dict] = None,
                       group: Callable[[dict], str] = lambda row: row.get("family") or row["source"]) -> Check:
    """Reject paraphrases with ROUGE-L >= ``max_rouge`` against their source or any phrasing in the pool.

    ``pool`` maps a group (default: the row's family, else its source) to phrasings we already have
    (e.g. the training phrasings); every row that passes is added to its group's pool, so a second
    copy of the same paraphrase is rejected too.
    """
    from ...text import rouge_l

    kept: dict = defaultdict(list, {k: list(v) for k, v in (pool or {}).items()})

    def novelty(row: dict) -> Optional[str]:
        text = row["paraphrase"]
        if rouge_l(row["source"], text) >= max_rouge:
            return "copy of source" if text.strip() == row["source"].strip() else "too close to source"
        key = group(row)
        if any(rouge_l(other, text) >= max_rouge for other in kept[key]):
            return "duplicate in pool"
        kept[key].append(text)
        return None
    return novelty


def add_checker_scores(rows: Sequence[dict], answer: Callable[[list], list[str]], n_inputs: int = 4,
                       seed: int = 0) -> None:
    """For rows with a verifiable ``family``: the share of ``n_inputs`` training inputs answered correctly.

    ``answer(records) -> predictions`` is any model (e.g. a fine-tuned TinyGPT through
    ``train.answers.generate_answers``). Sets ``row['checker']`` (paraphrase) and
    ``row['checker_source']`` (the original phrasing, same inputs) in place, in one batched call.
    """
    from ...data.records import Record
    from ...data.verifiable import FAMILIES, make_examples

    todo = [r for r in rows if r.get("family") in FAMILIES]
    inputs = {f: [e.record for e in make_examples("train", n_inputs, seed=seed, families=[f])]
              for f in {r["family"] for r in todo}}
    sources = sorted({(r["family"], r["source"]) for r in todo})
    queries = [(("src", f, s), Record(s, x.input, x.output)) for f, s in sources for x in inputs[f]]
    queries += [((i,), Record(r["paraphrase"], x.input, x.output)) for i, r in enumerate(todo)
                for x in inputs[r["family"]]]
    predictions = answer([q[1] for q in queries]) if queries else []
    correct: dict = defaultdict(list)
    for (key, record), pred in zip(queries, predictions):
        family = key[1] if key[0] == "src" else todo[key[0]]["family"]
        correct[key].append(FAMILIES[family].check(pred, record.output))
    for i, r in enumerate(todo):
        r["checker"] = sum(correct[(i,)]) / n_inputs
        r["checker_source"] = sum(correct[("src", r["family"], r["source"])]) / n_inputs


def make_checker_check(tolerance: float = 0.0) -> Check:
    """Reject rows whose paraphrase is answered correctly less often than the source (minus ``tolerance``).

    Rows without a checker score (not a verifiable family) pass: the check cannot judge them.
    """
    def checker(row: dict) -> Optional[str]:
        if "checker" not in row:
            return None
        return None if row["checker"] >= row["checker_source"] - tolerance else "checker fails"
    return checker


def default_checks(pool: Optional[dict] = None, min_chrf: float = 30.0, max_rouge: float = 0.8,
                   with_checker: bool = False, group: Optional[Callable[[dict], str]] = None,
                   vocabulary: Optional[Iterable[str]] = None) -> list[tuple[str, Check]]:
    """The chapter's filter chain, in order (novelty last), for ``Funnel.run``.

    ``vocabulary``: texts whose words are the only ones allowed (adds the "vocabulary" check).
    """
    checks = [("language", make_language_check())]
    if vocabulary is not None:
        checks.append(("vocabulary", make_vocabulary_check(vocabulary)))
    checks += [("length ratio", make_length_check()),
              ("numbers", make_numbers_check()), ("fidelity (chrF)", make_fidelity_check(min_chrf))]
    if with_checker:
        checks.append(("checker", make_checker_check()))
    novelty = make_novelty_check(max_rouge, pool) if group is None else make_novelty_check(max_rouge, pool, group)
    return checks + [("novelty", novelty)]


def precision_recall(scores: Iterable[float], truth: Iterable[bool], thresholds: Sequence[float]
                     ) -> list[tuple[float, float, float]]:
    """(threshold, precision, recall) of "keep when score >= threshold" against ``truth``."""
    pairs = list(zip(scores, truth))
    positives = sum(t for _, t in pairs)
    out = []
    for th in thresholds:
        kept = [t for s, t in pairs if s >= th]
        tp = sum(kept)
        out.append((th, tp / len(kept) if kept else 1.0, tp / positives if positives else 0.0))
    return out
