"""Chapter 09: bootstrap confidence intervals — for every mean the evaluation reports.

A score on 100 test items is one draw from what the model would score on other items like them.
The percentile bootstrap estimates that uncertainty by re-drawing the test set with replacement
``n_boot`` times, recomputing the statistic each time, and reading the interval off the
percentiles of those replicates. It needs no formula, so the same code serves a mean (exact match),
a ratio of sums (perplexity) and a corpus statistic (BLEU). ``paired_bootstrap`` compares two
systems on the *same* items, which is far tighter than comparing two separate intervals.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from instructlib.stats import t_quantile


@dataclass(frozen=True)
class Interval:
    """A point estimate with a bootstrap confidence interval over ``n`` items."""

    value: float
    low: float
    high: float
    n: int
    confidence: float = 0.95

    def __str__(self) -> str:
        return f"{self.value:.3g} [{self.low:.3g}, {self.high:.3g}]"

    def format(self, percent: bool = False, digits: int = 1) -> str:
        """``"13.5 % [9.0, 18.4]"`` (``percent=True`` multiplies by 100) or ``"0.135 [0.090, 0.184]"``."""
        if percent:
            return f"{100 * self.value:.{digits}f} % [{100 * self.low:.{digits}f}, {100 * self.high:.{digits}f}]"
        return f"{self.value:.{digits + 2}f} [{self.low:.{digits + 2}f}, {self.high:.{digits + 2}f}]"

    @property
    def half_width(self) -> float:
        """Half the interval's width: the "±" of the estimate."""
        return (self.high - self.low) / 2


def _percentiles(replicates: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} is not between 0 and 1")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(low), float(high)


def _as_array(values: Sequence[float]) -> np.ndarray:
    arr = np.asarray(values, dtype=float)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError("bootstrap needs a non-empty 1-d sequence of numbers")
    if np.isnan(arr).any():
        raise ValueError("bootstrap got NaN: drop (and count) missing values before calling it")
    return arr


def bootstrap_indices(n: int, n_boot: int, seed: int) -> np.ndarray:
    """``n_boot`` resamples of ``range(n)`` with replacement, shape (n_boot, n)."""
    return np.random.default_rng(seed).integers(0, n, size=(n_boot, n))


def bootstrap_ci(values: Sequence[float], *, n_boot: int = 2000, confidence: float = 0.95, seed: int = 0) -> Interval:
    """Mean of ``values`` with a percentile-bootstrap interval."""
    arr = _as_array(values)
    replicates = arr[bootstrap_indices(arr.size, n_boot, seed)].mean(axis=1)
    return Interval(float(arr.mean()), *_percentiles(replicates, confidence), arr.size, confidence)


def bootstrap_statistic(n: int, statistic: Callable[[np.ndarray], float], *, n_boot: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> Interval:
    """Any statistic of a test set of ``n`` items: ``statistic(indices)`` recomputed on resampled indices.

    For corpus metrics that are not means of per-item scores (corpus BLEU, perplexity as a ratio of sums).
    """
    if n <= 0:
        raise ValueError("bootstrap needs at least one item")
    value = float(statistic(np.arange(n)))
    replicates = np.array([statistic(idx) for idx in bootstrap_indices(n, n_boot, seed)], dtype=float)
    return Interval(value, *_percentiles(replicates, confidence), n, confidence)


def paired_bootstrap(a: Sequence[float], b: Sequence[float], *, n_boot: int = 2000, confidence: float = 0.95,
                     seed: int = 0) -> Interval:
    """Mean difference ``a - b`` of two systems scored on the same items, with its interval."""
    x, y = _as_array(a), _as_array(b)
    if x.size != y.size:
        raise ValueError(f"paired bootstrap needs the same items: {x.size} vs {y.size} scores")
    return bootstrap_ci(x - y, n_boot=n_boot, confidence=confidence, seed=seed)


def mean_over_seeds(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean of per-seed results with a Student-t interval (few seeds: the bootstrap would be too narrow)."""
    arr = _as_array(values)
    mean = float(arr.mean())
    if arr.size == 1:
        return Interval(mean, math.nan, math.nan, 1, confidence)
    half = t_quantile(arr.size - 1, confidence) * float(arr.std(ddof=1)) / math.sqrt(arr.size)
    return Interval(mean, mean - half, mean + half, arr.size, confidence)
