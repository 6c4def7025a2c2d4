"""The convex-bound curve laws (harness/fit/laws/convex_bound.py; docs/CURVE_LAWS.md "Convex-bound laws").

Checks: the vectorized bound against a direct step-by-step computation of Defazio et al.'s
Theorem 10 on tiny schedules (warmup from 0, a zero-LR tail); its 1/eta + eta shape (a peak-LR
optimum where the formula puts it); a cooldown lowers it; both laws recover their own
parameters from synthetic curves and their jacobians match finite differences; and on our proxy
fixture (tests/data/curve_proxy_T300.csv) `convex-noise-sqrt` predicts 0.5x the fit peak LR better
than the default law (the validation direction its choice was made on).
"""

from __future__ import annotations

import numpy as np
import pytest

from harness.fit import registry
from harness.fit.curve_predict import lr_from_schedule
from harness.fit.fitter import _fd_jacobian
from harness.fit.io import Curve
from harness.fit.laws.convex_bound import ConvexBoundLaw, ConvexNoiseSqrtLaw, bound_terms
from synthetic_curves import SCHEDULES, assert_recovers_and_transfers, synthetic_curves



def _direct_bound(eta: np.ndarray, T: int, D: float, G: float) -> float:
    """Theorem 10 of Defazio et al. 2023 for eta_1..eta_T, written as plain loops (no cumsums),
    with the steps of zero LR removed first (they leave the iterate where it is)."""
    e = [float(x) for x in eta[:T] if x > 0]
    n = len(e)
    total = sum(e)
    out = D**2 / (2 * total) + G**2 * sum(x * x for x in e) / (2 * total)
    for k in range(n - 1):
        after = sum(e[k + 1:])
        from_k = sum(e[k:])
        sq_from_k = sum(x * x for x in e[k:])
        out += 0.5 * G**2 * e[k] / after * sq_from_k / from_k
    return out


@pytest.mark.parametrize("eta", [
    np.array([0.0, 0.5, 1.0, 1.0, 0.8, 0.6, 0.3, 0.1]),            # warmup from 0, then a decay
    np.array([0.2, 0.4, 0.6, 0.6, 0.6, 0.6, 0.3, 0.0, 0.0]),       # WSD ending on a zero-LR tail
    np.array([1.0, 0.25, 2.0, 0.5, 0.125, 1.5, 0.75]),            # an arbitrary non-monotone schedule
])
def test_bound_matches_a_direct_computation(eta):
    rows = np.arange(1, eta.size)
    s, v = bound_terms(eta, rows)
    D, G = 1.7, 0.6
    fast = D**2 / (2 * s) + G**2 * v
    slow = [_direct_bound(eta, int(t) + 1, D, G) for t in rows]
    np.testing.assert_allclose(fast, slow, rtol=1e-12)


def test_zero_lr_tail_gives_the_bound_of_the_last_positive_step():
    eta = np.array([0.5, 1.0, 1.0, 0.5, 0.0, 0.0])
    s, v = bound_terms(eta, np.array([3, 4, 5]))
    assert np.all(np.isfinite(v))
    assert s[0] == s[1] == s[2] and v[0] == v[1] == v[2]


def test_bad_schedule_is_refused_with_the_field_named():
    with pytest.raises(ValueError, match="lr must be"):
        bound_terms(np.array([0.1, -0.1, 0.1]), np.array([2]))
    with pytest.raises(ValueError, match="rows must lie"):
        bound_terms(np.array([0.1, 0.1]), np.array([2]))


def test_bound_scales_as_one_over_eta_plus_eta_with_its_optimum_where_the_formula_puts_it():
    """Scaling the schedule by c scales S and V by c: Omega(c) = r / (2 c S) + c V, minimal at
    c* = sqrt(r / (2 S V)). The law's predicted final loss over peak LRs has that interior minimum."""
    steps, base = 400, 1e-3
    lr = lr_from_schedule(SCHEDULES["cosine"], steps, base)
    rows = np.array([steps - 1])
    s1, v1 = bound_terms(lr, rows)
    for c in (0.5, 3.0):
        s_c, v_c = bound_terms(c * lr, rows)
        # 1e-8: the tail areas are differences of cumulative sums, and a cosine's last steps are tiny.
        np.testing.assert_allclose([s_c[0], v_c[0]], [c * s1[0], c * v1[0]], rtol=1e-8)
    law = ConvexBoundLaw()
    r = 2 * s1[0] * v1[0] * 4.0  # the optimum at c* = 2
    theta = np.array([2.0, 3.0, 0.4, r])
    scales = np.geomspace(0.25, 16, 49)
    final = []
    for c in scales:
        curve = Curve(name="c", path="c", step=np.arange(1, steps + 1), lr=c * lr, loss=np.full(steps, np.nan))
        final.append(float(law.predict(theta, law.prepare([curve]))[-1]))
    best = scales[int(np.argmin(final))]
    assert 0 < int(np.argmin(final)) < len(scales) - 1
    assert best == pytest.approx(2.0, rel=0.1)
    # Both sides rise: a 4x too small and a 4x too large peak LR are both worse than the optimum.
    assert final[0] > min(final) and final[-1] > min(final)


def test_a_cooldown_lowers_the_bound_below_the_constant_schedule():
    steps, peak = 600, 1e-3
    end = np.array([steps - 1])
    const = bound_terms(lr_from_schedule(SCHEDULES["constant"], steps, peak), end)
    wsd = bound_terms(lr_from_schedule(SCHEDULES["wsd"], steps, peak), end)
    r = 2 * const[0][0] * const[1][0]  # the constant schedule's peak LR is its optimum
    assert r / (2 * wsd[0][0]) + wsd[1][0] < 0.9 * (r / (2 * const[0][0]) + const[1][0])


CASES = {
    # L0, A, beta, r: r puts the bound's optimum at ~1.5x the fit peak LR of 2e-3.
    "convex-bound": np.array([2.0, 4.0, 0.4, 2.5e-3]),
    # L0, A, alpha, sigma
    "convex-noise-sqrt": np.array([2.0, 1.0, 0.4, 40.0]),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_registered_and_jacobian_matches_finite_differences(name):
    law = registry.CURVE_LAWS[name]()
    assert isinstance(law, ConvexBoundLaw if name == "convex-bound" else ConvexNoiseSqrtLaw)
    assert law.name == name
    theta = CASES[name]
    data = law.prepare(synthetic_curves(law, theta, 2e-3, steps=300, first=50))
    pred, jac = law.jacobian(theta, data)
    fd_pred, fd_jac = _fd_jacobian(law, theta, data)
    np.testing.assert_allclose(pred, fd_pred, rtol=1e-12)
    np.testing.assert_allclose(jac, fd_jac, rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_recovers_its_parameters_and_transfers_to_other_peak_lrs(name):
    assert_recovers_and_transfers(registry.CURVE_LAWS[name](), CASES[name])


def test_convex_noise_sqrt_beats_the_default_at_half_the_peak_lr_on_the_proxies():
    """Fit at 6e-3 (constant, cosine, WSD-linear-20 %, 300 steps), predict 6 schedules at 3e-3.
    Measured when written: convex-noise-sqrt 0.86 % vs the default 3.28 % (lr-noise-sqrt 1.03 %,
    the pure convex-bound 4.95 %)."""
    from test_lr_noise_sqrt import _mean_prede, _proxy_curves  # tests/ is on the path, as for conftest

    curves = _proxy_curves()
    ours = _mean_prede("convex-noise-sqrt", curves, 3e-3)
    default = _mean_prede(registry.DEFAULT_CURVE_LAW, curves, 3e-3)
    assert ours < 0.5 * default, (ours, default)
