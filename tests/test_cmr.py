"""The CMR law (harness/fit/laws/cmr.py): recovers a known critical ratio from a synthetic mixture
sweep with an interval covering it, and refuses or warns when the sweep does not determine it."""

from __future__ import annotations

import numpy as np
import pytest

from harness.fit.laws.cmr import CMRError, CMRLossLaw, fit_cmr
from harness.fit.registry import SCALING_LAWS

RATIOS = np.array([0.0, 0.1, 0.25, 0.4, 0.6, 0.8])
TOKENS = np.array([1e5, 2e5, 4e5, 8e5])


def sweep(theta, base=4.0, noise=0.0, seed=0, ratios=RATIOS):
    r, T = (a.ravel() for a in np.meshgrid(ratios, TOKENS))
    law = CMRLossLaw(t_ref=TOKENS.min())
    data = law.prepare({"ratio": r, "T": T, "L0": np.full_like(r, base)})
    loss = law.predict(np.asarray(theta), data)
    return r, T, loss * (1 + noise * np.random.default_rng(seed).standard_normal(loss.size))


def test_recovers_the_critical_ratio_of_a_known_surface():
    theta = (0.4, 1.5, -0.05, 0.3)  # gain 0.05 at r=0, forgetting 0.3 r^1.5
    r, T, g = sweep(theta, noise=2e-4)
    _, _, d = sweep((0.5, 0.7, 0.0, -0.4), base=5.0)  # the domain loss falls with r
    truth = (0.05 / 0.3) ** (1 / 1.5)  # tolerance 0: a + b r^q = 0
    result = fit_cmr(r, T, g, 4.0, d, 5.0, n_boot=40)
    assert result.cmr == pytest.approx(truth, abs=0.02)
    assert result.interval[0] <= truth <= result.interval[1] and result.interval[1] - result.interval[0] < 0.15
    assert result.general["converged"] and result.domain is not None and not result.warnings
    # a tolerance lets more domain data in, less so the longer the budget (T^-p)
    loose = fit_cmr(r, T, g, 4.0, tolerance=0.02, n_boot=0)
    assert loose.cmr > result.cmr and loose.cmr_by_tokens[1e5] > loose.cmr_by_tokens[8e5]


def test_outside_the_sampled_ratios_is_a_loud_warning():
    r, T, g = sweep((0.4, 1.5, -0.2, 0.3))  # CMR (2/3)^(2/3) = 0.76 ...
    keep = r <= 0.6  # ... beyond the largest sampled ratio
    result = fit_cmr(r[keep], T[keep], g[keep], 4.0, n_boot=0)
    assert result.cmr > 0.6 and any("outside the sampled ratios" in w for w in result.warnings)


def test_refuses_when_the_sweep_shows_no_forgetting_or_too_few_ratios():
    r, T, g = sweep((0.4, 1.0, -0.1, -0.05))  # more domain data never hurts the general loss
    with pytest.raises(CMRError, match="no forgetting"):
        fit_cmr(r, T, g, 4.0, n_boot=0)
    with pytest.raises(CMRError, match="3 distinct"):
        fit_cmr(np.r_[0.1, 0.1, 0.2, 0.2, 0.2], np.r_[1, 2, 1, 2, 3.0], np.r_[4, 4, 4, 4, 4.0], 4.0)


def test_registered_as_a_scaling_law():
    assert SCALING_LAWS["cmr"]().name == "cmr"


def test_holdout_check_predicts_the_largest_budget_of_a_known_surface_and_beats_carrying_forward():
    from harness.fit.laws.cmr import holdout_check

    theta = (0.4, 1.5, -0.05, 0.3)
    r, T, g = sweep(theta, noise=2e-4)
    check = holdout_check("general", r, T, g, 4.0)
    assert check is not None and check.converged
    assert check.tokens == TOKENS.max() and check.n_held == RATIOS.size and check.n_fit == r.size - RATIOS.size
    # the law extrapolates one doubling of T within the noise; carrying the last loss forward misses the drift
    assert check.mean_rel_error < 1e-3 < check.persistence_mean_rel_error
    # a sweep with a single fitted budget cannot be checked forward in time
    two = T <= 2e5
    assert holdout_check("general", r[two], T[two], g[two], 4.0) is None
