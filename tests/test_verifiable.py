"""The verifiable task suite: generators, checkers, phrasings, splits and scoring."""
import random

import pytest

from instructlib.data.records import Record
from instructlib.data.verifiable import (ANTONYMS, CAPITALS, FAMILIES, MAX_INPUT_CHARS,
                                         MAX_OUTPUT_CHARS, MAX_PHRASING_CHARS, SPLITS,
                                         VOCABULARY, Example, exact_match, make_examples,
                                         make_records, score_by_family, split_of)

NAMES = sorted(FAMILIES)


def test_at_least_ten_families_with_enough_phrasings():
    assert len(FAMILIES) >= 10
    for name, fam in FAMILIES.items():
        assert fam.name == name
        assert len(fam.train_phrasings) >= 5 and len(fam.heldout_phrasings) >= 2
        assert len(set(fam.train_phrasings)) == len(fam.train_phrasings)


def test_phrasings_are_unique_and_heldout_never_in_train():
    train = [p for f in FAMILIES.values() for p in f.train_phrasings]
    heldout = [p for f in FAMILIES.values() for p in f.heldout_phrasings]
    assert len(set(train + heldout)) == len(train) + len(heldout)
    assert not {p.lower() for p in train} & {p.lower() for p in heldout}
    for p in train + heldout:
        assert "{" not in p and len(p.split()) > 3 and p.isascii(), p
        assert len(p) <= MAX_PHRASING_CHARS, p


@pytest.mark.parametrize("name", NAMES)
def test_check_accepts_own_outputs_and_rejects_corrupted(name):
    fam, rng = FAMILIES[name], random.Random(name)
    for _ in range(200):
        inp, out = fam.generate(rng)
        assert inp and out and inp.isascii() and out.isascii()
        assert len(inp) <= MAX_INPUT_CHARS and len(out) <= MAX_OUTPUT_CHARS, (inp, out)
        assert fam.check(out, out) and fam.check(f"  {out}\n", out)
        assert not fam.check(out + "x", out)
        assert not fam.check(out[:-1], out)
        assert not fam.check("", out)


def test_reference_answers_are_right():
    rng = random.Random(1)
    gen = {n: FAMILIES[n].generate for n in NAMES}
    for _ in range(50):
        a = gen["add"](rng)
        assert int(a[1]) == sum(map(int, a[0].split()))
        s = gen["sort_numbers"](rng)
        assert s[1].split() == [str(x) for x in sorted(map(int, s[0].split()))]
        c = gen["count_words"](rng)
        assert int(c[1]) == len(c[0].split())
        assert gen["capital_of"](rng)[1] in CAPITALS.values()
    assert FAMILIES["reverse_words"].check("c b a", "c b a")
    assert not FAMILIES["uppercase"].check("Red", "RED")  # case-sensitive on purpose


def test_lookup_tables_are_consistent_and_in_vocabulary():
    for word, opposite in ANTONYMS.items():
        assert ANTONYMS[opposite] == word and opposite != word
    vocab = set(VOCABULARY)
    assert set(CAPITALS) <= vocab and set(CAPITALS.values()) <= vocab and set(ANTONYMS) <= vocab
    assert all(w.isascii() and w.isalpha() for w in VOCABULARY)


def test_words_used_by_generators_come_from_vocabulary():
    vocab = set(VOCABULARY)
    for ex in make_examples("train", 30, seed=3):
        if ex.family in {"reverse_words", "first_last_word", "comma_list", "count_words",
                         "repeat_word", "capital_of", "antonym"}:
            words = ex.record.input.replace(",", " ").split()
            assert all(w in vocab or w.isdigit() for w in words), ex


def test_make_records_deterministic_and_seed_dependent():
    a = make_records("train", 20, seed=7)
    assert a == make_records("train", 20, seed=7)
    assert a != make_records("train", 20, seed=8)
    assert all(isinstance(r, Record) for r in a) and len(a) == 20 * len(FAMILIES)
    assert [e.record for e in make_examples("train", 20, seed=7)] == a


def test_splits_are_disjoint_per_family():
    by_split = {s: make_examples(s, 60, seed=0) for s in SPLITS}
    by_split["train-other-seed"] = make_examples("train", 60, seed=1)
    seen: dict[tuple[str, str], str] = {}
    for split, examples in by_split.items():
        split = split.split("-")[0]
        for e in examples:
            assert split_of(e.family, e.record.input) == split
            assert seen.setdefault((e.family, e.record.input), split) == split, e


def test_antonym_pairs_share_a_split():
    for word, opposite in ANTONYMS.items():
        assert split_of("antonym", word) == split_of("antonym", opposite)


def test_instances_unique_within_split_while_pool_lasts():
    for e_family, examples in _group(make_examples("test", 50, seed=0)).items():
        inputs = [e.record.input for e in examples]
        if e_family not in {"capital_of", "antonym"}:
            assert len(set(inputs)) == len(inputs), e_family


def _group(examples):
    out: dict[str, list[Example]] = {}
    for e in examples:
        out.setdefault(e.family, []).append(e)
    return out


def test_heldout_phrasings_used_only_when_asked():
    train_ph = {p for f in FAMILIES.values() for p in f.train_phrasings}
    held = make_examples("test", 10, phrasings="heldout")
    assert all(e.record.instruction in FAMILIES[e.family].heldout_phrasings for e in held)
    assert all(e.record.instruction in train_ph for e in make_examples("train", 10))


def test_scoring():
    examples = make_examples("validation", 4, seed=0)
    gold = [e.record.output for e in examples]
    assert exact_match(gold, examples) == 1.0
    assert exact_match(gold, [e.record for e in examples]) == 1.0
    wrong = ["nope" if e.family == "add" else g for g, e in zip(gold, examples)]
    scores = score_by_family(wrong, examples)
    assert scores["add"] == 0.0 and scores["antonym"] == 1.0 and list(scores) == list(FAMILIES)
    assert exact_match(wrong, examples) == pytest.approx(1 - 1 / len(FAMILIES))
    with pytest.raises(ValueError):
        exact_match(gold[:-1], examples)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="split"):
        make_records("dev", 3)
    with pytest.raises(ValueError, match="phrasings"):
        make_records("train", 3, phrasings="both")
    with pytest.raises(KeyError, match="unknown"):
        make_examples("train", 3, families=["nope"])


def test_each_rule_reproduces_its_generator_and_rejects_foreign_inputs():
    from instructlib.data.verifiable import SOLVERS, solve
    assert set(SOLVERS) == set(FAMILIES)
    rng = random.Random(7)
    for name, fam in FAMILIES.items():
        for _ in range(300):
            inp, out = fam.generate(rng)
            assert solve(name, inp) == out, (name, inp)
    assert solve("add", "apple pear") == "" and solve("repeat_word", "cat dog") == ""
