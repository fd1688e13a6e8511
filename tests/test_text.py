"""instructlib.text: tokenizer and ROUGE-L equal rouge-score on English; CJK handled by character."""
import random

import pytest

from instructlib import text

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
rs_tokenize = pytest.importorskip("rouge_score.tokenize")

VOCAB = ("write give list the a an of to for and story poem about summer winter cat dog code "
         "explain why how what is are 3 42 2nd python function sort numbers email friend").split()
DECOR = ["", ",", ".", "!", "?", " -", "'s", "\n", "  ", "(x)", "É", "ü", "_", "Ünïcode", "#1"]


def _sentence(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def _render(rng: random.Random, tokens: list[str]) -> str:
    """Join tokens with random capitalisation, punctuation and non-ASCII noise (which both tokenizers drop)."""
    out = []
    for tok in tokens:
        if rng.random() < 0.3:
            tok = tok.capitalize() if rng.random() < 0.5 else tok.upper()
        out.append(tok + (rng.choice(DECOR) if rng.random() < 0.3 else ""))
    return " ".join(out)


def _mutate(rng: random.Random, tokens: list[str], k: int) -> list[str]:
    tokens = list(tokens)
    for _ in range(k):
        op = rng.randrange(3)
        if op == 0 and tokens:
            tokens.pop(rng.randrange(len(tokens)))
        elif op == 1:
            tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(VOCAB))
        elif tokens:
            tokens[rng.randrange(len(tokens))] = rng.choice(VOCAB)
    return tokens


def _english_pairs(n: int, seed: int = 0) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    pairs = []
    for i in range(n):
        a = _sentence(rng, rng.randint(0, 25))
        if i % 4 == 0:
            b = _sentence(rng, rng.randint(0, 25))          # unrelated
        else:
            b = _mutate(rng, a, rng.randint(0, 6))           # near-duplicates, many close to 0.7
        pairs.append((_render(rng, a), _render(rng, b)))
    return pairs


def _boundary_pairs() -> list[tuple[str, str]]:
    """Pairs whose true F is exactly 0.7 (2*lcs/(m+n) = 7/10), where float rounding decides `> 0.7`."""
    pairs = []
    for m in range(1, 41):
        for n in range(1, 41):
            if (m + n) * 7 % 20:
                continue
            lcs = (m + n) * 7 // 20
            if lcs > min(m, n):
                continue
            common = [f"w{i}" for i in range(lcs)]
            a = common + [f"a{i}" for i in range(m - lcs)]
            b = [f"b{i}" for i in range(n - lcs)] + common
            pairs.append((" ".join(a), " ".join(b)))
    return pairs


def test_tokenize_equals_rouge_score_on_english():
    rng = random.Random(1)
    noise = "abcXYZ019 .,;:'\"-_()[]{}éÉßİıøÅ\t\n\u00a0\u2019"
    for _ in range(2000):
        s = "".join(rng.choice(noise) for _ in range(rng.randint(0, 40)))
        assert text.tokenize(s) == rs_tokenize.tokenize(s, None), repr(s)
    for s in ("今天天气很好", "用Python写一个 Sort 函数", "Write a poem"):
        assert text.tokenize(s, cjk=False) == rs_tokenize.tokenize(s, None)


def test_rouge_l_equals_rouge_score_on_random_english_pairs():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    pairs = _english_pairs(1500) + _boundary_pairs()
    near = exact = 0
    for ref, cand in pairs:
        expected = scorer.score(ref, cand)["rougeL"].fmeasure
        got = text.rouge_l(ref, cand)
        assert got == expected, (ref, cand, got, expected)   # bit-identical, not approximately
        assert (got > 0.7) == (expected > 0.7)
        near += 0.6 <= expected <= 0.8
        exact += abs(expected - 0.7) < 1e-12
    assert len(pairs) >= 1000
    assert near >= 150, near      # the sample really exercises the dedup threshold
    assert exact >= 30, exact     # and the exact 0.7 boundary, on both sides of float rounding


def test_boundary_pairs_fall_on_both_sides_of_float_rounding():
    """2PR/(P+R) is not always exactly 0.7 in floats: the decision `> 0.7` must follow rouge-score's."""
    values = [text.rouge_l(a, b) for a, b in _boundary_pairs()]
    assert all(abs(v - 0.7) < 1e-12 for v in values)
    assert sum(v > 0.7 for v in values) >= 5       # e.g. 0.7000000000000001: the reference drops these
    assert sum(v == 0.7 for v in values) >= 5      # and keeps these
    # the algebraically equal 2*lcs/(m+n) is exactly 0.7 for all of them: it would decide differently
    for a, b in _boundary_pairs():
        ta, tb = text.tokenize(a), text.tokenize(b)
        assert 2 * text.lcs_length(ta, tb) / (len(ta) + len(tb)) == 0.7


def test_rouge_l_symmetric_like_rouge_score():
    for ref, cand in _english_pairs(300, seed=3):
        assert text.rouge_l(ref, cand) == text.rouge_l(cand, ref)


def test_chinese_identical_is_one_where_rouge_score_is_zero():
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    assert scorer.score("今天天气很好", "今天天气很好")["rougeL"].fmeasure == 0.0
    assert text.rouge_l("今天天气很好", "今天天气很好") == 1.0
    # 今天天气很好 vs 今天天气不好: LCS 5 of 6 characters -> F = 5/6
    assert text.rouge_l("今天天气很好", "今天天气不好") == pytest.approx(5 / 6)
    assert text.rouge_l("今天天气很好。", "今天，天气很好！") == 1.0     # punctuation is not a token
    assert text.rouge_l("写一首诗", "解释量子力学") == 0.0


def test_mixed_language():
    assert text.tokenize("用Python写一个 Sort 函数, v2!") == ["用", "python", "写", "一", "个", "sort", "函", "数", "v2"]
    assert text.rouge_l("用Python写排序函数", "用 python 写一个排序函数") == pytest.approx(2 * 7 / (7 + 9))
    assert text.rouge_l("Translate 你好 into English", "translate 你好 into english") == 1.0
    assert 0 < text.rouge_l("Write a poem about 春天", "Write a story about 夏天") < 1


def test_empty_and_tokenless_strings():
    assert text.rouge_l("", "") == 0.0
    assert text.rouge_l("", "hello") == 0.0
    assert text.rouge_l("hello", "") == 0.0
    assert text.rouge_l("!!! ...", "hello") == 0.0
    assert text.tokenize("") == []
    assert text.words("") == []
    assert text.cjk_share("") == 0.0


def test_cjk_detection_and_share():
    assert text.is_cjk("中") and text.is_cjk("の") and text.is_cjk("한") and text.is_cjk("\U00020000")
    assert not text.is_cjk("a") and not text.is_cjk("。") and not text.is_cjk("，") and not text.is_cjk("é")
    assert text.has_cjk("hello 世界") and not text.has_cjk("hello world")
    assert text.cjk_share("中文") == 1.0
    assert text.cjk_share("ab 中文") == 0.5
    assert text.cjk_share("hello") == 0.0


def test_words_counts_cjk_characters():
    assert text.words("Write a short poem.") == ["Write", "a", "short", "poem."]
    assert text.words("写一首关于秋天的诗") == list("写一首关于秋天的诗")
    assert text.words("Write 一首诗.") == ["Write", "一", "首", "诗", "."]
    assert len(text.words("Give three tips\nfor  staying healthy")) == 6
    # English word counts match str.split(), the reference filter's count
    for ref, _ in _english_pairs(200, seed=5):
        assert len(text.words(ref)) == len(ref.split())


def test_lcs_length_on_token_ids():
    assert text.lcs_length([1, 2, 3, 4], [2, 4, 5]) == 2
    assert text.rouge_l_tokens([1, 2, 3], [1, 2, 3]) == 1.0
    assert text.rouge_l_tokens([], [1]) == 0.0
