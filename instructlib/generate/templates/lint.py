"""Chapter 06: a linter for prompt templates — every finding names the template id.

Checks, on a template's source and on its renders of sample examples:

* ``syntax``: the Jinja does not parse; ``undefined-variable``: a variable no example provides
  (Jinja would silently render it as ""); ``unused-variable``: a field the task provides that the
  template never reads (e.g. a prompt that never shows the input);
* ``render-error``, ``parts`` (not exactly one ``|||``), ``empty-render`` (empty prompt or target);
* ``target-leak``: the prompt reads a variable the target is made of, or the rendered target appears
  in the prompt although no prompt-side field contains it;
* ``duplicate`` / ``near-duplicate``: same or nearly the same wording as another template of the
  same language and direction (ROUGE-L of the literal text, ``instructlib.text.rouge_l``, CJK by character);
* ``label-space`` (number of answer choices differs from the labels) and ``target-not-in-choices``;
* ``answer-position``: with the choices in the prompt, the correct one sits in the same position in
  most renders (a model can learn the position instead of the task).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence

from jinja2 import TemplateSyntaxError, meta

from ...text import rouge_l
from .promptsource import ENV, SEPARATOR, Template, TemplateError

IGNORED_FIELDS = frozenset({"id", "idx", "source_id"})  # bookkeeping, not task content
_JINJA_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.S)
WARNINGS = frozenset({"unused-variable", "near-duplicate", "answer-position"})


@dataclass(frozen=True)
class Finding:
    """One lint finding: which template, which check, what is wrong."""

    template_id: str
    template_name: str
    check: str
    message: str

    @property
    def severity(self) -> str:
        """``warning`` for judgement calls (unused field, near-duplicate, position), else ``error``."""
        return "warning" if self.check in WARNINGS else "error"

    def __str__(self) -> str:
        return f"{self.template_id} ({self.template_name}): {self.severity}: {self.check}: {self.message}"


def literal_text(jinja: str) -> str:
    """The template's own words: Jinja expressions and tags replaced by one space."""
    return _JINJA_RE.sub(" ", jinja.replace(SEPARATOR, " "))


def _vars(source: str) -> Optional[set[str]]:
    try:
        return set(meta.find_undeclared_variables(ENV.parse(source)))
    except TemplateSyntaxError:
        return None


ANSWER_FIELDS = ("output", "label", "target", "answer", "answers")  # the usual names of the answer


def answer_fields(t: Template, fields: set[str]) -> set[str]:
    """The fields that carry the answer: a known answer field (``output``, ``label``...) for a forward
    template; otherwise the target's variables the prompt does not show (all of them if it shows all)."""
    halves = t.jinja.split(SEPARATOR)
    if len(halves) != 2:
        return set()
    target_vars = (_vars(halves[1]) or set()) - {"answer_choices"}
    known = [f for f in ANSWER_FIELDS if f in fields]
    if known and not t.inverted:
        return {known[0]}
    return (target_vars - (_vars(halves[0]) or set())) or target_vars


def _static_leak(t: Template, answer: set[str]) -> Optional[str]:
    halves = t.jinja.split(SEPARATOR)
    if len(halves) != 2:
        return None
    prompt_vars = _vars(halves[0])
    if prompt_vars is None:  # "|||" inside a block: judge by the renders only
        return None
    shared = sorted(prompt_vars & answer)
    return shared[0] if shared else None


def _contains(text: str, part: str) -> bool:
    return re.search(rf"(?<!\w){re.escape(part)}(?!\w)", text) is not None


def _position(prompt: str, choices: list[str], target: str) -> Optional[int]:
    """Rank of the target among the choices by where each first appears in the prompt."""
    where = {c: prompt.find(c) for c in choices}
    if target not in where or any(i < 0 for i in where.values()) or len(set(where.values())) < len(where):
        return None
    return sorted(where.values()).index(where[target])


def lint_template(t: Template, examples: Sequence[dict], *, fields: Optional[set[str]] = None,
                  label_names: Optional[Sequence[str]] = None, seed: int = 0) -> list[Finding]:
    """Findings for one template rendered on ``examples`` (its fields: ``fields`` or the examples' keys)."""
    out: list[Finding] = []

    def add(check: str, message: str) -> None:
        out.append(Finding(t.id, t.name, check, message))

    if fields is None:
        fields = set().union(*(set(e) for e in examples)) if examples else set()
    try:
        used = t.variables()
    except TemplateSyntaxError as err:
        add("syntax", f"line {err.lineno}: {err.message}")
        return out
    for name in sorted(used - fields):
        add("undefined-variable", f"'{name}' is not a field of the examples (it would render as '')")
    for name in sorted(fields - used - IGNORED_FIELDS):
        add("unused-variable", f"field '{name}' is never used")
    target_fields = answer_fields(t, fields)
    shows_choices = bool(t.answer_choices and t.metadata.choices_in_prompt)  # the answer is one of the shown options
    leak = None if shows_choices else _static_leak(t, target_fields)
    if leak:
        add("target-leak", f"the prompt shows '{leak}', the field that carries the answer")
    leaks = positions = 0
    position_counts: Counter = Counter()
    bad_parts = empty = not_in_choices = 0
    for k, ex in enumerate(examples):
        try:
            parts = t.apply_parts(ex, seed=seed + k)
            choices = t.answer_choices_list(ex, seed=seed + k)
        except TemplateError as err:
            add("render-error", str(err).split(": ", 1)[-1])
            return out
        if len(parts) != 2:
            bad_parts += 1
            continue
        prompt, target = parts
        unlabeled = ex.get("label") == -1  # PromptSource's convention for test examples
        if not prompt or (not target and not unlabeled):
            empty += 1
        if choices is not None and target and target not in choices:
            not_in_choices += 1
        if target and not leak and not (choices and target in choices):
            shown = [str(v) for key, v in ex.items() if key not in target_fields]
            if _contains(prompt, target) and not any(_contains(v, target) for v in shown):
                leaks += 1
        if choices and len(choices) > 1 and t.metadata.choices_in_prompt and target in choices:
            pos = _position(prompt, choices, target)
            if pos is not None:
                positions += 1
                position_counts[pos] += 1
    n = len(examples)
    if bad_parts:
        add("parts", f"{bad_parts}/{n} renders do not split into prompt ||| target")
    if empty:
        add("empty-render", f"{empty}/{n} renders have an empty prompt or target")
    if leaks:
        add("target-leak", f"the target appears verbatim in the prompt in {leaks}/{n} renders")
    if not_in_choices:
        add("target-not-in-choices", f"{not_in_choices}/{n} targets are not one of the answer choices")
    if t.answer_choices is not None and label_names is not None:
        fixed = t.answer_choices_list(examples[0], seed=seed) if examples else None
        if fixed is not None and len(fixed) != len(label_names):
            add("label-space", f"{len(fixed)} answer choices {fixed} for {len(label_names)} labels {list(label_names)}")
    if positions >= 6:
        pos, count = position_counts.most_common(1)[0]
        k = len(choices) if choices else 2
        if count / positions >= max(0.8, 1 / k + 0.3):
            add("answer-position", f"the correct choice is at position {pos + 1} in {count}/{positions} renders")
    return out


def lint_templates(templates: Iterable[Template], examples: Sequence[dict], *,
                   fields: Optional[set[str]] = None, label_names: Optional[Sequence[str]] = None,
                   near_duplicate: float = 0.8, seed: int = 0) -> list[Finding]:
    """Lint every template on ``examples`` and compare their wordings pairwise within a language."""
    templates = list(templates)
    out = [f for t in templates for f in lint_template(t, examples, fields=fields, label_names=label_names, seed=seed)]
    texts = [literal_text(t.jinja) for t in templates]
    for i, a in enumerate(templates):
        for j in range(i):
            b = templates[j]
            if a.language != b.language or a.inverted != b.inverted:  # an inverted template is another task
                continue
            if a.jinja.strip() == b.jinja.strip():
                out.append(Finding(a.id, a.name, "duplicate", f"same Jinja as {b.id} ({b.name})"))
                continue
            score = rouge_l(texts[j], texts[i])
            if score >= near_duplicate:
                out.append(Finding(a.id, a.name, "near-duplicate",
                                   f"wording nearly the same as {b.id} ({b.name}): ROUGE-L {score:.2f}"))
    return out
