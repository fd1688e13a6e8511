"""The unseen-rules experiment (chapter 09): records are right, nothing held out leaks into training."""
import random

import pytest

from dataclasses import replace

from instructlib.evaluation.unseen_rules import (RuleBed, apply_rule, copy_baseline, course_rulebed, located,
                                                 rule_record, rule_split, rule_test_sets, training_records,
                                                 training_rules)

BED = RuleBed()  # the cpu sizes: the split is pure Python and cheap


def test_records_are_the_rewrite_and_hold_the_rule_word():
    rng = random.Random(0)
    for rule in [("cat", "dog"), ("sun", "moon"), ("apple", "tree")]:
        for _ in range(50):
            r = rule_record(rule, rule_split(BED).train_words + rule, rng)
            words = r.input.split()
            assert rule[0] in words and rule[1] not in words and 3 <= len(words) <= 5
            assert r.output == apply_rule(r.instruction, r.input)
            assert r.output.split().count(rule[1]) == words.count(rule[0])


def test_apply_rule_refuses_other_instructions():
    assert apply_rule("Replace a with b.", "a c a") == "b c b"
    with pytest.raises(ValueError, match="not a replacement rule"):
        apply_rule("Reverse the words.", "a b")


def test_held_out_rules_and_reserved_words_never_reach_training():
    split = rule_split(BED)
    reserved = set(split.reserved_words)
    assert len(split.unseen) == BED.unseen_rules and len(split.new_words) == BED.new_word_rules
    assert not set(split.unseen) & set(split.pool)
    assert all(a in reserved and b in reserved for a, b in split.new_words)
    largest = max(BED.n_rules)
    for seed in (0, 1):
        rules = set(training_rules(BED, largest, seed))
        assert not rules & set(split.unseen) and not rules & set(split.new_words)
    # every word of every training record (instruction, input, output) of a small run comes from training words
    small = RuleBed(steps=50, batch=8)
    for r in training_records(small, 16, 0):
        assert not reserved & set(f"{r.instruction[:-1]} {r.input} {r.output}".split())


def test_conditions_are_nested_and_share_one_budget():
    for seed in (0, 3):
        assert training_rules(BED, 16, seed) == training_rules(BED, 64, seed)[:16]
    assert training_rules(BED, 16, 0) != training_rules(BED, 16, 1)
    small = RuleBed(steps=20, batch=4)
    assert len(training_records(small, 2, 0)) == len(training_records(small, 64, 0)) == 80
    assert len({r.instruction for r in training_records(small, 64, 0)}) == 64
    with pytest.raises(ValueError, match="rules: the pool has"):
        training_rules(BED, len(rule_split(BED).pool) + 1, 0)


def test_test_sets_are_paired_across_runs_and_copying_scores_zero():
    bed = course_rulebed("ci")
    a, b = rule_test_sets(bed, 2, 0), rule_test_sets(bed, 8, 1)
    assert a["unseen"] == b["unseen"] and a["new words"] == b["new words"]
    assert len(a["unseen"]) == bed.unseen_rules * bed.per_rule
    seen_rules = {r.instruction for r in a["seen"]}
    assert seen_rules == {f"Replace {x} with {y}." for x, y in training_rules(bed, 2, 0)}
    for items in a.values():
        assert copy_baseline(items) == 0.0
    assert copy_baseline([a["unseen"][0].__class__("i", "x y", "x y")]) == 1.0


def test_the_filler_diagnostic_shows_reserved_words_in_inputs_never_in_rules():
    bed = replace(RuleBed(steps=100, batch=8), reserved_as_fillers=True)
    reserved = set(rule_split(bed).reserved_words)
    records = training_records(bed, 64, 0)
    assert any(reserved & set(r.input.split()) for r in records)
    assert not any(reserved & set(r.instruction[:-1].split()) for r in records)
    assert training_rules(bed, 64, 0) == training_rules(RuleBed(), 64, 0)


def test_located_reads_where_the_answer_rewrote():
    r = rule_record(("cat", "dog"), ["sun", "moon", "tree", "star", "ring"], random.Random(1))
    assert located(r.output, r)
    assert located(r.output.replace("dog", "cow"), r)  # right places, wrong word
    assert not located(r.input, r)  # copied: nothing rewritten
    assert not located(r.output + " extra", r)


def test_runs_built_in_worker_processes_equal_runs_built_in_a_loop(monkeypatch):
    """prebuild_course_rules (two spawned workers) fills the cache with exactly what run_rules in this
    process writes: the same weights, bit for bit, and the same verdicts; run_rules then reads each run
    without encoding its training data again."""
    import copy
    import shutil

    import torch

    from instructlib.evaluation.unseen_rules import prebuild_course_rules, rules_run_done, run_rules, train_rules
    from instructlib.models import load_model, load_tokenizer
    from instructlib.models.course import course_model_dir

    base, tokenizer, key = load_model("tinygpt"), load_tokenizer("tinygpt"), course_model_dir().name
    bed = course_rulebed("ci", max_len=base.config.block_size)
    jobs = [(bed, n, 0) for n in bed.n_rules]
    built = {}
    for _, n, seed in jobs:
        run = train_rules(lambda: copy.deepcopy(base), tokenizer, bed, n, seed, key)
        shutil.rmtree(run.path)  # whatever an earlier test left: build it here, in this process
        scores = run_rules(lambda: copy.deepcopy(base), tokenizer, bed, n, seed, key)["scores"]
        run = train_rules(lambda: copy.deepcopy(base), tokenizer, bed, n, seed, key)
        built[n] = (torch.load(run.path / "model.pt", weights_only=True), scores, run.path)
        shutil.rmtree(run.path)
        assert not rules_run_done(tokenizer, bed, n, seed, key)
    assert prebuild_course_rules(tokenizer, jobs, key, processes=2) == len(jobs)
    assert prebuild_course_rules(tokenizer, jobs, key, processes=2) == 0  # all cached now

    def no_encoding(*args, **kwargs):
        raise AssertionError("run_rules encoded a run's data that prebuild_course_rules had named")

    monkeypatch.setattr("instructlib.evaluation.unseen_rules.encode_dataset", no_encoding)
    for _, n, seed in jobs:
        weights, scores, path = built[n]
        again = torch.load(path / "model.pt", weights_only=True)
        assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
        again = run_rules(lambda: copy.deepcopy(base), tokenizer, bed, n, seed, key)
        assert again["from_cache"] and again["scores"] == scores
