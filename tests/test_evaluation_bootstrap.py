"""Bootstrap intervals on distributions whose answer is known."""
import math

import numpy as np
import pytest

from instructlib.evaluation.bootstrap import (Interval, bootstrap_ci, bootstrap_statistic, mean_over_seeds,
                                              paired_bootstrap)


def test_bernoulli_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(1)
    values = (rng.random(400) < 0.3).astype(float)
    iv = bootstrap_ci(values)
    p = values.mean()
    assert iv.value == p and iv.n == 400
    assert iv.low < 0.3 < iv.high
    assert iv.half_width == pytest.approx(1.96 * math.sqrt(p * (1 - p) / 400), rel=0.15)


def test_coverage_of_the_mean_of_a_normal_sample_is_near_95_percent():
    rng = np.random.default_rng(0)
    hits = 0
    for k in range(200):
        sample = rng.normal(2.0, 1.0, 60)
        iv = bootstrap_ci(sample, n_boot=500, seed=k)
        hits += iv.low < 2.0 < iv.high
    assert 0.88 <= hits / 200 <= 0.99, hits


def test_generic_statistic_reproduces_the_mean_bootstrap_with_the_same_seed():
    values = np.random.default_rng(3).random(50)
    a = bootstrap_ci(values, n_boot=300, seed=7)
    b = bootstrap_statistic(50, lambda idx: values[idx].mean(), n_boot=300, seed=7)
    assert a.value == pytest.approx(b.value) and a.low == pytest.approx(b.low) and a.high == pytest.approx(b.high)


def test_ratio_statistic_and_degenerate_cases():
    ones = bootstrap_ci([1.0] * 20)
    assert (ones.value, ones.low, ones.high) == (1.0, 1.0, 1.0)
    nll, tokens = np.array([2.0, 4.0, 6.0]), np.array([1, 2, 3])
    iv = bootstrap_statistic(3, lambda idx: math.exp(nll[idx].sum() / tokens[idx].sum()))
    assert iv.value == pytest.approx(math.exp(2.0))
    assert iv.low == pytest.approx(math.exp(2.0)) and iv.high == pytest.approx(math.exp(2.0))  # every item 2 nats/token
    for bad in ([], [1.0, float("nan")]):
        with pytest.raises(ValueError):
            bootstrap_ci(bad)


def test_paired_difference_is_tighter_than_two_separate_intervals():
    rng = np.random.default_rng(0)
    difficulty = rng.random(200)
    a = (difficulty < 0.6).astype(float)               # system A solves the easier 60 %
    b = (difficulty < 0.5).astype(float)               # system B a subset of those
    diff = paired_bootstrap(a, b)
    assert diff.value == pytest.approx(a.mean() - b.mean())
    assert diff.low > 0                                 # the paired test sees a real difference
    ia, ib = bootstrap_ci(a), bootstrap_ci(b)
    assert ia.low < ib.high                             # the separate intervals overlap
    with pytest.raises(ValueError):
        paired_bootstrap([1.0], [1.0, 0.0])


def test_student_t_interval_over_seeds():
    iv = mean_over_seeds([0.1, 0.2, 0.15])
    sd = np.std([0.1, 0.2, 0.15], ddof=1)
    assert iv.value == pytest.approx(0.15)
    assert iv.half_width == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)  # t(2, 0.975)
    assert mean_over_seeds([0.0, 1.0, 0.0, 1.0, 0.5]).half_width == pytest.approx(
        2.776445 * np.std([0, 1, 0, 1, 0.5], ddof=1) / math.sqrt(5), rel=1e-5)
    assert math.isnan(mean_over_seeds([0.3]).low)


def test_interval_formatting():
    iv = Interval(0.135, 0.09, 0.184, 100)
    assert iv.format(percent=True) == "13.5 % [9.0, 18.4]"
    assert str(iv) == "0.135 [0.09, 0.184]"


def test_cluster_bootstrap_is_about_the_clusters_when_items_move_together():
    """10 wordings x 100 items, every item of a wording right or wrong together: the interval is that of 10
    coin flips (about ±31 points), not of 1,000 independent items (about ±3)."""
    from instructlib.stats import cluster_bootstrap
    values = [float(c % 2) for c in range(10) for _ in range(100)]
    clusters = [c for c in range(10) for _ in range(100)]
    mean, low, high = cluster_bootstrap(values, clusters, n_boot=4000, seed=1)
    assert mean == 0.5
    assert 0.2 < (high - low) / 2 < 0.4  # 1.96 x sqrt(0.25 / 10) = 0.31
    item_level = bootstrap_ci(values, n_boot=4000, seed=1)
    assert item_level.high - item_level.low < 0.1


def test_cluster_bootstrap_of_independent_items_matches_the_item_bootstrap():
    import random
    from instructlib.stats import cluster_bootstrap
    rng = random.Random(0)
    values = [float(rng.random() < 0.3) for _ in range(2000)]
    clusters = [i % 20 for i in range(2000)]  # clusters of exchangeable items: no extra spread
    mean, low, high = cluster_bootstrap(values, clusters, n_boot=4000, seed=2)
    plain = bootstrap_ci(values, n_boot=4000, seed=2)
    assert abs((high - low) - (plain.high - plain.low)) < 0.25 * (plain.high - plain.low)


def test_cluster_bootstrap_over_runs_and_its_guards():
    from instructlib.stats import cluster_bootstrap
    same = [[1.0, 0.0, 1.0, 0.0]] * 3
    assert cluster_bootstrap(same, ["a", "a", "b", "b"], n_boot=100)[0] == 0.5
    spread = [[0.0] * 4, [1.0] * 4]  # runs disagree completely: the interval spans both
    _, low, high = cluster_bootstrap(spread, ["a", "a", "b", "b"], n_boot=500)
    assert low == 0.0 and high == 1.0
    with pytest.raises(ValueError):
        cluster_bootstrap([1.0, 0.0], ["a"])
    with pytest.raises(ValueError):
        cluster_bootstrap([1.0, float("nan")], ["a", "b"])


def test_wilson_interval_matches_the_formula_and_stays_in_range():
    from instructlib.stats import wilson_interval

    low, high = wilson_interval(4, 60)
    assert (round(low, 4), round(high, 4)) == (0.0262, 0.1593)   # textbook value for 4/60
    assert wilson_interval(0, 10)[0] == 0.0 and 0.27 < wilson_interval(0, 10)[1] < 0.28   # 0.2775
    a, b = wilson_interval(3, 10)
    c, d = wilson_interval(7, 10)
    assert abs(a - (1 - d)) < 1e-12 and abs(b - (1 - c)) < 1e-12
    assert wilson_interval(50, 100, 0.99)[0] < wilson_interval(50, 100, 0.95)[0]
