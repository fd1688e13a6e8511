"""The capstone's data: conditions built from chapters 04-08, the three test sets, leaks, sizes, CLI."""
import pytest

from instructlib.cli import main
from instructlib.data.records import Record
from instructlib.data.verifiable import FAMILIES, Example, make_examples, split_of
from instructlib.evaluation import capstone_data as D
from instructlib.text import has_cjk


def _stand_ins():
    bt = [Example(Record("Put these numbers in increasing order.", e.record.input, e.record.output), e.family)
          for e in make_examples("train", 2, seed=5, families=["sort_numbers"])]
    si = [Example(Record("Name a fruit.", "", "apple"), D.SELF_INSTRUCT_FAMILY)]
    return {"back-translation": bt, "self-instruct": si}


def test_conditions_are_the_hand_written_data_plus_their_sources(monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "ci")
    sources = _stand_ins()
    sets = D.train_sets(sources=sources)
    assert list(sets) == list(D.CONDITIONS)
    hand = sets[D.HAND]
    assert len(hand) == D.capstone_sizes().n_hand * len(FAMILIES)
    templated = [e for e in sets[D.TEMPLATES] if e not in hand]
    assert len(sets[D.BACKTRANSLATION]) == len(hand) + 2 and len(sets[D.SELF_INSTRUCT]) == len(hand) + 1
    assert len(sets[D.ALL]) == len(hand) + len(templated) + 2 + 1
    assert all(e in sets[c] for c in D.CONDITIONS for e in hand)
    assert any(has_cjk(e.record.instruction) for e in templated), "templates bring Chinese instructions"
    assert all(split_of(e.family, e.record.input) == "train" for e in hand)
    assert D.train_sets(conditions=[D.HAND]) == {D.HAND: hand}, "deterministic, and builds only what it needs"
    with pytest.raises(ValueError, match="unknown conditions"):
        D.train_sets(conditions=["+ magic"])


def test_test_sets_hold_new_inputs_and_the_chinese_share(monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_PROFILE", "ci")
    sets = D.eval_sets()
    assert list(sets) == ["new inputs", "held-out phrasings", "Chinese phrasings"]
    for data in sets.values():
        assert {e.family for e in data} == set(FAMILIES)
    train_phrasings = {p for f in FAMILIES.values() for p in f.train_phrasings}
    assert all(e.record.instruction in train_phrasings for e in sets["new inputs"])
    assert not any(e.record.instruction in train_phrasings for e in sets["held-out phrasings"])
    zh = sets["Chinese phrasings"]
    # Chinese templates, except the bank's bare equation for subtraction ("50 - 7 ="): no English phrasing
    assert all(has_cjk(e.record.instruction) or not any(c.isalpha() for c in e.record.instruction) for e in zh)
    assert sum(has_cjk(e.record.instruction) for e in zh) >= 0.9 * len(zh)
    assert not any(has_cjk(e.record.output) for e in zh), "only the instruction is Chinese; answers are checked as usual"
    # the Chinese test templates are never used to build training data
    train_zh = {e.record.instruction for e in D.templated_training_examples(D.capstone_sizes())}
    assert not train_zh & {e.record.instruction for e in zh}


def test_heldout_phrasing_leak_check():
    leaky = make_examples("train", 1, seed=0, phrasings="heldout")
    assert sum(D.heldout_phrasing_leaks(leaky).values()) == len(leaky)
    assert D.heldout_phrasing_leaks(make_examples("train", 2, seed=0)) == {}
    assert D.heldout_phrasing_leaks(D.templated_training_examples(D.capstone_sizes("ci"))) == {}


def test_self_instruct_seed_pool_is_the_hand_written_phrasings():
    tasks = D.verifiable_seed_tasks()
    assert len(tasks) == sum(len(f.train_phrasings) for f in FAMILIES.values())
    assert len({t.id for t in tasks}) == len(tasks)
    for t in tasks:
        family = FAMILIES[t.name.rsplit("-", 1)[0]]
        assert t.instruction in family.train_phrasings and len(t.instances) == 2
        assert all(split_of(family.name, i.input) == "train" and family.check(i.output, i.output) for i in t.instances)


def test_sizes_per_profile():
    ci, cpu = D.capstone_sizes("ci"), D.capstone_sizes("cpu")
    assert len(cpu.seeds) >= 3 and cpu.steps > ci.steps and cpu.n_eval == 8
    assert D.capstone_sizes("gpu").steps == 1000, "the gpu profile runs chapter 05's full budget"


def test_capstone_cli_list_and_unknown_name(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTLIB_CACHE", str(tmp_path))
    assert main(["capstone", "list"]) == 0
    out = capsys.readouterr().out
    assert "tinygpt-sft-all" in out and "not built" in out
    assert main(["capstone", "build", "tinygpt-sft-nothing"]) == 2
    err = capsys.readouterr().err
    assert "unknown model name(s) tinygpt-sft-nothing" in err and "Traceback" not in err
