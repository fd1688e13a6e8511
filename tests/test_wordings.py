"""The wording bank: sizes, form, and the leak test — no held-out wording near anything a training set or a generator sees."""
import json
import re

import pytest

from instructlib.data.verifiable import FAMILIES, MAX_PHRASING_CHARS
from instructlib.data.wordings import (bank_families, content_words, crossed_examples, expand, load_wordings,
                                       training_wordings, worded_examples)
from instructlib.generate.templates.promptsource import load_bank
from instructlib.generate.backtranslation.translator import load_meanings
from instructlib.text import rouge_l

FAMS = bank_families()
NEAR = 0.7  # Self-Instruct's own "too similar" threshold


def _template_texts(family):
    """English instruction text of the family's chapter 06 templates (Jinja fields removed)."""
    out = []
    for t in load_bank(family):
        if t.language == "en":
            out.append(re.sub(r"{[{%].*?[%}]}", " ", t.jinja.split("|||")[0]))
    return out


def _seed_instructions():
    from importlib import resources
    path = resources.files("instructlib.data").joinpath("seed_tasks", "seed_tasks.jsonl")
    return [json.loads(line)["instruction"] for line in path.read_text().splitlines() if line.strip()]


def _training_sources(family):
    """Every text a training set or a generator of chapters 05-08 reads for ``family``."""
    w = load_wordings(family)
    meanings = [en for m in load_meanings() for en in m.en]
    return [*w.human, *w.grammar, *FAMILIES[family].train_phrasings, *meanings, *_template_texts(family),
            *_seed_instructions()]


def test_every_learnable_word_family_has_a_bank():
    assert {"reverse_words", "uppercase", "count_words", "first_last_word", "comma_list", "repeat_word"} <= set(FAMS)


@pytest.mark.parametrize("family", FAMS)
def test_sizes_form_and_chapter_05_phrasings_first(family):
    w = load_wordings(family)
    assert len(set(w.human)) == len(w.human) == 40
    assert len(set(w.heldout)) == len(w.heldout) >= 12 and len(set(w.novel)) == len(w.novel) >= 5
    assert len(set(w.grammar)) >= 48
    assert w.human[:6] == FAMILIES[family].train_phrasings, "the bank starts with chapter 05's phrasings"
    assert w.heldout[:2] == FAMILIES[family].heldout_phrasings
    lists = [w.human, w.grammar, w.heldout, w.novel]
    for text in [t for lst in lists for t in lst]:
        assert text.isascii() and len(text) <= MAX_PHRASING_CHARS and "\n" not in text, text
        assert text[0].isupper() and text[-1] in ".?:", text
    assert sum(len(set(lst)) for lst in lists) == len(set().union(*map(set, lists))), "a wording in two lists"


@pytest.mark.parametrize("family", FAMS)
def test_no_heldout_wording_is_near_a_training_source(family):
    w = load_wordings(family)
    sources = _training_sources(family)
    for text in w.heldout + w.novel:
        worst = max(sources, key=lambda s: rouge_l(s, text))
        assert rouge_l(worst, text) < NEAR, f"{family}: {text!r} is near {worst!r}"


@pytest.mark.parametrize("family", FAMS)
def test_novel_wordings_use_no_training_content_word(family):
    w = load_wordings(family)
    seen = set().union(*(content_words(t) for t in [*w.human, *w.grammar, *FAMILIES[family].train_phrasings,
                                                    *_template_texts(family)]))
    for text in w.novel:
        assert not content_words(text) & seen, f"{family}: {text!r} reuses {content_words(text) & seen}"


def test_expand_multiplies_slots_and_refuses_unknown_ones():
    assert expand(["{a} {b}.", "{a}!"], {"a": ["X", "Y"], "b": ["1", "2"]}) == ["X 1.", "X 2.", "Y 1.", "Y 2.", "X!", "Y!"]
    with pytest.raises(KeyError, match="undefined slots"):
        expand(["{c}"], {"a": ["x"]})


def test_training_pools_are_nested_and_seeded():
    for source in ("human", "grammar"):
        full = training_wordings("comma_list", source, None, seed=1)
        for k in (1, 2, 4, 8, 16, 32):
            assert training_wordings("comma_list", source, k, seed=1) == full[:k]
    assert training_wordings("comma_list", "human", None, 0) != training_wordings("comma_list", "human", None, 1)


def test_worded_examples_spread_inputs_evenly_and_keep_inputs_across_conditions():
    one = worded_examples("train", 30, {"count_words": ["A."], "comma_list": ["B."]})
    many = worded_examples("train", 30, {"count_words": ["A.", "C.", "D."], "comma_list": ["B.", "E."]})
    assert sorted((e.family, e.record.input) for e in one) == sorted((e.family, e.record.input) for e in many)
    counts = {}
    for e in many:
        counts[e.record.instruction] = counts.get(e.record.instruction, 0) + 1
    assert counts == {"A.": 10, "C.": 10, "D.": 10, "B.": 15, "E.": 15}


def test_crossed_examples_pair_every_wording_with_the_same_inputs():
    items = crossed_examples("test", 4, "heldout", ["count_words", "repeat_word"])
    for family in ("count_words", "repeat_word"):
        mine = [e for e in items if e.family == family]
        assert len(mine) == 4 * len(load_wordings(family).heldout)
        by_wording = {}
        for e in mine:
            by_wording.setdefault(e.record.instruction, []).append(e.record.input)
        assert len({tuple(v) for v in by_wording.values()}) == 1, "every wording sees the same inputs"
