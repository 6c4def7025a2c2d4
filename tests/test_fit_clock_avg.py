"""The clock-averaged peak-LR rule `clock-avg` (scripts/validate_curve_laws.py; docs/CURVE_LAWS.md
"Clock-averaged peak-LR transfer").

Checks: at the fitted peak LR the rule is exactly `convex-noise-sqrt`'s own fit; at another peak LR it
is the equal-weight mean of the four refits with the clock exponent held at 0.25, 0.5, 0.75, 1 (each a
fit of that pinned law, not a copy of the main fit), so its error is at most the refits' mean error;
the grid is set on the fitted instance only (the class's `--band` grid is untouched).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from harness.fit.fitter import metrics
from harness.fit.laws.convex_bound import ConvexNoiseSqrtLaw
from synthetic_curves import synthetic_curves

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import validate_curve_laws as validation  # noqa: E402

# L0, A, alpha, sigma of a convex-noise-sqrt curve whose true clock exponent is 0.75 (not 1/2).
TRUTH = np.array([2.0, 1.0, 0.4, 40.0])


@pytest.fixture(scope="module")
def made():
    truth_law = ConvexNoiseSqrtLaw()
    truth_law.CLOCK_P = 0.75
    fit_set = synthetic_curves(truth_law, TRUTH, 2e-3, steps=400, first=50)
    return truth_law, fit_set, validation.clock_average(fit_set)


def test_at_the_fitted_peak_lr_it_is_the_main_fit(made):
    _, fit_set, rule = made
    for c in fit_set:
        main = rule.law.predict(rule.theta, rule.law.prepare([c]))
        np.testing.assert_array_equal(rule.predict(c), main)


def test_at_a_new_peak_lr_it_is_the_mean_of_the_four_pinned_refits(made):
    truth_law, _, rule = made
    assert [f.values["CLOCK_P"] for f in rule.pinned] == list(validation.CLOCK_AVERAGE_GRID) == [0.25, 0.5, 0.75, 1.0]
    assert [f.law.CLOCK_P for f in rule.pinned] == [0.25, 0.5, 0.75, 1.0]
    # The class keeps its own --band grid; the rule's grid lives on the fitted instance.
    assert ConvexNoiseSqrtLaw.weak_at_one_peak_lr == {"CLOCK_P": (0.0, 0.25, 0.5, 0.75, 1.0)}
    for c in synthetic_curves(truth_law, TRUTH, 6e-3, steps=400, first=50):
        y = c.loss[c.eval_index()]
        members = np.stack([f.law.predict(f.theta, f.law.prepare([c])) for f in rule.pinned])
        avg = rule.predict(c)
        np.testing.assert_allclose(avg, members.mean(axis=0), rtol=1e-12)
        # The refits differ (the exponent changes the prediction at a new peak LR)...
        assert np.ptp(members[:, -1]) > 1e-3 * y[-1]
        # ... and the mean's error is at most their mean error (|mean - y| <= mean |pred - y|).
        errs = [metrics(y, m)["prede"] for m in members]
        assert metrics(y, avg)["prede"] <= np.mean(errs) + 1e-12
        # The refit at the true exponent (0.75) is the best member: the pinned fits are real fits.
        assert int(np.argmin(errs)) == 2

