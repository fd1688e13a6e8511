"""Chapter 09: the capstone on chapter 06's testbed — chapter 05's wordings plus each generator's, one budget.

Every condition trains on the same inputs of the testbed families (``wording_experiment.course_testbed``)
for the same number of steps; only the *wordings* paired with the inputs change:

* (a) ``hand-written``: chapter 05's six hand-written phrasings per family (the bank's first six);
* (b) ``+ templates``: (a) plus chapter 06's grammar renderings;
* (c) ``+ back-translation``: (a) plus chapter 07's round-trip paraphrases that passed its filters;
* (d) ``+ self-instruct``: (a) plus chapter 08's rewrites (SmolLM2-135M offline) that passed its filters;
* (e) ``all``: (a) plus (b), (c) and (d)'s additions;
* (f) ``positive control``: the 40 clean hand-written wordings per family (what an ideal generator gives).

``UNFILTERED`` (chapter 07's comparison: (a) plus every distinct round trip, no meaning filter) can
be run the same way. Generated wordings that come within ROUGE-L 0.7 of a test wording are dropped
(``drop_leaks``) so the held-out test stays held out whatever a generator writes.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

from ..data.wordings import drop_leaks, training_wordings
from ..generate.backtranslation.paraphrase_data import BACKTRANSLATION, UNFILTERED
from ..generate.self_instruct.rewrite import SELF_INSTRUCT
from ..generate.wording_experiment import (CONTROL, HAND, TEMPLATES, Testbed, control_wordings, hand_wordings, plus_hand,
                                           run_pools, train_pool)
from ..train.experiment import CachedRun

ALL = "all"
CONDITIONS = (HAND, TEMPLATES, BACKTRANSLATION, SELF_INSTRUCT, ALL, CONTROL)
Pools = dict[str, dict[str, list[str]]]   # source or condition -> family -> wordings


SOURCES = ("templates", "back-translation", "unfiltered", "self-instruct")
NEEDS = {HAND: (), TEMPLATES: ("templates",), BACKTRANSLATION: ("back-translation",), SELF_INSTRUCT: ("self-instruct",),
         ALL: ("templates", "back-translation", "self-instruct"), CONTROL: (), UNFILTERED: ("unfiltered",)}


def generated_wordings(families: Sequence[str], profile=None, progress: bool = False,
                       sources: Sequence[str] = SOURCES) -> tuple[Pools, dict[str, int]]:
    """Each generator's wordings per family (``sources`` of ``SOURCES``; the rest come back empty) after
    ``drop_leaks``, and how many each lost to it. Chapter 07's and 08's pools are built once and cached."""
    from ..generate.backtranslation.paraphrase_data import paraphrase_pool, unfiltered_paraphrases
    from ..generate.self_instruct.rewrite import rewrite_pool

    raw: Pools = {s: {f: [] for f in families} for s in SOURCES}
    if "templates" in sources:
        raw["templates"] = {f: training_wordings(f, "grammar", None, 0) for f in families}
    if {"back-translation", "unfiltered"} & set(sources):
        para = paraphrase_pool(profile, progress=progress)
        raw["back-translation"] = {f: list(para.paraphrases.get(f, [])) for f in families}
        raw["unfiltered"] = unfiltered_paraphrases(para, families)
    if "self-instruct" in sources:
        raw["self-instruct"] = dict(rewrite_pool(families, profile, progress=progress).rewrites)
    out, leaks = {}, {}
    for source, pool in raw.items():
        out[source], leaks[source] = drop_leaks(pool)
    return out, leaks


def condition_pools(families: Sequence[str], generated: Pools) -> Pools:
    """The wordings per family of every condition (``CONDITIONS`` and ``UNFILTERED``), duplicates removed."""
    g = generated
    return {HAND: hand_wordings(families), TEMPLATES: plus_hand(families, g["templates"]),
            BACKTRANSLATION: plus_hand(families, g["back-translation"]),
            SELF_INSTRUCT: plus_hand(families, g["self-instruct"]),
            ALL: plus_hand(families, g["templates"], g["back-translation"], g["self-instruct"]),
            CONTROL: control_wordings(families), UNFILTERED: plus_hand(families, g["unfiltered"])}


def run_wording_capstone(make_base: Callable, tokenizer, testbed: Testbed, pools: Pools, seeds: Sequence[int],
                         base_key: str, conditions: Optional[Sequence[str]] = None, device=None,
                         progress: bool = True) -> dict[tuple[str, int], dict]:
    """Train (or load) and score every (condition, seed): ``{(condition, seed): run_pool's dict}``."""
    return run_pools(make_base, tokenizer, testbed, {c: pools[c] for c in conditions or CONDITIONS}, seeds, base_key,
                     device, desc="capstone runs" if progress else None)


def course_run(condition: str, seed: int = 0, progress: bool = False) -> CachedRun:
    """One condition of the course's capstone at the active profile (the notebook's run; trained on a miss)."""
    import copy

    from ..config import get_device
    from ..generate.wording_experiment import TESTBED_FAMILIES, course_testbed
    from ..models import load_model, load_tokenizer
    from ..models.course import course_model_dir

    base, tokenizer = load_model("tinygpt"), load_tokenizer("tinygpt")
    generated, _ = generated_wordings(TESTBED_FAMILIES, progress=progress, sources=NEEDS[condition])
    pool = condition_pools(TESTBED_FAMILIES, generated)[condition]
    return train_pool(lambda: copy.deepcopy(base), tokenizer, course_testbed(max_len=base.config.block_size),
                      condition, pool, seed, course_model_dir().name, get_device())
