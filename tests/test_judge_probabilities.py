"""Verdicts read from a judge's probabilities: log P(choice | prompt) equals the model's own token
probabilities, ratings are expectations over 1-10, pairwise verdicts come in both orders."""
import math

import numpy as np
import pytest
import torch

from instructlib.evaluation import judge as J
from instructlib.models import load_llm


@pytest.fixture(scope="module")
def tiny():
    return load_llm("tinygpt")


def test_choice_logprobs_equal_the_models_token_probabilities(tiny, one_thread):
    conv = [{"role": "user", "content": "Add 2 and 3."}]
    choices = ["5", "six", "[[A]]"]
    got = J.choice_logprobs(tiny, [conv], choices)
    prompt = tiny.chat_prompt(conv)
    tok = tiny.tokenizer
    start = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    for j, c in enumerate(choices):
        head = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = [start] + tok(prompt + c, add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            out = tiny.model(torch.tensor([ids]))
        logits = (out.logits if hasattr(out, "logits") else out)[0].float().log_softmax(-1)
        expected = sum(float(logits[t - 1, ids[t]]) for t in range(1 + len(head), len(ids)))
        assert got[0, j] == pytest.approx(expected, abs=1e-4)
    assert (got < 0).all()


def test_a_prompt_too_long_for_the_judge_is_refused(tiny):
    long = [{"role": "user", "content": "word " * 200}]
    with pytest.raises(ValueError, match="does not extend the prompt"):
        J.choice_logprobs(tiny, [long], ["A"])


class FixedJudge:
    """A stand-in whose log-probabilities are given per choice (in nats), whatever the prompt."""

    def __init__(self, table):
        self.table = table

    def __call__(self, judge, conversations, choices, batch_size=8):
        return np.array([[self.table(c, conv) for c in choices] for conv in conversations])


def test_expected_rating_is_the_probability_weighted_mean(monkeypatch):
    # P(rating k) proportional to k: the expectation is sum k^2 / sum k = 385 / 55 = 7
    monkeypatch.setattr(J, "choice_logprobs", FixedJudge(lambda c, conv: math.log(int(c[10:-2]))))
    assert J.expected_ratings(None, ["q"], ["a"]) == [pytest.approx(7.0)]


def test_pairwise_reads_both_orders_and_flags_a_first_slot_judge(monkeypatch):
    # a judge that always prefers the slot "A": every pair flips when the answers swap
    monkeypatch.setattr(J, "choice_logprobs", FixedJudge(lambda c, conv: -1.0 if c == "[[A]]" else -2.0))
    verdicts = J.pairwise_by_probability(None, ["q1", "q2"], ["right", "x"], ["wrong", "y"])
    assert [(v.forward, v.backward) for v in verdicts] == [("A", "A"), ("A", "A")]
    assert J.position_flip_rate(verdicts) == 1.0 and J.first_position_rate(verdicts) == 1.0

    # a judge that prefers the right answer wherever it is shown: consistent, agrees with the truth
    def reads(c, conv):
        text = conv[-1]["content"]
        shown_first = "[Answer A]\nright" in text
        return -1.0 if (c == "[[A]]") == shown_first else -2.0

    monkeypatch.setattr(J, "choice_logprobs", FixedJudge(reads))
    verdicts = J.pairwise_by_probability(None, ["q"], ["right"], ["wrong"])
    assert (verdicts[0].forward, verdicts[0].backward, verdicts[0].winner) == ("A", "B", "1")


def test_debiasing_cancels_a_constant_slot_preference():
    # the judge adds +2 nats for slot A whatever is in it, and +0.5 for the right answer wherever it is
    odds = np.array([[2.5, 1.5], [1.5, 2.5]])   # pair 1: answer 1 right; pair 2: answer 2 right
    assert J.debiased_winners(odds) == ["1", "2"]
    verdicts = J.verdicts_from_log_odds(odds)
    assert [(v.forward, v.backward) for v in verdicts] == [("A", "A"), ("A", "A")]
    assert all(v.winner == "tie" for v in verdicts), "read order by order, the same pairs are all ties"
