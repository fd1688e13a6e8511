"""Chapter 09: the capstone's data — one training set per condition, the test sets, sizes per profile.

Every function here assembles data that chapters 04–08 build; nothing is generated a second way.

Conditions (``CONDITIONS``), each a list of ``verifiable.Example``:

* ``hand-written``: chapter 05's data — ``make_examples("train", n_hand)``, the verifiable families
  with their hand-written training phrasings;
* ``+ templates``: plus chapter 06's bank (``template_data.templated_examples``), the same inputs
  rendered through every training template of the family, in English and in Chinese;
* ``+ back-translation``: plus chapter 07's round-trip paraphrases of the training phrasings
  (``generate.paraphrase_data.paraphrased_examples``);
* ``+ self-instruct``: plus what chapter 08's pipeline (``generate.self_instruct``) writes offline
  with SmolLM2-135M when its seed pool is the verifiable families' training phrasings
  (``self_instruct_examples``): model-written instructions *and* model-written answers;
* ``all``: the union.

Test sets (``eval_sets``), all on inputs of the ``test`` split, which no training set contains:
``new inputs`` (training phrasings), ``held-out phrasings`` (chapter 04's phrasings that no
condition trains on) and ``Chinese phrasings`` — the Chinese share of the test: the same families
with the instruction written in Chinese by the bank's *held-out* Chinese templates (never rendered
for training) and the answer unchanged, scored by the family's checker like the other two.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

from instructlib.config import Profile, as_profile, cache_dir
from instructlib.data.records import Instance, Record, Task
from instructlib.data.verifiable import FAMILIES, Example, make_examples
from instructlib.evaluation.cache import digest
from instructlib.files import build_once

HAND, TEMPLATES, BACKTRANSLATION, SELF_INSTRUCT, ALL = (
    "hand-written", "+ templates", "+ back-translation", "+ self-instruct", "all")
CONDITIONS = (HAND, TEMPLATES, BACKTRANSLATION, SELF_INSTRUCT, ALL)
ProfileLike = Union[None, str, Profile]
SELF_INSTRUCT_FAMILY = "self-instruct"   # Example.family of model-written records (no checker)


@dataclass(frozen=True)
class CapstoneSizes:
    """How much of everything one profile uses (``capstone_sizes``)."""

    n_hand: int                 # hand-written instances per family (chapter 05's data)
    n_templated: int            # inputs per family rendered through the bank, per language
    n_paraphrased: int          # inputs per family phrased by round-trip paraphrases
    si_instructions: int        # self-instruct: stop when the machine pool holds this many ...
    si_rounds: int              # ... or after this many rounds
    si_batch: int               # prompts per round
    si_tokens: int              # new tokens per instruction / instance request
    n_eval: int                 # test inputs per family in each test set
    steps: int                  # optimizer steps of the hand-written condition (the token budget)
    batch_size: int
    seeds: tuple[int, ...]


def capstone_sizes(profile: ProfileLike = None) -> CapstoneSizes:
    """The sizes of ``profile``: ``ci`` tiny, ``cpu`` about 15 minutes of one CPU thread, ``gpu`` chapter 05's budget."""
    p = as_profile(profile)
    return CapstoneSizes(
        n_hand=p.pick(ci=3, cpu=200, gpu=400),
        n_templated=p.pick(ci=2, cpu=100, gpu=200),
        n_paraphrased=p.pick(ci=2, cpu=100, gpu=200),
        si_instructions=p.pick(ci=2, cpu=60, gpu=300),
        si_rounds=p.pick(ci=1, cpu=3, gpu=40),
        si_batch=p.pick(ci=2, cpu=8, gpu=16),
        si_tokens=p.pick(ci=8, cpu=64, gpu=256),
        n_eval=p.pick(ci=1, cpu=8, gpu=20),
        steps=p.pick(ci=4, cpu=150, gpu=1000),
        batch_size=p.pick(ci=4, cpu=32, gpu=32),
        seeds=p.pick(ci=(0,), cpu=(0, 1, 2), gpu=(0, 1, 2, 3, 4)),
    )


# --- training data per source -------------------------------------------------------------------

def hand_written_examples(sizes: CapstoneSizes) -> list[Example]:
    """Chapter 05's data: the training split in the hand-written training phrasings."""
    return make_examples("train", sizes.n_hand, seed=0)


def templated_training_examples(sizes: CapstoneSizes) -> list[Example]:
    """Chapter 06: training inputs rendered through every training template, English and Chinese."""
    from instructlib.generate.template_data import templated_examples

    return [e for lang in ("en", "zh") for e in templated_examples("train", sizes.n_templated, seed=0, language=lang)]


def paraphrased_training_examples(sizes: CapstoneSizes, profile: ProfileLike = None,
                                  progress: bool = False) -> list[Example]:
    """Chapter 07: training inputs phrased with the round-trip paraphrases that passed the meaning filters."""
    from instructlib.generate.paraphrase_data import paraphrased_examples

    return paraphrased_examples("train", sizes.n_paraphrased, seed=0, profile=profile, progress=progress)


def verifiable_seed_tasks(per_task: int = 2) -> list[Task]:
    """The self-instruct seed pool of the capstone: one task per hand-written training phrasing.

    Each task carries ``per_task`` training instances of its family, so the demonstrations the model
    sees are the capstone's hand-written data and nothing else.
    """
    tasks = []
    for name, family in FAMILIES.items():
        instances = [Instance(e.record.input, e.record.output)
                     for e in make_examples("train", per_task * len(family.train_phrasings), seed=0, families=[name])]
        for k, phrasing in enumerate(family.train_phrasings):
            tasks.append(Task(phrasing, instances[k * per_task:(k + 1) * per_task], name=f"{name}-{k}",
                              id=f"verifiable:{name}:{k}", source="capstone seed"))
    return tasks


def _self_instruct_settings(sizes: CapstoneSizes) -> dict:
    from instructlib.models import SMOLLM2

    return {"model": SMOLLM2, "instructions": sizes.si_instructions, "rounds": sizes.si_rounds,
            "batch": sizes.si_batch, "tokens": sizes.si_tokens, "seeds": [t.to_dict() for t in verifiable_seed_tasks()],
            "drop_truncated": True}   # text cut at the token limit is dropped (chapter 08's default since session 5)


def build_self_instruct(out: Path, sizes: CapstoneSizes, progress: bool = False) -> None:
    """Run (or resume, if ``out`` holds a partial run) the capstone's self-instruct into ``out``."""
    from instructlib.files import atomic_write_json
    from instructlib.generate.self_instruct import Sampling, self_instruct
    from instructlib.generate.self_instruct_prompts import INSTRUCTION_STOP, instance_stop
    from instructlib.models import SMOLLM2, load_llm

    t = sizes.si_tokens
    sampling = {"instruction": Sampling(0.7, 0.5, t, INSTRUCTION_STOP),
                "instances": Sampling(0.0, 1.0, t, instance_stop(3))}
    result = self_instruct(load_llm(SMOLLM2), out / "self_instruct.jsonl", sizes.si_instructions,
                           seeds=verifiable_seed_tasks(), progress=progress, language="en", batch_size=sizes.si_batch,
                           max_rounds=sizes.si_rounds, max_instances=3, seed=0, sampling=sampling)
    atomic_write_json(out / "summary.json", {
        "settings": {k: v for k, v in _self_instruct_settings(sizes).items() if k != "seeds"},
        "candidates": result.candidates, "machine_instructions": result.machine_instructions,
        "records": result.records, "rounds": result.rounds, "generation_seconds": result.generation_seconds,
        "funnel": result.funnel.to_dict()})


def self_instruct_path(sizes: CapstoneSizes, profile: ProfileLike = None) -> Path:
    """Where the capstone's self-instruct run for these sizes is cached (it may not exist yet)."""
    return cache_dir() / f"capstone-self-instruct-{as_profile(profile).name}-{digest(_self_instruct_settings(sizes), 10)}"


def self_instruct_dir(sizes: CapstoneSizes, profile: ProfileLike = None, progress: bool = False) -> Path:
    """Cache directory of the capstone's self-instruct run (SmolLM2-135M, built once, then read)."""
    return build_once(self_instruct_path(sizes, profile), lambda out: build_self_instruct(out, sizes, progress))


def self_instruct_examples(sizes: CapstoneSizes, profile: ProfileLike = None, progress: bool = False) -> list[Example]:
    """Chapter 08: the records the self-instruct run wrote (instruction, input and answer by the model)."""
    path = self_instruct_dir(sizes, profile, progress) / "self_instruct.jsonl"
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [Example(Record(r["instruction"], r.get("input", ""), r["output"]), SELF_INSTRUCT_FAMILY) for r in rows]


# --- conditions and test sets -------------------------------------------------------------------

def combine(*parts: Sequence[Example], seed: int = 0) -> list[Example]:
    """The union of several sources, shuffled reproducibly (the loop batches by length anyway)."""
    out = [e for part in parts for e in part]
    random.Random(seed).shuffle(out)
    return out


def train_sets(profile: ProfileLike = None, *, conditions: Sequence[str] = CONDITIONS,
               sources: Optional[dict[str, Sequence[Example]]] = None, progress: bool = False) -> dict[str, list[Example]]:
    """``{condition: examples}`` for ``conditions`` (building only the sources they need).

    ``sources`` may supply any of ``"templates"``, ``"back-translation"``, ``"self-instruct"``
    (e.g. a stand-in in a test); the rest are built here.
    """
    unknown = [c for c in conditions if c not in CONDITIONS]
    if unknown:
        raise ValueError(f"unknown conditions {unknown}; known: {list(CONDITIONS)}")
    sizes = capstone_sizes(profile)
    given = dict(sources or {})
    builders = {"templates": lambda: templated_training_examples(sizes),
                "back-translation": lambda: paraphrased_training_examples(sizes, profile, progress),
                "self-instruct": lambda: self_instruct_examples(sizes, profile, progress)}
    needs = {HAND: [], TEMPLATES: ["templates"], BACKTRANSLATION: ["back-translation"],
             SELF_INSTRUCT: ["self-instruct"], ALL: ["templates", "back-translation", "self-instruct"]}
    part: dict[str, Sequence[Example]] = {}
    for c in conditions:
        for source in needs[c]:
            if source not in part:
                part[source] = given[source] if source in given else builders[source]()
    hand = hand_written_examples(sizes)
    return {c: combine(hand, *(part[s] for s in needs[c])) for c in conditions}


def eval_sets(profile: ProfileLike = None) -> dict[str, list[Example]]:
    """The three test sets (see the module docstring): new inputs, held-out phrasings, Chinese phrasings."""
    from instructlib.generate.template_data import templated_examples

    n = capstone_sizes(profile).n_eval
    return {"new inputs": make_examples("test", n, seed=0),
            "held-out phrasings": make_examples("test", n, seed=0, phrasings="heldout"),
            "Chinese phrasings": templated_examples("test", n, seed=0, templates="heldout", language="zh")}


def heldout_phrasing_leaks(examples: Sequence[Example]) -> dict[str, int]:
    """Training examples whose instruction contains one of its family's held-out phrasings, per family.

    A non-zero count would mean the "held-out phrasings" test set is not held out for that data.
    """
    leaks: dict[str, int] = {}
    for e in examples:
        family = FAMILIES.get(e.family)
        if family is None:
            continue
        text = e.record.instruction.lower()
        if any(p.lower().rstrip(".?!:") in text for p in family.heldout_phrasings):
            leaks[e.family] = leaks.get(e.family, 0) + 1
    return leaks


def describe(sets: dict[str, Sequence[Example]]) -> list[dict]:
    """One row per condition: examples, distinct instructions, Chinese instructions, by source."""
    from instructlib.text import has_cjk

    rows = []
    for name, data in sets.items():
        rows.append({"condition": name, "examples": len(data),
                     "distinct instruction texts": len({e.record.instruction for e in data}),
                     "Chinese instructions": sum(has_cjk(e.record.instruction) for e in data),
                     "self-instruct records": sum(e.family == SELF_INSTRUCT_FAMILY for e in data)})
    return rows


__all__ = ["ALL", "BACKTRANSLATION", "CONDITIONS", "CapstoneSizes", "HAND", "SELF_INSTRUCT", "SELF_INSTRUCT_FAMILY",
           "TEMPLATES", "capstone_sizes", "combine", "describe", "eval_sets", "hand_written_examples",
           "heldout_phrasing_leaks", "paraphrased_training_examples", "build_self_instruct", "self_instruct_dir",
           "self_instruct_path", "self_instruct_examples",
           "templated_training_examples", "train_sets", "verifiable_seed_tasks"]
