"""harness/fit/schedule_opt.py: under a KNOWN law (a multi-power law with fixed parameters, so no
fitting noise), the optimized schedule ends lower than cosine and WSD, and what it writes is the
schedule it scored (the trainer's own schedule code gives the same LRs)."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from harness.config import schedule_config
from harness.fit.registry import CURVE_LAWS
from harness.fit.schedule_opt import DecayFamily, optimize_schedule, predicted_final, schedule_lrs

# A multi-power law in the range the MPL paper fits (L0, A, alpha, B, C, beta, gamma), peak LR 3e-3.
THETA = np.array([3.0, 0.6, 0.45, 300.0, 2.0, 0.6, 0.6])
PEAK, T, W = 3e-3, 600, 30


@pytest.fixture(scope="module")
def optimized():
    refs = {"cosine": schedule_config("cosine", warmup_steps=W, min_lr_ratio=0.0),
            "wsd": schedule_config("wsd", warmup_steps=W, decay_fraction=0.2, cooldown="sqrt", min_lr_ratio=0.0)}
    return optimize_schedule(CURVE_LAWS["mpl"](), THETA, total_steps=T, peak_lr=PEAK, warmup_steps=W,
                             references=refs)


def test_optimized_schedule_beats_cosine_and_wsd_under_the_law(optimized):
    assert optimized.predicted_final < optimized.references["cosine"] - 1e-3
    assert optimized.predicted_final < optimized.references["wsd"]
    m = optimized.config.knot_multipliers
    assert m[0] == 1.0 and m[-1] == 0.0 and all(b <= a for a, b in zip(m, m[1:]))  # monotone, ends at 0


def test_written_schedule_is_the_one_scored(optimized):
    """The YAML and the overrides rebuild exactly the LRs whose final loss was reported."""
    loaded = schedule_config(**yaml.safe_load(optimized.yaml("optimized")))
    lrs = schedule_lrs(loaded, total_steps=T, peak_lr=PEAK)
    assert np.array_equal(lrs, optimized.lrs)
    assert predicted_final(CURVE_LAWS["mpl"](), THETA, lrs) == optimized.predicted_final
    fields = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in optimized.overrides()}
    assert fields["schedule"] == "piecewise" and fields["schedule.warmup_steps"] == str(W)
    assert yaml.safe_load(fields["schedule.knot_multipliers"]) == optimized.config.knot_multipliers


def test_family_is_monotone_and_checked():
    family = DecayFamily(n_knots=3, end_ratio=0.1)
    fractions, multipliers = family.knots([0.6, 0.9, 0.5, 0.0])
    assert fractions == [0.0, 0.6, 0.7, 0.8, 0.9, 1.0]
    assert multipliers == [1.0, 1.0, pytest.approx(0.91), pytest.approx(0.1 + 0.9 * 0.45), 0.1, 0.1]
    # s = 0: no stable knot, the decay starts right after warmup.
    assert family.knots([0.0, 1.0, 1.0, 1.0])[0] == [0.0, 0.25, 0.5, 0.75, 1.0]
    with pytest.raises(ValueError, match="end_ratio"):
        DecayFamily(end_ratio=1.0)
    with pytest.raises(ValueError, match="n_knots"):
        DecayFamily(n_knots=0)
