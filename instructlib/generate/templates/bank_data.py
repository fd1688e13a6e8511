"""Chapter 06: the verifiable tasks rendered through the template bank — the chapter's experiment data.

For every verifiable family the bank holds English *forward* templates (plain answers and output-
format variations), inverted ones and Chinese ones. The experiment uses the forward English ones
whose target is a single line (generated answers are cut at the first newline). ``split_templates`` sets aside
``HELDOUT_PER_FAMILY`` plain forward English templates per family that no training set ever uses;
``templated_examples`` renders the inputs of a split through the first ``n_templates`` of a
seed-shuffled list of the remaining forward templates (nested: the 1-template set is inside the
6-template set, which is inside "all"), one template per input. Chapter 09 reuses these functions
to build training sets with a given number of templates per family.
"""
from __future__ import annotations

import json
import random
from typing import Literal, Optional, Sequence

from ...config import stable_seed
from ...data.records import Record
from ...data.verifiable import FAMILIES, Example, make_examples
from .promptsource import BANK_DIR, Template, load_bank
from .render import pick_templates, render_example

HELDOUT_PER_FAMILY = 4
TRANSLATION_PAIRS = BANK_DIR / "translation_pairs.jsonl"


def translation_pairs() -> list[dict]:
    """The course's small English–Chinese sentence pairs (``{"id", "en", "zh"}``, written for the course)."""
    with open(TRANSLATION_PAIRS, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def bank_examples(name: str, split: str = "train", n: int = 20, seed: int = 0) -> list[dict]:
    """Template fields for a bank: ``{"id", "input", "output"}`` of a verifiable family, or translation pairs."""
    if name == "translation":
        return translation_pairs()[:n]
    return [{"id": f"{name}:{e.record.input}", "input": e.record.input, "output": e.record.output}
            for e in make_examples(split, n, seed, families=[name])]


def template_kind(template: Template, probe: dict) -> str:
    """``inverted``, ``plain`` (target is the reference output) or ``format`` (another output format)."""
    if template.inverted:
        return "inverted"
    return "plain" if template.apply(probe)[1] == probe["output"] else "format"


def split_templates(family: str, language: str = "en") -> tuple[list[Template], list[Template]]:
    """(training pool, held-out) single-line forward templates of a family; the held-out ones are plain and fixed."""
    probe = bank_examples(family, "train", 1)[0]
    forward = [t for t in load_bank(family) if t.language == language and not t.inverted
               and "\n" not in t.apply(probe)[1]]  # answers are cut at the first newline when evaluated
    plain = sorted((t for t in forward if template_kind(t, probe) == "plain"),
                   key=lambda t: stable_seed("heldout", t.id))
    heldout = plain[:HELDOUT_PER_FAMILY]
    return [t for t in forward if t not in heldout], heldout


def training_templates(family: str, n_templates: Optional[int], seed: int = 0, language: str = "en") -> list[Template]:
    """The first ``n_templates`` (None: all) of the family's training pool, shuffled by ``seed`` (nested in n)."""
    pool, _ = split_templates(family, language)
    random.Random(stable_seed("order", seed, family)).shuffle(pool)
    return pool if n_templates is None else pool[:n_templates]


def templated_examples(split: Literal["train", "validation", "test"], n_per_family: int, *,
                       n_templates: Optional[int] = None, seed: int = 0,
                       templates: Literal["train", "heldout"] = "train",
                       families: Optional[Sequence[str]] = None, language: str = "en") -> list[Example]:
    """Inputs of ``split`` rendered with one template each: from the training subset or the held-out set.

    ``templates="train"`` uses ``training_templates(family, n_templates, seed)``; ``"heldout"`` the
    family's held-out templates (never used for training, whatever ``n_templates``). The inputs are
    those of ``verifiable.make_examples(split, n_per_family, seed)``; ``Record.instruction`` is the
    rendered prompt, ``Record.output`` the rendered target.
    """
    out: list[Example] = []
    for family in families or list(FAMILIES):
        pool = (training_templates(family, n_templates, seed, language) if templates == "train"
                else split_templates(family, language)[1])
        for ex in bank_examples(family, split, n_per_family, seed):
            template = pick_templates(pool, ex["id"], 1, seed)[0]
            row = render_example(template, ex, seed)
            out.append(Example(Record(row["instruction"], "", row["output"]), family))
    random.Random(stable_seed("shuffle", seed, split, n_templates, templates)).shuffle(out)
    return out
