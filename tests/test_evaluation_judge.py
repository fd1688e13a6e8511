"""LLM-as-judge: verdict parsing (malformed replies too), both-order swap logic, summaries."""
import re

import pytest

from instructlib.evaluation.judge import (PairVerdict, Rating, compare_pairwise, first_position_rate, grade_single,
                                          pairwise_messages, parse_pairwise, parse_rating, position_flip_rate,
                                          single_messages, summarize_pairwise, summarize_ratings, swap_table)
from instructlib.models.llm import ScriptedLLM


@pytest.mark.parametrize("text, expected", [
    ("Rating: [[7]]", 7.0), ("[[10]]", 10.0), ("[[ 3 ]] because it is wrong", 3.0), ("Rating: 7.5", 7.5),
    ("I would give it 8/10.", 8.0), ("8 out of 10", 8.0), ("Score: 2", 2.0), ("9", 9.0), ("[4].", 4.0),
    ("The rating is 6", 6.0), ("Rating: [[7]]\nRating: [[7]]", 7.0),
])
def test_parse_rating_accepts_the_asked_format_and_common_variants(text, expected):
    assert parse_rating(text) == expected


@pytest.mark.parametrize("text", [
    "", "The answer is correct.", "[[11]]", "[[0]]", "Rating: [[3]] ... no, Rating: [[8]]", "Rating:",
    "[[seven]]", "12/10", "I rate answers from 1 to 10.", "Answer A has 3 words and B has 4",
])
def test_parse_rating_returns_none_for_malformed_or_ambiguous_verdicts(text):
    assert parse_rating(text) is None


@pytest.mark.parametrize("text, expected", [
    ("[[A]]", "A"), ("[[B]]", "B"), ("[[C]]", "tie"), ("[[tie]]", "tie"), ("[[a]]", "A"), ("B", "B"), ("(A).", "A"),
    ("Answer B is better.", "B"), ("Verdict: A", "A"), ("It is a tie.", "tie"), ("My choice: [B]", "B"),
    ("[A]\n\nThe answer A", "A"), ("[C]", "tie"), ("The answer A is indeed better.", "A"),
])
def test_parse_pairwise(text, expected):
    assert parse_pairwise(text) == expected


@pytest.mark.parametrize("text", ["", "[[A]] or maybe [[B]]", "Answer: a dog", "Both are fine, I think",
                                  "[[D]]", "AB", "[A] ... [B]", "[a]"])
def test_parse_pairwise_malformed(text):
    assert parse_pairwise(text) is None


def test_swap_logic():
    consistent_1 = PairVerdict("A", "B")   # answer 1 wins in both orders
    consistent_2 = PairVerdict("B", "A")
    always_first = PairVerdict("A", "A")   # the first slot wins whatever is in it
    always_second = PairVerdict("B", "B")
    tie = PairVerdict("tie", "tie")
    half = PairVerdict("A", "tie")
    broken = PairVerdict(None, "A")
    assert [v.winner for v in (consistent_1, consistent_2, always_first, always_second, tie, half, broken)] == \
        ["1", "2", "tie", "tie", "tie", "tie", None]
    assert [v.flipped for v in (consistent_1, consistent_2, always_first, tie, half, broken)] == \
        [False, False, True, False, True, None]
    verdicts = [consistent_1, always_first, always_first, broken]
    assert position_flip_rate(verdicts) == pytest.approx(2 / 3)
    assert first_position_rate(verdicts) == pytest.approx(6 / 7)  # A, B, A, A, A, A + broken's A
    table = swap_table(verdicts)
    assert table["A"]["A"] == 2 and table["A"]["B"] == 1 and table["None"]["A"] == 1
    assert sum(sum(row.values()) for row in table.values()) == 4


def _answers(text):
    """The answers shown to the judge as A and B, read back from the prompt."""
    a = re.search(r"\[Answer A\]\n(.*)\n\n\[Answer B\]", text).group(1)
    b = re.search(r"\[Answer B\]\n(.*)\n\n", text).group(1)
    return a, b


def test_compare_pairwise_with_a_position_biased_judge():
    judge = ScriptedLLM(lambda prompt: "[[A]]")
    verdicts = compare_pairwise(judge, ["q1", "q2", "q3"], ["x", "y", "z"], ["X", "Y", "Z"], progress=False)
    assert all(v.forward == "A" and v.backward == "A" and v.winner == "tie" for v in verdicts)
    summary = summarize_pairwise(verdicts, truth=["1", "2", None])
    assert summary.flip_rate == 1.0 and summary.first_position_rate == 1.0 and summary.tie_rate == 1.0
    assert summary.agreement.value == 0.0 and summary.unparseable == 0


def test_compare_pairwise_with_a_judge_that_knows_the_answer():
    right = {"q1": "4", "q2": "9"}

    def judge_fn(prompt):
        a, b = _answers(prompt)
        q = re.search(r"\[Instruction\]\n(.*)\n", prompt).group(1)
        return "[[A]]" if a == right[q] else "[[B]]" if b == right[q] else "[[C]]"

    verdicts = compare_pairwise(ScriptedLLM(judge_fn), ["q1", "q2"], ["4", "8"], ["5", "9"], progress=False)
    assert [v.winner for v in verdicts] == ["1", "2"]
    assert [(v.forward, v.backward) for v in verdicts] == [("A", "B"), ("B", "A")]
    summary = summarize_pairwise(verdicts, truth=["1", "2"])
    assert summary.flip_rate == 0.0 and summary.agreement.value == 1.0 and summary.mean.value == 0.5


def test_grade_single_counts_and_excludes_unparseable_verdicts():
    replies = {"a1": "Rating: [[9]]", "a2": "I think this is good", "a3": "[[2]]", "a4": "[[3]] or [[9]]"}
    judge = ScriptedLLM(lambda prompt: next(v for k, v in replies.items() if f"[Answer]\n{k}\n" in prompt))
    ratings = grade_single(judge, ["q"] * 4, ["a1", "a2", "a3", "a4"], progress=False)
    assert [r.score for r in ratings] == [9.0, None, 2.0, None]
    summary = summarize_ratings(ratings, truth=[True, True, True, False])
    assert summary.n == 4 and summary.unparseable == 2
    assert summary.mean.value == 5.5 and summary.mean.n == 2       # mean of 9 and 2 only
    assert summary.agreement.value == 0.5                          # a1 agrees (9 >= 6, correct); a3 does not
    row = summary.as_dict()
    assert row["unparseable"] == 2 and row["mean"] == 5.5 and "flip_rate" not in row


def test_prompts_show_reference_only_when_given():
    assert "[Reference answer]" not in single_messages("q", "a")[-1]["content"]
    assert "[Reference answer]\nr" in single_messages("q", "a", "r")[-1]["content"]
    text = pairwise_messages("q", "first", "second")[-1]["content"]
    assert text.index("first") < text.index("second")
    with pytest.raises(ValueError):
        grade_single(ScriptedLLM(lambda prompt: ""), ["q"], ["a", "b"], progress=False)
    assert summarize_ratings([Rating(None, "x")]).mean is None


def test_judge_replies_are_cached(tmp_path):
    from instructlib.evaluation.cache import Cache

    judge = ScriptedLLM(lambda prompt: "[[B]]", name="cached-judge")
    cache = Cache(tmp_path)
    first = compare_pairwise(judge, ["q1", "q2"], ["a", "b"], ["c", "d"], progress=False, cache=cache)
    again = compare_pairwise(judge, ["q1", "q2"], ["a", "b"], ["c", "d"], progress=False, cache=cache)
    assert first == again and len(judge.calls) == 4, "the rerun must come from the cache"
    grade_single(judge, ["q"], ["a"], progress=False, cache=cache)
    grade_single(judge, ["q"], ["a"], progress=False, cache=Cache(tmp_path, enabled=False))
    assert len(judge.calls) == 6
