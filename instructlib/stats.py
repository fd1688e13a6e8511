"""Chapter 09: the Student-t quantile behind every "mean over seeds ± 95 % interval" (no SciPy needed).

Floor 0, so chapter 05's cached runs (``train.experiment.mean_interval``) and chapter 09's
``evaluation.bootstrap.mean_over_seeds`` use one implementation.
"""
from __future__ import annotations

import math


def t_quantile(df: int, confidence: float) -> float:
    """Two-sided Student-t quantile (bisection on the regularized incomplete beta; no SciPy needed)."""
    target = (1 + confidence) / 2

    def cdf(t: float) -> float:
        x = df / (df + t * t)
        return 1 - 0.5 * _betainc(df / 2, 0.5, x)

    lo, hi = 0.0, 1000.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < target else (lo, mid)
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) by its continued fraction (Numerical Recipes' betacf)."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(1 - x))
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    c, d = 1.0, 1 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > 1e-300 else 1e-300)
    f = d
    for m in range(1, 300):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > 1e-300 else 1e-300)
            c = 1 + num / c
            c = c if abs(c) > 1e-300 else 1e-300
            f *= c * d
        if abs(c * d - 1) < 1e-15:
            break
    return front * f / a
