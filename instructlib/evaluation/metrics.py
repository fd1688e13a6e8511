"""Chapter 09: exact match with an explicit, language-aware normalisation, and IFEval-style scoring.

Exact match is only as meaningful as its normalisation. ``normalize_answer`` follows Super-NaturalInstructions
(SuperNI): lower-case, drop ASCII punctuation, collapse whitespace. Chinese needs more: its
punctuation is not ASCII (，。！？、“”《》), full-width forms (ＡＢＣ１２３) must meet their ASCII twins,
and spaces between Chinese characters carry no meaning. With ``lang="auto"`` the Chinese rules apply
to any text that contains a CJK character (``instructlib.text.has_cjk``), CJK punctuation or a
full-width form.

Verifiable tasks have a program that checks an answer (``instructlib.data.verifiable``). IFEval
scores such checks twice: *strict* (the response as it is) and *loose* (the check passes on any of a
few harmless rewrites: markdown emphasis removed, first or last line dropped, ...). Loose minus strict
is how much a model loses to formatting rather than to the task.
"""
from __future__ import annotations

import re
import string
import unicodedata
from typing import Callable, Literal, Sequence, Union

from instructlib.text import has_cjk, is_cjk

Lang = Literal["auto", "en", "zh"]
References = Union[str, Sequence[str]]

_ASCII_PUNCT = set(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def _is_punct(ch: str) -> bool:
    return unicodedata.category(ch).startswith("P") or ch in _ASCII_PUNCT


def _drop_spaces_next_to_cjk(text: str) -> str:
    """Remove whitespace that touches a CJK character ("北 京" -> "北京", "AI 模型" -> "AI模型")."""
    out = []
    for k, ch in enumerate(text):
        if ch.isspace():
            prev = out[-1] if out else ""
            nxt = text[k + 1] if k + 1 < len(text) else ""
            if (prev and is_cjk(prev)) or (nxt and is_cjk(nxt)):
                continue
        out.append(ch)
    return "".join(out)


_CJK_FORMS = re.compile("[\u3000-\u303f\uff00-\uffef]")  # CJK punctuation, full-width and half-width forms


def detect_lang(text: str) -> str:
    """``"zh"`` if ``text`` contains a CJK character, CJK punctuation or a full-width form, else ``"en"``."""
    return "zh" if has_cjk(text) or _CJK_FORMS.search(text) else "en"


def normalize_answer(text: str, lang: Lang = "auto", *, remove_articles: bool = False) -> str:
    """SuperNI's normalisation (lower-case, no punctuation, single spaces), with Chinese rules for ``zh``.

    ``en``: exactly SuperNI's ``normalize_answer`` (``string.punctuation`` only).
    ``zh``: NFKC first (full-width letters, digits and punctuation become ASCII), then every Unicode
    punctuation character goes, and whitespace next to a CJK character is removed.
    ``remove_articles=True`` also drops English "a/an/the" (the SQuAD variant; SuperNI keeps them).
    """
    if lang == "auto":
        lang = detect_lang(text)
    if lang not in ("en", "zh"):
        raise ValueError(f"lang={lang!r} is not 'auto', 'en' or 'zh'")
    if lang == "zh":
        text = unicodedata.normalize("NFKC", text)
    text = text.lower()
    if lang == "zh":
        text = "".join(ch for ch in text if not _is_punct(ch))
    else:
        text = "".join(ch for ch in text if ch not in _ASCII_PUNCT)
    if remove_articles:
        text = _ARTICLES.sub(" ", text)
    text = " ".join(text.split())
    return _drop_spaces_next_to_cjk(text) if lang == "zh" else text


def as_references(references: References) -> list[str]:
    """A single reference string or a list of them, as a non-empty list."""
    refs = [references] if isinstance(references, str) else list(references)
    if not refs:
        raise ValueError("no reference given")
    return refs


def max_over_references(score: Callable[[str, str], float], prediction: str, references: References) -> float:
    """The best ``score(prediction, reference)`` over all references (SuperNI's metric_max_over_ground_truths)."""
    return max(score(prediction, ref) for ref in as_references(references))


def exact_match(prediction: str, references: References, lang: Lang = "auto") -> float:
    """1.0 if the normalised prediction equals any normalised reference, else 0.0.

    With ``lang="auto"`` the Chinese rules apply to both sides when either the prediction or the
    reference looks Chinese (``detect_lang``), so "ＡＢＣ" meets "abc" and "北京。" meets "北京".
    """
    def one(pred: str, ref: str) -> float:
        use = lang if lang != "auto" else ("zh" if "zh" in (detect_lang(ref), detect_lang(pred)) else "en")
        return float(normalize_answer(pred, use) == normalize_answer(ref, use))

    return max_over_references(one, prediction, references)


def exact_match_scores(predictions: Sequence[str], references: Sequence[References],
                       lang: Lang = "auto") -> list[float]:
    """Per-item exact match (0/1) of predictions against their references."""
    check_lengths(predictions, references)
    return [exact_match(p, r, lang) for p, r in zip(predictions, references)]


def check_lengths(predictions: Sequence, references: Sequence) -> None:
    """Raise ValueError unless there is one reference entry per prediction."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")


# --- IFEval-style strict / loose ----------------------------------------------------------------

def _strip_markdown(text: str) -> str:
    return text.replace("*", "").replace("`", "")


def _strip_wrappers(text: str) -> str:
    """Drop surrounding quotes and one trailing full stop: '"Paris."' -> 'Paris'."""
    text = text.strip().strip("\"'“”‘’").strip()
    return text[:-1] if text.endswith((".", "。")) else text


_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:answer|output|result|response)\s*(?:is)?\s*[:：]?\s*", re.IGNORECASE)


def loose_variants(response: str) -> list[str]:
    """IFEval's loose rewrites: the response with markdown removed, first/last line dropped, and ours.

    IFEval tries the response, without ``*``, without its first line, without its last line, and
    their combinations. We add two rewrites that matter for one-line answers: quotes and a final
    full stop removed, and an "Answer:" prefix removed.
    """
    lines = response.split("\n")
    bases = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip()]
    out: list[str] = []
    for base in bases:
        for v in (base, _strip_markdown(base)):
            for w in (v, _strip_wrappers(v), _PREFIX.sub("", v), _strip_wrappers(_PREFIX.sub("", v))):
                if w not in out:
                    out.append(w)
    return out


def strict_loose(response: str, reference: str, check: Callable[[str, str], bool]) -> tuple[float, float]:
    """(strict, loose) for one verifiable item: ``check`` on the response, then on any loose rewrite."""
    strict = bool(check(response, reference))
    loose = strict or any(check(v, reference) for v in loose_variants(response) if v)
    return float(strict), float(loose)
