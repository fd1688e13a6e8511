"""generate.dedup: the greedy ROUGE-L filter makes exactly the reference's decisions."""
import random

import pytest

from instructlib.generate.dedup import DedupIndex, dedup, min_lcs_above
from instructlib.text import f_measure, tokenize

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)

WORDS = ("write a short poem story about the sea summer list three ways to save energy explain why "
         "sky is blue give an example of classify sentiment review translate sentence into french "
         "summarize article in one two").split()


def reference_greedy(texts, pool=(), threshold=0.7):
    """The Self-Instruct reference loop: rouge-score against seeds + kept, drop when max F > 0.7."""
    everything, kept = list(pool), []
    for i, text in enumerate(texts):
        scores = [SCORER.score(text, other)["rougeL"].fmeasure for other in everything]
        if scores and max(scores) > threshold:
            continue
        kept.append(i)
        everything.append(text)
    return kept


def near_duplicate_set(seed: int, n: int = 160) -> list[str]:
    rng = random.Random(seed)
    bases = [[rng.choice(WORDS) for _ in range(rng.randint(2, 16))] for _ in range(n // 4)]
    texts = []
    for _ in range(n):
        toks = list(rng.choice(bases))
        for _ in range(rng.randint(0, 4)):
            op = rng.randrange(3)
            if op == 0 and len(toks) > 1:
                toks.pop(rng.randrange(len(toks)))
            elif op == 1:
                toks.insert(rng.randrange(len(toks) + 1), rng.choice(WORDS))
            else:
                toks[rng.randrange(len(toks))] = rng.choice(WORDS)
        text = " ".join(toks)
        texts.append(text.capitalize() + rng.choice(["", ".", "?", "!"]))
    return texts


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_equal_to_rouge_score_greedy_reference(seed):
    texts = near_duplicate_set(seed)
    expected = reference_greedy(texts)
    assert dedup(texts) == expected
    assert 0.2 * len(texts) < len(expected) < 0.9 * len(texts)   # the sets really contain near-duplicates


def test_equal_with_a_pool_and_other_thresholds():
    pool, texts = near_duplicate_set(10, 60), near_duplicate_set(11, 120)
    for threshold in (0.5, 0.7, 0.85):
        assert dedup(texts, threshold, pool=pool) == reference_greedy(texts, pool, threshold)


def test_exact_boundary_follows_rouge_score_floats():
    # LCS 7 of 10 + 10 tokens: 2PR/(P+R) is exactly 0.7 -> kept; LCS 7 of 9 + 11 tokens, also 0.7 in exact
    # arithmetic, gives 0.7000000000000001 in rouge-score's floats -> the reference drops it
    a = " ".join(f"w{i}" for i in range(10))
    b = " ".join([f"w{i}" for i in range(7)] + ["x1", "x2", "x3"])
    assert SCORER.score(a, b)["rougeL"].fmeasure == 0.7
    assert dedup([a, b]) == [0, 1] == reference_greedy([a, b])
    c = " ".join(f"w{i}" for i in range(9))
    d = " ".join([f"w{i}" for i in range(7)] + [f"y{i}" for i in range(4)])
    assert SCORER.score(c, d)["rougeL"].fmeasure > 0.7
    assert dedup([c, d]) == [0] == reference_greedy([c, d])


def test_min_lcs_above_matches_brute_force():
    for m in range(1, 40):
        for n in range(1, 40):
            for t in (0.0, 0.3, 0.7, 0.95):
                brute = next((lcs for lcs in range(1, min(m, n) + 1) if f_measure(lcs, m, n) > t), None)
                assert min_lcs_above(t, m, n) == brute


def test_chinese_duplicates_caught_only_by_the_cjk_tokenizer():
    texts = ["写一首关于秋天的诗", "写一首关于秋天的短诗", "解释为什么天空是蓝色的", "解释一下为什么天空是蓝色的"]
    assert dedup(texts) == [0, 2]
    faithful = dedup(texts, tokenizer=lambda s: tokenize(s, cjk=False))
    assert faithful == [0, 1, 2, 3]                       # rouge-score sees no tokens: nothing is a duplicate
    assert reference_greedy(texts) == [0, 1, 2, 3]        # ... which is what the reference does


def test_pool_is_compared_but_never_returned_or_deduplicated():
    pool = ["Write a poem about the sea", "Write a poem about the sea."]   # duplicates inside the pool are fine
    texts = ["write a poem about the sea!", "Explain why the sky is blue", "Explain why the sky is blue"]
    assert dedup(texts, pool=pool) == [1]


def test_texts_without_tokens_are_kept_like_the_reference():
    texts = ["...", "!!!", "Write a poem", "¿?"]
    assert dedup(texts) == reference_greedy(texts) == [0, 1, 2, 3]


def test_index_add_if_new():
    index = DedupIndex()
    assert index.add_if_new("List three ways to save energy at home")
    assert not index.add_if_new("List three ways to save energy at home.")
    assert index.add_if_new("Translate the sentence into French")
    assert index.size == 2
