"""Exact match, normalisation in English and Chinese, IFEval strict/loose (instructlib.evaluation.metrics)."""
import string

import pytest

from instructlib.data.verifiable import FAMILIES, make_examples
from instructlib.evaluation.metrics import (exact_match, exact_match_scores, loose_variants, normalize_answer,
                                            strict_loose)


def superni_normalize(s: str) -> str:
    """Super-NaturalInstructions' normalize_answer, as its evaluation script specifies it."""
    s = s.lower()
    s = "".join(ch for ch in s if ch not in set(string.punctuation))
    return " ".join(s.split())


@pytest.mark.parametrize("text", [
    "The Answer is: Paris!", "  multiple   spaces\tand\nnewlines ", "it's (a) test-case.", "ALL CAPS", "",
    "don't  stop,  believing...", "1,234.5 dollars", "Naïve café résumé",
])
def test_english_normalisation_is_superni(text):
    assert normalize_answer(text, "en") == superni_normalize(text)
    assert normalize_answer(text) == superni_normalize(text)  # auto: no CJK -> English rules


@pytest.mark.parametrize("text, expected", [
    ("北京。", "北京"),
    ("“你好”，世界！", "你好世界"),
    ("北 京", "北京"),                       # spaces between Chinese characters mean nothing
    ("ＡＢＣ１２３", "abc123"),               # full-width letters and digits meet ASCII (NFKC)
    ("答案：42。", "答案42"),
    ("使用 GPT 模型", "使用gpt模型"),          # spaces next to CJK go, case folds
    ("《红楼梦》、《西游记》", "红楼梦西游记"),
])
def test_chinese_normalisation(text, expected):
    assert normalize_answer(text, "zh") == expected
    assert normalize_answer(text) == expected  # auto-detected


def test_english_rules_keep_chinese_punctuation_and_chinese_rules_drop_it():
    assert normalize_answer("北京。", "en") == "北京。"  # string.punctuation has no "。": why zh rules exist
    assert normalize_answer("hello, world", "zh") == "hello world"
    with pytest.raises(ValueError):
        normalize_answer("x", "fr")


def test_articles_only_on_request():
    assert normalize_answer("The cat") == "the cat"
    assert normalize_answer("The cat", remove_articles=True) == "cat"


def test_exact_match_max_over_references_and_language_per_reference():
    assert exact_match("Paris.", "paris") == 1.0
    assert exact_match("Lyon", ["Paris", "paris, France"]) == 0.0
    assert exact_match("paris france", ["Lyon", "Paris, France"]) == 1.0
    assert exact_match("北京", ["北京。"]) == 1.0
    assert exact_match("北京", ["上海", "北 京！"]) == 1.0
    assert exact_match("北京市", "北京") == 0.0
    assert exact_match("ＡＢＣ１２３", "abc123") == 1.0  # Chinese rules when either side looks Chinese
    assert exact_match("abc123", "ＡＢＣ１２３") == 1.0
    assert exact_match("ＡＢＣ", "abc", lang="en") == 0.0
    assert exact_match_scores(["a", "b"], ["A", ["c", "B!"]]) == [1.0, 1.0]
    with pytest.raises(ValueError):
        exact_match_scores(["a"], [])
    with pytest.raises(ValueError):
        exact_match("a", [])


def test_strict_and_loose_on_the_families_checkers():
    check = FAMILIES["capital_of"].check
    assert strict_loose("Paris", "Paris", check) == (1.0, 1.0)
    assert strict_loose("**Paris**", "Paris", check) == (0.0, 1.0)
    assert strict_loose("Answer: Paris.", "Paris", check) == (0.0, 1.0)
    assert strict_loose("Sure, here it is:\nParis", "Paris", check) == (0.0, 1.0)
    assert strict_loose("Paris\nI hope this helps!", "Paris", check) == (0.0, 1.0)
    assert strict_loose("Lyon", "Paris", check) == (0.0, 0.0)
    assert strict_loose("paris", "Paris", check) == (0.0, 0.0)  # the checker is case-sensitive; loose keeps that
    up = FAMILIES["uppercase"].check
    assert strict_loose('"RED BOOK"', "RED BOOK", up) == (0.0, 1.0)


def test_loose_variants_include_the_response_itself_first():
    variants = loose_variants("*x*\ny")
    assert variants[0] == "*x*\ny" and "x\ny" in variants and "y" in variants and "*x*" in variants


def test_loose_is_never_below_strict_on_real_examples():
    examples = make_examples("test", 2, seed=0)
    for ex in examples:
        for response in (ex.record.output, f"**{ex.record.output}**", "nonsense", ex.record.output.lower()):
            strict, loose = strict_loose(response, ex.record.output, FAMILIES[ex.family].check)
            assert loose >= strict
        assert strict_loose(ex.record.output, ex.record.output, FAMILIES[ex.family].check) == (1.0, 1.0)
