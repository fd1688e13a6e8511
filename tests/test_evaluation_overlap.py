"""ROUGE-L, BLEU and chrF against their reference implementations (rouge-score, sacrebleu)."""
import pytest
import sacrebleu
from rouge_score import rouge_scorer

from instructlib.evaluation.overlap import (bleu_tokenizer, corpus_bleu, corpus_chrf, rouge_l, rouge_l_scores,
                                            sentence_bleu, sentence_chrf)

HYPS = ["the cat sat on the mat", "a quick brown fox jumps", "reverse the words please", "paris"]
REFS = ["the cat is on the mat", "the quick brown fox jumped over", "please reverse these words", "Paris"]
ZH_HYPS = ["今天天气不好", "我喜欢吃苹果", "他去北京了"]
ZH_REFS = ["今天天气很好", "我爱吃苹果", "他去了北京"]


def test_rouge_l_equals_rouge_score_on_english_and_takes_the_best_reference():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    for h, r in zip(HYPS, REFS):
        assert rouge_l(h, r) == scorer.score(r, h)["rougeL"].fmeasure
    best = max(scorer.score(r, HYPS[0])["rougeL"].fmeasure for r in REFS)
    assert rouge_l(HYPS[0], REFS) == best
    assert rouge_l_scores(HYPS, REFS) == [scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(HYPS, REFS)]


def test_rouge_l_scores_chinese_where_rouge_score_cannot():
    scorer = rouge_scorer.RougeScorer(["rougeL"])
    assert scorer.score("今天天气很好", "今天天气很好")["rougeL"].fmeasure == 0.0  # no [a-z0-9] tokens
    assert rouge_l("今天天气很好", "今天天气很好") == 1.0
    assert rouge_l("今天天气不好", "今天天气很好") == pytest.approx(5 / 6)


def test_corpus_bleu_equals_sacrebleu_on_english_and_chinese():
    assert corpus_bleu(HYPS, REFS) == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert corpus_bleu(ZH_HYPS, ZH_REFS) == sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS], tokenize="zh").score
    assert corpus_bleu(ZH_HYPS, ZH_REFS, lang="en") == sacrebleu.corpus_bleu(ZH_HYPS, [ZH_REFS]).score


def test_default_13a_tokenizer_scores_perfect_chinese_zero():
    assert sacrebleu.corpus_bleu(ZH_REFS, [ZH_REFS]).score == 0.0  # the misconception notebook 09 demonstrates
    assert corpus_bleu(ZH_REFS, ZH_REFS, lang="en") == 0.0
    assert corpus_bleu(ZH_REFS, ZH_REFS) == pytest.approx(100.0)
    assert bleu_tokenizer(ZH_REFS) == "zh" and bleu_tokenizer(REFS) == "13a"
    assert bleu_tokenizer(REFS + ["混合 text"]) == "zh"
    with pytest.raises(ValueError):
        bleu_tokenizer(REFS, "de")


def test_several_references_per_item_match_sacrebleu_streams():
    refs = [[r, r.upper()] for r in REFS]
    expected = sacrebleu.corpus_bleu(HYPS, [[r[0] for r in refs], [r[1] for r in refs]]).score
    assert corpus_bleu(HYPS, refs) == expected
    # uneven counts: a repeated reference changes nothing
    uneven = [[REFS[0], "the cat was on a mat"]] + [[r] for r in REFS[1:]]
    padded = [uneven[0]] + [[r, r] for r in REFS[1:]]
    assert corpus_bleu(HYPS, uneven) == corpus_bleu(HYPS, padded)


def test_sentence_scores_and_chrf_equal_sacrebleu():
    for h, r in zip(HYPS + ZH_HYPS, REFS + ZH_REFS):
        tok = "zh" if h in ZH_HYPS else "13a"
        assert sentence_bleu(h, r) == sacrebleu.sentence_bleu(h, [r], tokenize=tok).score
        assert sentence_chrf(h, r) == sacrebleu.sentence_chrf(h, [r]).score
    assert corpus_chrf(ZH_HYPS, ZH_REFS) == sacrebleu.corpus_chrf(ZH_HYPS, [ZH_REFS]).score


def test_bleu_likes_a_translation_that_means_the_opposite():
    # "the weather is bad today" vs reference "the weather is good today": one character apart
    assert sentence_bleu("今天天气不好", "今天天气很好") > 50
    with pytest.raises(ValueError):
        corpus_bleu(["a"], ["a", "b"])
