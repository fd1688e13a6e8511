"""Chapter 09's testbed capstone: conditions nest as designed and no condition trains on a test wording."""
from instructlib.data.wordings import load_wordings
from instructlib.data.wordings import drop_leaks
from instructlib.evaluation.wording_capstone import (ALL, BACKTRANSLATION, CONDITIONS, CONTROL, HAND, SELF_INSTRUCT,
                                                     TEMPLATES, UNFILTERED, condition_pools)
from instructlib.generate.wording_experiment import TESTBED_FAMILIES

FAMS = ("count_words", "repeat_word")


def test_drop_leaks_removes_test_wordings_and_counts_them():
    held = load_wordings("count_words").heldout[0]
    kept, dropped = drop_leaks({"count_words": [held, "Say how many words the list holds.", held.lower()]})
    assert kept == {"count_words": ["Say how many words the list holds."]} and dropped == 2


def test_conditions_add_each_source_to_the_hand_written_wordings():
    generated = {"templates": {f: [f"T {f}.", f"T2 {f}."] for f in FAMS},
                 "back-translation": {f: [f"B {f}."] for f in FAMS},
                 "unfiltered": {f: [f"B {f}.", f"U {f}."] for f in FAMS},
                 "self-instruct": {"count_words": ["S count."], "repeat_word": []}}
    pools = condition_pools(FAMS, generated)
    assert set(pools) == set(CONDITIONS) | {UNFILTERED}
    for f in FAMS:
        hand = list(load_wordings(f).human[:6])
        assert pools[HAND][f] == hand
        assert pools[TEMPLATES][f] == hand + generated["templates"][f]
        assert pools[BACKTRANSLATION][f] == hand + generated["back-translation"][f]
        assert pools[SELF_INSTRUCT][f] == hand + generated["self-instruct"][f]
        assert set(pools[ALL][f]) == set(pools[TEMPLATES][f]) | set(pools[BACKTRANSLATION][f]) | set(pools[SELF_INSTRUCT][f])
        assert pools[CONTROL][f] == list(load_wordings(f).human) and len(pools[CONTROL][f]) == 40
        assert pools[UNFILTERED][f] == hand + [f"B {f}.", f"U {f}."]


def test_no_condition_of_the_course_testbed_contains_a_test_wording():
    generated = {s: {f: list(load_wordings(f).grammar) for f in TESTBED_FAMILIES}
                 for s in ("templates", "back-translation", "unfiltered", "self-instruct")}
    for pool in condition_pools(TESTBED_FAMILIES, generated).values():
        for f, wordings in pool.items():
            bank = load_wordings(f)
            assert not set(wordings) & (set(bank.heldout) | set(bank.novel))
