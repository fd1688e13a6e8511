"""Chapter 07: the paraphrase pool (round trips of the training phrasings, filtered) and the data built on it."""
import json

import pytest

from instructlib.data.verifiable import FAMILIES, make_examples
from instructlib.generate.backtranslation import paraphrase_data
from instructlib.generate.backtranslation.roundtrip import MarianTranslator
from instructlib.generate.funnel import Funnel
from instructlib.generate.backtranslation.paraphrase_data import (ParaphrasePool, PoolRecipe, build_pool, paraphrase_pool,
                                                  paraphrased_examples, rephrase)
from instructlib.models.llm import ScriptedLLM

# the way back for the six "add" phrasings, two samples each, in order
ADD_BACK = [
    "Sum up the two numbers numbers.", "Sum up the two numbers.",      # garbled near-copy, faithful
    "What is the sum of the three numbers?", "把两个数相加。",           # number changed, wrong script
    "Zebra moon and the sun shine.", "Compute the total of the numbers.",  # meaning lost, copy of source
] + [p for p in FAMILIES["add"].train_phrasings[3:] for _ in range(2)]  # copies


def scripted_translators():
    forward = MarianTranslator(ScriptedLLM(lambda p: "把数相加。"), "en", "zh", name="fw")
    backward = MarianTranslator(ScriptedLLM(list(ADD_BACK)), "zh", "en", name="bw")
    return forward, backward


@pytest.mark.parametrize("order, kept", [("fidelity", "Sum up the two numbers."),
                                         ("source", "Sum up the two numbers numbers.")])
def test_pool_keeps_faithful_new_paraphrases_and_says_why_it_drops_the_rest(order, kept):
    forward, backward = scripted_translators()
    pool = build_pool(forward, backward, PoolRecipe(n=2, min_chrf=30, order=order), families=["add"])
    assert pool.paraphrases == {"add": [kept]}
    assert len(pool.candidates) == 12 and pool.funnel.entered("language") == 12
    assert [r["paraphrase"] for r in pool.candidates] == ADD_BACK  # source order, whatever the filter order
    why = {r["paraphrase"]: r.get("reason") for r in pool.candidates}
    assert why["What is the sum of the three numbers?"] == "number lost"
    assert why["把两个数相加。"] == "wrong script"
    assert why["Zebra moon and the sun shine."] == "low chrF"
    assert why["Compute the total of the numbers."] == "copy of source"
    other = ({"Sum up the two numbers.", "Sum up the two numbers numbers."} - {kept}).pop()
    assert why[other] == "duplicate in pool"
    assert sum(r["kept"] for r in pool.candidates) == 1
    assert all(r["family"] == "add" and 0 <= r["chrf"] <= 100 for r in pool.candidates)


def test_pool_refuses_an_unknown_order():
    forward, backward = scripted_translators()
    with pytest.raises(ValueError, match="order"):
        build_pool(forward, backward, PoolRecipe(n=2, order="random"), families=["add"])


def test_rephrase_keeps_inputs_and_uses_every_paraphrase_evenly():
    examples = make_examples("train", 6, seed=3, families=["add", "uppercase"])
    pool = {"add": ["Sum them.", "Total them.", "Plus them."], "uppercase": ["Capitals, please."]}
    out = rephrase(examples, pool, seed=1)
    assert [(e.record.input, e.record.output, e.family) for e in out] == \
           [(e.record.input, e.record.output, e.family) for e in examples]
    adds = [e.record.instruction for e in out if e.family == "add"]
    assert sorted(adds) == sorted(pool["add"] * 2)
    assert {e.record.instruction for e in out if e.family == "uppercase"} == {"Capitals, please."}
    assert [e.record for e in rephrase(examples, pool, seed=1)] == [e.record for e in out]
    assert [e.record for e in rephrase(examples, pool, seed=2)] != [e.record for e in out]
    with pytest.raises(ValueError, match="uppercase"):
        rephrase(examples, {"add": ["Sum them."]})


def test_paraphrased_examples_phrase_the_split_inputs_and_leave_out_empty_families(monkeypatch):
    fake = ParaphrasePool({"add": ["Sum them.", "Total them."], "antonym": [], "uppercase": ["Shout it."]},
                          Funnel(), [], PoolRecipe())
    monkeypatch.setattr(paraphrase_data, "paraphrase_pool", lambda profile=None, progress=False: fake)
    out = paraphrased_examples("test", 4, seed=2, families=["add", "antonym", "uppercase"])
    reference = make_examples("test", 4, 2, families=["add", "uppercase"])
    assert [(e.family, e.record.input, e.record.output) for e in out] == \
           [(e.family, e.record.input, e.record.output) for e in reference]
    assert all(e.record.instruction in fake.paraphrases[e.family] for e in out)
    assert out == paraphrased_examples("test", 4, seed=2, families=["add", "antonym", "uppercase"])
    assert paraphrased_examples("test", 4, families=["antonym"]) == []
    with pytest.raises(KeyError, match="no_such_family"):
        paraphrased_examples("test", 4, families=["no_such_family"])


def test_the_cached_pool_of_the_profile_is_built_once_and_consistent(one_thread, monkeypatch):
    pool = paraphrase_pool(progress=False)
    recipe = paraphrase_data.pool_recipe()
    assert len(pool.candidates) == recipe.n * sum(len(f.train_phrasings) for f in FAMILIES.values())
    assert pool.funnel.entered("language") == len(pool.candidates)
    kept = {}
    for row in pool.candidates:
        if row["kept"]:
            kept.setdefault(row["family"], []).append(row["paraphrase"])
        else:
            assert row["reason"] and row["filter"] in pool.funnel.order
    assert {f: sorted(v) for f, v in kept.items()} == {f: sorted(v) for f, v in pool.paraphrases.items() if v}
    assert json.loads((pool.path / "pool.json").read_text())["recipe"]["n"] == recipe.n

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the pool was rebuilt instead of read from the cache")

    monkeypatch.setattr("instructlib.generate.backtranslation.roundtrip.course_translators", no_rebuild)
    again = paraphrase_pool(progress=False)
    assert again.path == pool.path and again.paraphrases == pool.paraphrases
    assert again.funnel.table() == pool.funnel.table()
    examples = paraphrased_examples("validation", 2, seed=1)
    assert all(e.record.instruction in pool.paraphrases[e.family] for e in examples)


def test_candidates_can_be_filtered_again_with_other_settings():
    forward, backward = scripted_translators()
    pool = build_pool(forward, backward, PoolRecipe(n=2, min_chrf=30), families=["add"])
    rows = [dict(r) for r in pool.candidates]
    kept, funnel = paraphrase_data.filter_candidates(rows, PoolRecipe(min_chrf=30, order="source"))
    assert kept == {"add": ["Sum up the two numbers numbers."]}
    assert all("reason" not in r for r in rows if r["kept"]) and funnel.entered("novelty") == 9  # 2 rewordings + 7 copies
    kept, _ = paraphrase_data.filter_candidates(rows, PoolRecipe(min_chrf=80))
    assert kept == {"add": []}  # nothing that new is that faithful
    assert pool.paraphrases == {"add": ["Sum up the two numbers."]}  # the pool's own rows are untouched
    assert [r["kept"] for r in pool.candidates].count(True) == 1


def test_unfiltered_paraphrases_are_every_distinct_change_of_the_source():
    from instructlib.generate.funnel import Funnel
    from instructlib.generate.backtranslation.paraphrase_data import PoolRecipe, ParaphrasePool, unfiltered_paraphrases

    rows = [{"family": "add", "source": "Add them.", "paraphrase": p} for p in
            ["Add them.", "Sum  them.", "Sum them.", "", "Plus them."]]
    rows.append({"family": "uppercase", "source": "Shout.", "paraphrase": "Yell."})
    pool = ParaphrasePool({}, Funnel(), rows, PoolRecipe())
    assert unfiltered_paraphrases(pool, ["add", "antonym"]) == {"add": ["Sum them.", "Plus them."], "antonym": []}
