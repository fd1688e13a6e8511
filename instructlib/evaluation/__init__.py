"""Chapter 09: evaluation — exact match, ROUGE-L, BLEU/chrF, perplexity, IFEval-style checks, LLM-as-judge,
bootstrap intervals, and a cached harness (``evaluate(models, datasets, metrics) -> table``).

Named ``evaluation`` rather than ``eval`` so that it never shadows the builtin.
"""
from instructlib.evaluation.bootstrap import Interval, bootstrap_ci, bootstrap_statistic, mean_over_seeds, paired_bootstrap
from instructlib.evaluation.harness import EvalTable, evaluate
from instructlib.evaluation.metrics import exact_match, normalize_answer, strict_loose
from instructlib.evaluation.overlap import corpus_bleu, corpus_chrf, rouge_l
from instructlib.evaluation.suite import METRICS, EvalItem, Metric, as_items, judge_metric

__all__ = ["Interval", "bootstrap_ci", "bootstrap_statistic", "mean_over_seeds", "paired_bootstrap", "EvalTable",
           "evaluate", "exact_match", "normalize_answer", "strict_loose", "corpus_bleu", "corpus_chrf", "rouge_l",
           "METRICS", "EvalItem", "Metric", "as_items", "judge_metric"]
