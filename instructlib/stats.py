"""Chapter 06: the cluster bootstrap behind intervals over wordings, the Student-t quantile behind every
"mean over seeds ± 95 % interval" (no SciPy needed) and the Wilson interval of a share.

Floor 0, so chapter 05's cached runs (``train.experiment.mean_interval``), chapter 06's wording curve
and chapter 09's ``evaluation.bootstrap.mean_over_seeds`` use one implementation.
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


def cluster_bootstrap(values, clusters, *, n_boot: int = 2000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """Mean with a percentile interval that treats runs (seeds) and clusters (e.g. wordings) as random.

    ``values`` is one score per item, or a (runs, items) array of the same items scored by several
    runs; ``clusters[i]`` names item ``i``'s cluster. Each replicate redraws the runs, then the
    clusters, with replacement, and keeps every item of a drawn cluster: the spread of cluster means
    already carries the items' own noise (redrawing items inside clusters too would count it twice
    and widen the interval by about 1.8x for exchangeable items). Items of one wording rise and fall
    together: with few wordings the interval is about the wordings, which an item-level bootstrap
    hides. Paired differences: pass ``a - b``.
    """
    import numpy as np

    v = np.atleast_2d(np.asarray(values, dtype=float))
    if v.ndim != 2 or v.shape[1] != len(clusters) or v.size == 0:
        raise ValueError(f"values {v.shape} need one column per item ({len(clusters)} clusters given)")
    if np.isnan(v).any():
        raise ValueError("cluster_bootstrap got NaN")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} is not between 0 and 1")
    rng = np.random.default_rng(seed)
    runs = rng.integers(0, v.shape[0], size=(n_boot, v.shape[0]))
    per_item = v[runs].mean(axis=1)  # (n_boot, items): each replicate's redrawn runs, averaged per item
    groups: dict = {}
    for i, c in enumerate(clusters):
        groups.setdefault(c, []).append(i)
    members = [np.asarray(g) for g in groups.values()]
    sums = np.stack([per_item[:, idx].sum(axis=1) for idx in members])  # (clusters, n_boot)
    sizes = np.array([len(m) for m in members], dtype=float)
    chosen = rng.integers(0, len(members), size=(n_boot, len(members)))
    replicates = np.take_along_axis(sums.T, chosen, axis=1).sum(axis=1) / sizes[chosen].sum(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(replicates, [tail, 100 - tail])
    return float(v.mean()), float(low), float(high)


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial share ``k / n`` (stays inside [0, 1], sensible at 0 and n)."""
    if not 0 <= k <= n or n == 0:
        raise ValueError(f"need 0 <= k <= n and n > 0, got k={k}, n={n}")
    from statistics import NormalDist

    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = k / n
    denom = 1 + z * z / n
    center = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (0.0 if k == 0 else center - half), (1.0 if k == n else center + half)  # exact at the ends
