"""Chapter 06's wording experiment: chance baselines, paired sets, and a cached run end to end (ci sizes)."""
import copy

import pytest

from instructlib.data.records import Record
from instructlib.data.verifiable import Example
from instructlib.generate.wording_experiment import (Testbed, blind_baseline, condition_job, condition_wordings,
                                                     evaluation_sets, majority_baseline, per_family, pool_job,
                                                     prebuild_course_runs, run_condition, run_pool, seen_examples,
                                                     train_pool, train_run)
from instructlib.models import load_model, load_tokenizer

FAMS = ("count_words", "comma_list", "repeat_word")


def _ex(family, inp, out):
    return Example(Record("x", inp, out), family)


def test_blind_baseline_picks_the_best_single_rule_per_input_shape():
    items = [_ex("count_words", "a b", "2"), _ex("count_words", "c d e", "3"), _ex("comma_list", "a b", "a, b"),
             _ex("repeat_word", "cat 2", "cat cat")]
    # word lists: "count" is right on 2 of 3; the repeat input has its own shape, and its rule is right
    assert blind_baseline(items, FAMS) == pytest.approx(3 / 4)
    assert blind_baseline(items[:3], FAMS) == pytest.approx(2 / 3)


def test_majority_baseline_is_the_most_frequent_answer_share():
    items = [_ex("count_words", "a", "1"), _ex("count_words", "b", "1"), _ex("count_words", "b c", "2")]
    assert majority_baseline(items) == {"count_words": pytest.approx(2 / 3)}


def test_evaluation_sets_are_fixed_and_never_use_a_training_wording():
    bed = Testbed(families=FAMS, n_test=3)
    a, b = evaluation_sets(bed), evaluation_sets(bed)
    assert [e.record for e in a["heldout"]] == [e.record for e in b["heldout"]]
    trained = set()
    for seed in range(3):
        for source in ("human", "grammar"):
            for pool in condition_wordings(FAMS, source, None, seed).values():
                trained |= set(pool)
    assert not {e.record.instruction for items in a.values() for e in items} & trained


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer("tinygpt")


def test_a_run_is_trained_once_and_scored_on_every_set(tok, one_thread, tmp_path, monkeypatch):
    base = load_model("tinygpt")  # from the test cache; the runs go to a fresh one
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    bed = Testbed(families=FAMS, n_train=4, steps=3, batch=4, n_test=2, n_seen=2, max_len=base.config.block_size)
    first = run_condition(lambda: copy.deepcopy(base), tok, bed, "human", 2, 0, base_key="test")
    again = run_condition(lambda: copy.deepcopy(base), tok, bed, "human", 2, 0, base_key="test")
    assert not first["from_cache"] and again["from_cache"] and again["scores"] == first["scores"]
    sets = {"seen": seen_examples(bed, first["wordings"]), **evaluation_sets(bed)}
    assert {k: len(v) for k, v in first["scores"].items()} == {k: len(v) for k, v in sets.items()}
    assert all(len(w) == 2 for w in first["wordings"].values())
    assert set(per_family(first["scores"]["heldout"], sets["heldout"])) == set(FAMS)


def test_runs_built_in_worker_processes_equal_runs_built_in_a_loop(tok):
    """prebuild_course_runs (two spawned workers) writes exactly what run_condition and run_pool write in this
    process: the same weights, bit for bit, and the same verdicts; a job on another base is left to the loop."""
    import shutil

    import torch

    from instructlib.models.course import course_model_dir

    base, key = load_model("tinygpt"), course_model_dir().name
    bed = Testbed(families=FAMS, n_train=4, steps=3, batch=4, n_test=2, n_seen=2, max_len=base.config.block_size)
    pool = condition_wordings(FAMS, "grammar", 3, 1)
    make = lambda: copy.deepcopy(base)  # noqa: E731
    loops = [(lambda: run_condition(make, tok, bed, "human", 2, 0, key), lambda: train_run(make, tok, bed, "human", 2, 0, key)),
             (lambda: run_pool(make, tok, bed, "a pool", pool, 1, key), lambda: train_pool(make, tok, bed, "a pool", pool, 1, key))]
    built = []
    for run, trained in loops:
        shutil.rmtree(trained().path)  # whatever an earlier test left: build it here, in this process
        scores = run()["scores"]
        path = trained().path
        built.append((torch.load(path / "model.pt", weights_only=True), scores, path))
        shutil.rmtree(path)
    jobs = [condition_job(bed, "human", 2, 0, key), pool_job(bed, "a pool", pool, 1, key)]
    assert prebuild_course_runs(jobs + [condition_job(bed, "human", 1, 0, "another base")], processes=2) == [True, True, False]
    other = train_run(make, tok, bed, "human", 1, 0, "another base")
    assert not other.from_cache  # left to the loop
    shutil.rmtree(other.path)
    assert prebuild_course_runs(jobs, processes=2) == [False, False]  # all cached now
    for (run, _), (weights, scores, path) in zip(loops, built):
        again = torch.load(path / "model.pt", weights_only=True)
        assert weights.keys() == again.keys() and all(torch.equal(weights[k], again[k]) for k in weights)
        result = run()
        assert result["from_cache"] and result["scores"] == scores
        shutil.rmtree(path)


def test_compare_pools_pairs_by_seed_and_item():
    from instructlib.generate.wording_experiment import compare_pools

    bed = Testbed(families=("count_words",), n_test=2)
    items = evaluation_sets(bed)
    n_h, n_n = len(items["heldout"]), len(items["novel"])

    def run(h, n, seen):
        return {"scores": {"heldout": h, "novel": n, "seen": seen}, "wordings": {"count_words": ["a", "b"]}}

    runs = {("hand-written", 0): run([0] * n_h, [0] * n_n, [1, 1]), ("hand-written", 1): run([0] * n_h, [0] * n_n, [1, 0]),
            ("more", 0): run([1] * n_h, [0] * n_n, [1, 1]), ("more", 1): run([1] * n_h, [1] * n_n, [1, 1])}
    table = compare_pools(runs, bed, [0, 1], ["hand-written", "more"], n_boot=200)
    assert table.loc["hand-written", "seen"] == 0.75 and table.loc["more", "wordings per family"] == 2
    assert table.loc["more", "heldout vs hand-written"] == (1.0, 1.0, 1.0)   # every item, every seed
    assert table.loc["more", "novel"][0] == 0.5 and table.loc["more", "novel"][1] == 0.0   # seeds disagree
