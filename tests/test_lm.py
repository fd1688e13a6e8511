"""Chapter 01 library: n-gram models, cross-entropy / perplexity, and the sampling filters."""
import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (LogitsProcessorList, TemperatureLogitsWarper,
                                                    TopKLogitsWarper, TopPLogitsWarper)

from instructlib.lm import (BOS, EOS, UNK, NGramLM, bits_per_token, cross_entropy,
                            cross_entropy_from_probs, filter_logits, greedy_next, ngrams,
                            perplexity_from_logprobs, perplexity_from_loss, sample_next,
                            split_sentences, top_k_filter, top_p_filter)

TOY = [s.split() for s in ["a b", "a c", "b c"]]
CORPUS = [s.split() for s in [
    "the cat sat on the mat", "the dog sat on the log", "a cat saw a dog",
    "the dog saw the cat", "a bird sat on a branch", "the cat ate the fish",
]]
INF = float("-inf")


# ----------------------------------------------------------------------------- n-gram counting
def test_ngrams_pad_and_end_with_eos():
    assert ngrams(["x", "y"], 3) == [(BOS, BOS, "x"), (BOS, "x", "y"), ("x", "y", EOS)]
    assert ngrams(["x", "y"], 1) == [("x",), ("y",), (EOS,)]
    assert ngrams([], 2) == [(BOS, EOS)]


def test_raw_counts_and_vocab():
    lm = NGramLM(2, "add_k").fit(TOY)
    assert lm.vocab == ["a", "b", "c", UNK, EOS]
    assert lm.raw_counts[2][(BOS,)] == {"a": 2, "b": 1}
    assert lm.raw_counts[1][()] == {"a": 2, "b": 2, "c": 2, EOS: 3}


def test_min_count_maps_rare_words_to_unk():
    lm = NGramLM(2, "add_k", min_count=2).fit(CORPUS)
    assert "mat" not in lm.vocab and "cat" in lm.vocab
    assert lm.map_words(["cat", "mat", "zebra"]) == ["cat", UNK, UNK]
    assert lm.raw_counts[1][()][UNK] == sum(1 for s in CORPUS for w in s
                                            if sum(x.count(w) for x in CORPUS) < 2)
    assert lm.prob("zebra", ["the"]) == lm.prob(UNK, ["the"])


@pytest.mark.parametrize("bad, error", [
    (dict(n=0), ValueError), (dict(n=2, smoothing="laplace"), ValueError),
    (dict(n=2, smoothing="add_k", k=0), ValueError), (dict(n=2, discount=1.5), ValueError),
    (dict(n=2, min_count=0), ValueError)])
def test_bad_arguments(bad, error):
    with pytest.raises(error):
        NGramLM(**bad)


def test_bad_training_data():
    with pytest.raises(TypeError, match="sentence 1"):
        NGramLM(2).fit([["ok"], "not tokenised"])
    with pytest.raises(ValueError, match="reserved"):
        NGramLM(2).fit([["a", EOS]])
    with pytest.raises(RuntimeError, match="not fitted"):
        NGramLM(2).prob("a")


def test_split_sentences():
    text = "The cat sat. Did it?\nYes, it did!"
    assert split_sentences(text) == [["the", "cat", "sat", "."], ["did", "it", "?"],
                                     ["yes", ",", "it", "did", "!"]]


# ------------------------------------------------------------------------ MLE and add-k
def test_mle_is_relative_frequency_and_zero_for_unseen():
    lm = NGramLM(2, "mle").fit(CORPUS)
    assert lm.prob("cat", ["the"]) == 3 / 8  # "the" is followed 8 times, 3 of them by "cat"
    assert lm.prob("bird", ["the"]) == 0.0
    assert lm.perplexity([["the", "bird", "sat"]]) == math.inf
    with pytest.raises(ValueError, match="unseen context"):
        lm.distribution(["zebra"])


def test_add_k_hand_values():
    lm = NGramLM(2, "add_k", k=0.5).fit(TOY)
    v = 5  # a b c <unk> </s>
    assert lm.prob("c", ["a"]) == pytest.approx((1 + 0.5) / (2 + 0.5 * v))
    assert lm.prob("a", []) == pytest.approx((2 + 0.5) / (3 + 0.5 * v))
    assert lm.prob("a", ["zebra"]) == pytest.approx(1 / v)  # unseen context: uniform


def test_add_k_with_huge_k_approaches_uniform_perplexity():
    lm = NGramLM(3, "add_k", k=1e9).fit(CORPUS)
    assert lm.perplexity(CORPUS) == pytest.approx(len(lm.vocab), rel=1e-4)


# -------------------------------------------------------------------- Kneser-Ney by hand
# Toy corpus "a b", "a c", "b c"; vocab a b c <unk> </s> (|V| = 5); D = 0.75.
# Continuation counts N1+(. w): a {<s>} 1, b {<s>, a} 2, c {a, b} 2, </s> {b, c} 2, <unk> 0;
# they sum to 7 over 4 word types, so P1(w) = (max(N - D, 0) + D * 4 / 5) / 7.
P1 = {"a": (1 - .75 + .6) / 7, "b": (2 - .75 + .6) / 7, "c": (2 - .75 + .6) / 7, UNK: .6 / 7}


def test_kneser_ney_unigram_uses_continuation_counts():
    lm = NGramLM(2, discount=0.75).fit(TOY)
    assert lm.kn_counts[1][()] == {"a": 1, "b": 2, "c": 2, EOS: 2}
    for word, p in P1.items():
        assert lm.prob(word, ["zebra"]) == pytest.approx(p)  # unseen context backs off fully


def test_kneser_ney_bigram_hand_values():
    lm = NGramLM(2, discount=0.75).fit(TOY)
    # "a" is followed by b and c once each: c(a) = 2, N1+(a .) = 2
    assert lm.prob("c", ["a"]) == pytest.approx((1 - .75 + .75 * 2 * P1["c"]) / 2)
    # <s> is followed by a twice and b once: c(<s>) = 3, N1+(<s> .) = 2
    assert lm.prob("a", []) == pytest.approx((2 - .75 + .75 * 2 * P1["a"]) / 3)
    assert lm.prob(UNK, ["a"]) == pytest.approx(.75 * 2 * P1[UNK] / 2)


def test_kneser_ney_trigram_hand_values_and_bos_rule():
    lm = NGramLM(3, discount=0.75).fit(TOY)
    p2_c_a = (1 - .75 + .75 * 2 * P1["c"]) / 2  # continuation counts: (a c) after {<s>} once
    assert lm.prob("c", ["a"]) == pytest.approx((1 - .75 + .75 * 2 * p2_c_a) / 2)
    # n-grams starting with <s> keep raw counts at the lower order: (<s> a) 2, (<s> b) 1
    assert lm.kn_counts[2][(BOS,)] == {"a": 2, "b": 1}
    p2_b_bos = (1 - .75 + .75 * 2 * P1["b"]) / 3
    assert lm.prob("b", []) == pytest.approx((1 - .75 + .75 * 2 * p2_b_bos) / 3)


def test_with_smoothing_equals_a_fresh_fit():
    base = NGramLM(3, "kneser_ney").fit(CORPUS)
    for smoothing, kw in [("add_k", dict(k=0.3)), ("kneser_ney", dict(discount=0.5)), ("mle", {})]:
        fresh = NGramLM(3, smoothing, **kw).fit(CORPUS)
        switched = base.with_smoothing(smoothing, **kw)
        assert switched.smoothing == smoothing
        for context in (["the"], ["the", "cat"], ["a", "dog"]):
            for word in ("cat", "sat", EOS, "zebra"):
                assert switched.prob(word, context) == fresh.prob(word, context)
    assert base.prob("cat", ["the"]) == NGramLM(3).fit(CORPUS).prob("cat", ["the"])  # base unchanged


# ------------------------------------------------------------------ distributions sum to 1
CONTEXTS = [[], ["the"], ["the", "cat"], ["on", "the"], ["zebra"], ["the", "zebra"],
            ["zebra", "cat"], ["sat", "on", "a", "big", "red"], [UNK], ["a", "dog", "saw"]]


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("smoothing", ["add_k", "kneser_ney"])
def test_distribution_sums_to_one(n, smoothing):
    lm = NGramLM(n, smoothing, k=0.1, min_count=1).fit(CORPUS)
    for context in CONTEXTS:
        dist = lm.distribution(context)
        assert list(dist) == lm.vocab and BOS not in dist
        assert math.fsum(dist.values()) == pytest.approx(1.0, abs=1e-12), context
        assert all(p > 0 for p in dist.values())


words = st.sampled_from("abcde")


@settings(max_examples=60, deadline=None)
@given(corpus=st.lists(st.lists(words, max_size=6), min_size=1, max_size=6),
       context=st.lists(st.sampled_from("abcdez"), max_size=4), n=st.integers(1, 4),
       smoothing=st.sampled_from(["add_k", "kneser_ney"]), k=st.floats(0.01, 2),
       discount=st.floats(0.05, 1.0), min_count=st.integers(1, 2))
def test_distribution_sums_to_one_on_random_corpora(corpus, context, n, smoothing, k, discount, min_count):
    lm = NGramLM(n, smoothing, k=k, discount=discount, min_count=min_count).fit(corpus)
    assert math.fsum(lm.distribution(context).values()) == pytest.approx(1.0, abs=1e-12)


def test_mle_distribution_sums_to_one_on_seen_contexts():
    lm = NGramLM(3, "mle").fit(CORPUS)
    for context in (["the"], ["sat", "on"], []):
        assert math.fsum(lm.distribution(context).values()) == pytest.approx(1.0)


# ---------------------------------------------------------------- chain rule and perplexity
def test_logprob_is_the_chain_rule():
    lm = NGramLM(3).fit(CORPUS)
    s = ["the", "cat", "saw", "a", "bird"]
    manual = (math.log(lm.prob("the", [])) + math.log(lm.prob("cat", ["the"]))
              + math.log(lm.prob("saw", ["the", "cat"])) + math.log(lm.prob("a", ["cat", "saw"]))
              + math.log(lm.prob("bird", ["saw", "a"])) + math.log(lm.prob(EOS, ["a", "bird"])))
    assert lm.logprob(s) == pytest.approx(manual)
    held_out = [s, ["a", "dog", "sat"]]
    tokens = sum(len(x) + 1 for x in held_out)
    assert lm.perplexity(held_out) == pytest.approx(
        math.exp(-sum(lm.logprob(x) for x in held_out) / tokens))


def test_sentence_probabilities_sum_to_one_over_all_short_sentences():
    """P(sentence) sums to 1 over all sentences; truncated at length 6 over a 2-word vocab it is close."""
    import itertools
    lm = NGramLM(2, "add_k", k=0.5).fit([["x", "y"], ["y"]])
    words = ["x", "y", UNK]
    total = sum(math.exp(lm.logprob(list(s))) for L in range(0, 9) for s in itertools.product(words, repeat=L))
    # P(length > 8) = (1 - P(</s>))^9 with P(</s>|w) >= 1/4 in this model, so the rest is < 0.08
    assert 0.92 < total <= 1.0 + 1e-9


def test_generate_is_seeded_and_greedy_is_argmax():
    lm = NGramLM(3).fit(CORPUS)
    a = lm.generate(generator=torch.Generator().manual_seed(1))
    b = lm.generate(generator=torch.Generator().manual_seed(1))
    assert a == b and set(a) <= set(lm.vocab)
    greedy = lm.generate(temperature=0, max_words=8)
    context: list[str] = []
    for word in greedy:
        dist = lm.distribution(context)
        assert word == max(dist, key=dist.get)
        context.append(word)
    only_top = lm.generate(top_k=1, generator=torch.Generator().manual_seed(5), max_words=8)
    assert only_top == greedy


# ------------------------------------------------------------------- cross-entropy metrics
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cross_entropy_matches_torch(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3, 7, 11, generator=g, dtype=dtype) * 3
    targets = torch.randint(0, 11, (3, 7), generator=g)
    targets[0, :3] = -100
    ours = cross_entropy(logits, targets)
    ref = F.cross_entropy(logits.reshape(-1, 11), targets.reshape(-1), ignore_index=-100)
    torch.testing.assert_close(ours, ref)
    probs = logits.softmax(-1)
    torch.testing.assert_close(cross_entropy_from_probs(probs[1], targets[1]),
                               F.cross_entropy(logits[1], targets[1]))


def test_cross_entropy_shape_error():
    with pytest.raises(ValueError, match="targets"):
        cross_entropy(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_uniform_model_perplexity_is_vocab_size_and_units():
    v = 37
    loss = cross_entropy(torch.zeros(10, v), torch.arange(10))
    assert perplexity_from_loss(loss) == pytest.approx(v)
    assert bits_per_token(loss) == pytest.approx(math.log2(v))
    assert bits_per_token(math.log(2)) == pytest.approx(1.0)
    assert perplexity_from_logprobs([math.log(0.5), math.log(0.125)]) == pytest.approx(4.0)
    assert perplexity_from_logprobs([0.0, -math.inf]) == math.inf
    assert perplexity_from_loss(1e6) == math.inf


# ---------------------------------------------------------------------- sampling filters
def random_logits(seed, shape=(8, 50)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.mark.parametrize("k", [1, 2, 5, 17, 49, 50, 80])
def test_top_k_matches_transformers(k):
    logits = random_logits(k)
    assert torch.equal(top_k_filter(logits, k), TopKLogitsWarper(top_k=k)(None, logits))


def test_top_k_keeps_ties_like_transformers():
    logits = torch.tensor([[1.0, 2.0, 2.0, 3.0, 0.5]])
    ours = top_k_filter(logits, 2)
    assert torch.equal(ours, TopKLogitsWarper(top_k=2)(None, logits))
    assert torch.equal(ours, torch.tensor([[INF, 2.0, 2.0, 3.0, INF]]))


@pytest.mark.parametrize("p", [0.05, 0.1, 0.3, 0.5, 0.77, 0.9, 0.95, 0.999, 1.0])
def test_top_p_matches_transformers(p):
    for seed in range(5):
        logits = random_logits(100 + seed)
        assert torch.equal(top_p_filter(logits, p), TopPLogitsWarper(top_p=p)(None, logits)), (p, seed)


def test_top_p_hand_example():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    kept = lambda p: int(torch.isfinite(top_p_filter(logits, p)).sum())  # noqa: E731
    assert [kept(p) for p in (0.01, 0.45, 0.55, 0.79, 0.81, 0.96, 1.0)] == [1, 1, 2, 2, 3, 4, 4]


def test_top_p_ties_are_kept_together():
    logits = torch.zeros(1, 4)  # four tokens of probability 0.25
    ours = top_p_filter(logits, 0.5)
    hf = TopPLogitsWarper(top_p=0.5)(None, logits)
    assert torch.isfinite(ours).all()  # 2 tokens reach 0.5, but all 4 are tied: keep all
    assert int(torch.isfinite(hf).sum()) == 2  # transformers breaks the tie by position
    assert (torch.isfinite(hf) <= torch.isfinite(ours)).all()


def test_filters_reject_bad_arguments():
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError):
            top_k_filter(torch.zeros(3), bad)
    for bad in (0, -0.1, 1.5):
        with pytest.raises(ValueError):
            top_p_filter(torch.zeros(3), bad)
    with pytest.raises(ValueError):
        filter_logits(torch.zeros(3), temperature=-1)


@pytest.mark.parametrize("t, k, p", [(0.7, 10, 0.9), (1.3, None, 0.5), (0.5, 3, None), (2.0, 20, 0.3)])
def test_filter_pipeline_matches_transformers(t, k, p):
    logits = random_logits(7)
    procs = [TemperatureLogitsWarper(t)] + ([TopKLogitsWarper(k)] if k else []) \
        + ([TopPLogitsWarper(p)] if p else [])
    torch.testing.assert_close(filter_logits(logits, t, k, p), LogitsProcessorList(procs)(None, logits))


def test_sample_next_shapes_greedy_and_support():
    logits = random_logits(3, shape=(2, 5, 30))
    assert torch.equal(sample_next(logits, temperature=0), greedy_next(logits))
    assert torch.equal(sample_next(logits, top_k=1), logits.argmax(-1))
    ids = sample_next(logits, top_k=4, generator=torch.Generator().manual_seed(0))
    assert ids.shape == (2, 5) and ids.dtype == torch.long
    allowed = torch.isfinite(top_k_filter(logits, 4))
    assert allowed.gather(-1, ids.unsqueeze(-1)).all()
    single = sample_next(logits[0, 0], generator=torch.Generator().manual_seed(0))
    assert single.shape == ()


def test_sample_next_follows_the_distribution():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1])
    logits = probs.log().expand(20000, 4)
    ids = sample_next(logits, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(ids, minlength=4) / len(ids)
    assert torch.allclose(freq, probs, atol=0.015)
    hot = sample_next(logits, temperature=0.25, generator=torch.Generator().manual_seed(0))
    sharp = torch.softmax(probs.log() / 0.25, -1)
    assert torch.allclose(torch.bincount(hot, minlength=4) / len(hot), sharp, atol=0.015)
