"""PassUntil (harness/eval/passuntil.py) on a simulated model whose samples pass with a known
Bernoulli rate: the estimate and its interval, rates of 1e-4, coverage, and the edge cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.eval.passuntil import estimate, pass_until


def bernoulli_sampler(p: float, seed: int):
    rng = np.random.default_rng(seed)
    return lambda items, k: [list(rng.random(k) < p) for _ in items]


@pytest.mark.parametrize("p", [0.05, 1e-3, 1e-4])
def test_known_rate_lies_in_the_interval(p):
    # Caps of ~20 / p samples per item: most items pass, so even 1e-4 is measured, not bounded.
    est = pass_until(bernoulli_sampler(p, seed=1), n_items=100, max_samples=int(20 / p), batch=int(2 / p))
    assert est.lo < p < est.hi
    assert est.passes > 90 and est.rate == pytest.approx(p, rel=0.3)
    assert est.hi / est.lo < 1.6  # ~100 passes: a tight interval


def test_interval_covers_the_true_rate_about_95_percent_of_the_time():
    p, hits, reps = 0.02, 0, 300
    for seed in range(reps):
        est = pass_until(bernoulli_sampler(p, seed), n_items=20, max_samples=100, batch=16)
        hits += est.lo <= p <= est.hi
    assert 0.90 <= hits / reps <= 0.99


def test_samples_stop_at_the_first_pass_and_at_the_cap():
    # Item 0 passes on its 3rd draw of the first round, item 1 never: draws 3 + cap.
    def sampler(items, k):
        return [[j == 2 for j in range(k)] if i == 0 else [False] * k for i in items]

    est = pass_until(sampler, n_items=2, max_samples=10, batch=4)
    assert (est.passes, est.samples) == (1, 3 + 10)
    assert est.rate == pytest.approx(1 / 13)


def test_no_pass_gives_zero_with_the_likelihood_ratio_upper_bound():
    est = estimate([500, 500], [False, False])
    assert est.rate == 0.0 and est.lo == 0.0
    # 2 [l(0) - l(p)] = -2 T log(1 - p) = chi2_1(0.95) = 3.8415
    assert est.hi == pytest.approx(1 - math.exp(-3.841459 / 2 / 1000), rel=1e-5)


def test_every_draw_passing_has_upper_bound_one():
    est = estimate([1, 1, 1], [True, True, True])
    assert est.rate == 1.0 and est.hi == 1.0 and 0 < est.lo < 1


@pytest.mark.parametrize("draws, passed", [([], []), ([0], [True]), ([1, 2], [True])])
def test_bad_input_is_refused(draws, passed):
    with pytest.raises(ValueError, match="passuntil"):
        estimate(draws, passed)
