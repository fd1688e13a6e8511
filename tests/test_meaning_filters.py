"""Chapter 07: every meaning filter on crafted cases, counted in the Funnel."""
import pytest

from instructlib.data.verifiable import FAMILIES
from instructlib.generate.funnel import Funnel
from instructlib.generate.backtranslation.meaning_filters import (add_checker_scores, chrf, default_checks, make_checker_check,
                                                  make_fidelity_check, make_language_check, make_length_check,
                                                  make_novelty_check, make_numbers_check, numbers_and_placeholders,
                                                  precision_recall, script_share)


def row(paraphrase, source="Repeat the word 3 times.", lang="en", **kw):
    return {"source": source, "paraphrase": paraphrase, "lang": lang, **kw}


def test_a_paraphrase_that_drops_or_changes_a_number_is_rejected():
    check = make_numbers_check()
    assert check(row("Write the word 3 times.")) is None
    assert check(row("Write the word three times.")) is None  # a number word is the same number
    assert check(row("Write the word many times.")) == "number lost"
    assert check(row("Write the word 5 times.")) == "number lost"
    assert check(row("Write the word 3 times, 2 per line.")) == "number added"
    assert check(row("Greet {name} twice.", source="Greet {name} twice.")) is None
    assert check(row("Greet them twice.", source="Greet {name} twice.")) == "placeholder lost"
    assert numbers_and_placeholders("Add 2.5 and {x} to 10") == {"2.5": 1, "10": 1, "{x}": 1}
    # "one" is a pronoun far more often than a number: it is not counted
    assert check(row("List the words from the last to the first.", source="List them from the last one.")) is None


def test_a_paraphrase_identical_to_its_source_or_the_pool_is_rejected():
    check = make_novelty_check(max_rouge=0.8, pool={"add": ["Add the two numbers."]})
    src = "What is the sum of the two numbers?"
    assert check(row(src, source=src, family="add")) == "copy of source"
    assert check(row("what is the sum of the two numbers", source=src, family="add")) == "too close to source"
    assert check(row("Add the two numbers.", source=src, family="add")) == "duplicate in pool"
    assert check(row("Find the total of both values.", source=src, family="add")) is None
    assert check(row("Find the total of both values.", source=src, family="add")) == "duplicate in pool"
    # another family has its own pool
    assert check(row("Find the total of both values.", source="Sort them.", family="sort_numbers")) is None


def test_language_check_rejects_empty_and_wrong_script():
    check = make_language_check(min_share=0.9)
    assert check(row("Sort the numbers.")) is None
    assert check(row("Sort the 数字.")) == "wrong script"
    assert check(row("   ")) == "empty"
    assert check(row("Which number is the biggest？")) == "wrong script"  # the pivot's punctuation
    assert check(row("把数字排序。", lang="zh")) is None and check(row("sort", lang="zh")) == "wrong script"
    assert script_share("abc", "en") == 1.0 and script_share("数字", "zh") == 1.0
    with pytest.raises(ValueError):
        script_share("x", "fr")


def test_length_check_rejects_truncated_and_rambling_paraphrases():
    check = make_length_check(0.5, 2.0)
    src = "Sort the numbers from smallest to largest."
    assert check(row("Order the numbers from low to high.", source=src)) is None
    assert check(row("Sort.", source=src)) == "too short"
    assert check(row(" ".join(["numbers"] * 20), source=src)) == "too long"


def test_fidelity_is_sacrebleu_chrf_and_rejects_unrelated_text():
    import sacrebleu

    src = "Find the largest number."
    assert chrf(src, "Find the biggest number.") == pytest.approx(
        sacrebleu.sentence_chrf("Find the biggest number.", [src]).score)
    check = make_fidelity_check(min_chrf=30)
    assert check(row("Find the biggest number.", source=src)) is None
    assert check(row("Write a poem about the sea.", source=src)) == "low chrF"


def test_checker_scores_compare_paraphrase_and_source_on_the_same_inputs():
    fam = FAMILIES["uppercase"]
    rows = [row("Make every letter big.", source=fam.train_phrasings[0], family="uppercase"),
            row("Say it quietly.", source=fam.train_phrasings[0], family="uppercase"),
            row("Anything.", source="Summarize.", family=None)]
    seen = []

    def answer(records):  # a fake model: follows instructions that mention "letter" or "uppercase"
        seen.extend(records)
        return [r.input.upper() if ("letter" in r.instruction or "uppercase" in r.instruction) else r.input
                for r in records]

    add_checker_scores(rows, answer, n_inputs=3)
    assert len(seen) == 3 + 2 * 3  # source once, each verifiable paraphrase once, on 3 inputs
    assert rows[0]["checker"] == 1.0 and rows[1]["checker"] == 0.0 and rows[0]["checker_source"] == 1.0
    assert "checker" not in rows[2]
    check = make_checker_check()
    assert check(rows[0]) is None and check(rows[1]) == "checker fails" and check(rows[2]) is None


def test_the_chain_counts_every_rejection_in_the_funnel():
    src = "Repeat the word 3 times."
    rows = [row("Say the word 3 times over."), row(src), row("Write the word 4 times."), row("把这个词写3遍。"),
            row("Say the word 3 times over.")]
    funnel = Funnel()
    kept = funnel.run(rows, default_checks(min_chrf=20))
    assert kept == [rows[0]]
    table = {r["filter"]: r for r in funnel.table()}
    assert table["language"]["reasons"] == {"wrong script": 1}
    assert table["numbers"]["reasons"] == {"number lost": 1}
    assert table["novelty"]["reasons"] == {"copy of source": 1, "duplicate in pool": 1}
    assert table["language"]["in"] == 5 and table["novelty"]["kept"] == 1


def test_precision_recall_of_a_threshold():
    pr = precision_recall([0.9, 0.8, 0.3, 0.1], [True, False, True, False], [0.0, 0.5, 1.0])
    assert pr == [(0.0, 0.5, 1.0), (0.5, 0.5, 0.5), (1.0, 1.0, 0.0)]


def test_vocabulary_check_rejects_glued_words():
    from instructlib.generate.backtranslation.meaning_filters import make_vocabulary_check

    check = make_vocabulary_check(["Compute the difference.", "Sort in increasing order."])
    assert check(row("Compute the difference.")) is None
    assert check(row("Compute the differencereasing order.")) == "unknown word"
    names = [name for name, _ in default_checks(vocabulary=["a b"])]
    assert names[:2] == ["language", "vocabulary"] and names[-1] == "novelty"
