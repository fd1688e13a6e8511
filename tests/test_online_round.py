"""Chapter 10's online round: the held-out wordings split without leaks, paired test sets, a gate on verdicts."""
from __future__ import annotations

import random

import pytest

from instructlib.data.wordings import load_wordings
from instructlib.deploy.feedback import gate, gate_outcomes
from instructlib.deploy.online_round import WordingSplit, round_test_sets, split_heldout
from instructlib.generate.wording_experiment import TESTBED_FAMILIES, hand_wordings
from instructlib.text import rouge_l

FAMILIES = list(TESTBED_FAMILIES)


def test_the_split_covers_the_held_out_wordings_once_and_leaks_nothing():
    split = split_heldout(FAMILIES)
    for f in FAMILIES:
        heldout = list(load_wordings(f).heldout)
        parts = split.users[f] + split.transfer[f] + split.leaked[f]
        assert sorted(parts) == sorted(heldout) and len(split.users[f]) == len(heldout) // 2
        assert all(rouge_l(u, t) < 0.7 for u in split.users[f] for t in split.transfer[f])
        assert len(split.transfer[f]) >= 5, f"{f}: too few transfer wordings left to measure transfer"
        assert not set(split.users[f] + split.transfer[f]) & set(hand_wordings([f])[f])


def test_a_transfer_wording_near_a_user_wording_is_set_aside():
    loose = split_heldout(FAMILIES, threshold=0.3)   # a low threshold calls more pairs "near"
    strict = split_heldout(FAMILIES, threshold=0.7)
    assert sum(map(len, loose.leaked.values())) > sum(map(len, strict.leaked.values()))
    for f in FAMILIES:
        for w in loose.leaked[f]:
            assert max(rouge_l(u, w) for u in loose.users[f]) >= 0.3


def test_round_test_sets_are_paired_across_wordings():
    split = split_heldout(FAMILIES)
    sets = round_test_sets(hand_wordings(FAMILIES), split, n_seen=3, n_inputs=2)
    assert len(sets["seen"]) == 3 * 6 * len(FAMILIES)
    assert len(sets["users"]) == 2 * sum(len(split.users[f]) for f in FAMILIES)
    for name in ("users", "transfer", "novel"):
        inputs = {(e.family, e.record.input) for e in sets[name]}
        assert inputs == {(e.family, e.record.input) for e in sets["users"]}  # the same inputs in every set
    seen_instr = {e.record.instruction for e in sets["seen"]}
    assert not seen_instr & {e.record.instruction for e in sets["transfer"] + sets["users"] + sets["novel"]}
    users = {e.record.instruction for e in sets["users"]}
    assert not users & {e.record.instruction for e in sets["transfer"]}
    assert isinstance(split, WordingSplit)


def test_gate_on_verdicts_equals_gate_on_answers():
    from instructlib.data.verifiable import make_examples

    examples = make_examples("test", 20, seed=0)
    rng = random.Random(3)
    a = [rng.random() < 0.5 for _ in examples]
    b = [x if rng.random() < 0.9 else not x for x in a]
    answers = lambda right: [e.record.output if ok else "wrong" for e, ok in zip(examples, right)]  # noqa: E731
    for kw in ({}, {"tolerance": 0.05}, {"margin": 0.02}, {"margin": 0.1, "confidence": 0.9}):
        assert gate_outcomes(a, b, **kw) == gate(answers(a), answers(b), examples, **kw)
    with pytest.raises(ValueError, match="one verdict per item"):
        gate_outcomes(a, b[:-1])
    with pytest.raises(ValueError, match="either tolerance"):
        gate_outcomes(a, b, 0.1, margin=0.02)
