"""Issue 13's checks on public data the project does not ship (skipped when it is absent; see
docs/DATA.md): Gadre et al.'s over-training models and Step Law's released grid."""

from __future__ import annotations


import pytest

from conftest import load_script as _script, needs_data




@needs_data("gadre2024_mlfoundations_scaling")
def test_overtraining_splits() -> None:
    results = _script("reproduce_overtraining").reproduce()
    by_law = {split: {r["law"]: r for r in rows} for split, rows in results.items()}
    # The official 5 points: Gadre's law within the paper's 0.73% (max over 1.4B at M = 640, 6.9B).
    gadre = by_law["paper5"]["gadre"]
    assert not gadre["refused"] and gadre["max"] < 0.0073
    # 5-parameter Chinchilla and 9-parameter Farseer on 5 points interpolate: refused.
    assert by_law["paper5"]["chinchilla"]["refused"] and by_law["paper5"]["farseer"]["refused"]
    # Every over-training multiple of the 4 small sizes: the best law is within the 1.0% goal.
    assert not by_law["broad"]["gadre"]["refused"] and by_law["broad"]["gadre"]["mean"] < 0.010
    # Farseer's old 535,573%: now refused (4 model sizes cannot determine its N dependence).
    assert any("5 distinct model sizes" in m for m in by_law["broad"]["farseer"]["refused"])


@needs_data("li2025_steplaw")
def test_step_law_grid_extrapolation() -> None:
    r = _script("reproduce_steplaw").reproduce()
    assert (r["n_fit_cells"], r["n_test_cells"]) == (12, 5)
    # The official procedure re-measured: the 0.114%.
    assert r["step_law_gap"] == pytest.approx(0.001144, abs=2e-5)
    assert r["landscape_gap"] < r["step_law_gap"]
    # The vertex method, chosen by leave-one-size-out validation inside the fit cells (where it beats
    # the official procedure 0.042% to 0.105%), scored once on the held-out cells: 0.139%, worse
    # than the official 0.114% and short of issue 13's 0.08% goal (docs/STEPLAW.md).
    assert r["vertex_window"] == 0.01
    assert r["vertex_validation"][0.01] == pytest.approx(0.000424, abs=1e-5)
    assert r["step_law_validation"] == pytest.approx(0.001052, abs=1e-5)
    assert r["vertex_gap"] == pytest.approx(0.001390, abs=2e-5)
