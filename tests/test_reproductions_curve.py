"""Published curve-law results, reproduced on public data from other projects (docs/DATA.md; read
from $HARNESS_DATA or ../shared/data, skipped when absent)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import needs_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import reproduce_mpl  # noqa: E402
import reproduce_tissue  # noqa: E402
from harness.fit.fitter import metrics  # noqa: E402
from harness.fit.laws.mpl import MultiPowerLaw  # noqa: E402


@needs_data("tissue2024_appendix_example")
def test_tissue_example_matches_the_authors_fit():
    fit, _ = reproduce_tissue.run()
    for name, value in reproduce_tissue.PAPER.items():
        assert fit.params[name] == pytest.approx(value, rel=0.01), name
    assert fit.metrics["r2"] >= 0.9996


@needs_data("luo2025_multipowerlaw")
@pytest.mark.parametrize("size", reproduce_mpl.SIZES)
def test_mpl_published_params_reproduce_readme(size):
    """Our MPL code with the authors' parameters gives the README's mean test PredE (checks indexing)."""
    law = MultiPowerLaw(warmup_in_drop=True, bin_steps=8)
    prede = []
    for name in reproduce_mpl.TEST:
        curve = [reproduce_mpl.load_curve(size, name)]
        y = reproduce_mpl.observed(curve)
        prede.append(metrics(y, law.predict(np.array(reproduce_mpl.PUBLISHED_PARAMS[size]), law.prepare(curve)))["prede"])
    assert np.mean(prede) == pytest.approx(reproduce_mpl.PUBLISHED_PREDE[size], abs=5e-6)


# What our own fit achieves on the official split (mean test PredE, as a fraction). These are
# regression guards at what we measured plus a margin, NOT parity with the published fit, which is
# better on the 3x-longer cosine (see scripts/reproduce_mpl.py and docs/MPL_FITTING.md).
# Measured: 0.139 / 0.175 / 0.226 % (25M / 100M / 400M); published 0.110 / 0.142 / 0.168 %.
OUR_PREDE_BOUND = {"25": 0.0015, "100": 0.0019, "400": 0.0024}
# The default curve law (lr-noise-clock, docs/CURVE_LAWS.md) measured 0.105 / 0.078 / 0.115 %: it
# must stay below the published fit at every size (0.110 / 0.142 / 0.168 %).
DEFAULT_PREDE_BOUND = {"25": 0.00109, "100": 0.0009, "400": 0.0013}


@needs_data("luo2025_multipowerlaw")
@pytest.mark.parametrize("size", reproduce_mpl.SIZES)
def test_mpl_fit_on_official_split(size):
    result = reproduce_mpl.run(size)
    # The authors' recipe, re-run by us, gives their parameters and their held-out accuracy.
    np.testing.assert_allclose(result["recipe"], reproduce_mpl.PUBLISHED_PARAMS[size], rtol=2e-3)
    assert result["mean"]["recipe"]["prede"] <= reproduce_mpl.PUBLISHED_PREDE[size] + 1e-5
    # The fully converged fit (`mpl`): regression guard.
    assert result["fit"].converged
    # Fit time is a benchmark figure (scripts/bench_fit.py), not a test assertion.
    assert result["mean"]["ours"]["prede"] <= OUR_PREDE_BOUND[size]
    assert result["mean"]["ours"]["r2"] >= 0.995
    # The default law: converged, and better than the published fit on held-out curves.
    assert result["default_fit"].converged
    assert result["mean"]["default"]["prede"] <= DEFAULT_PREDE_BOUND[size]
    assert result["mean"]["default"]["prede"] < reproduce_mpl.PUBLISHED_PREDE[size]
