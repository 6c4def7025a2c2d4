"""Scaling-law bootstraps resample (N, D) cells and refit each resample from several starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from harness.fit.__main__ import main
from harness.fit.bootstrap_starts import bootstrap_cells, bootstrap_starts, cell_labels
from harness.fit.fitter import fit_law
from harness.fit.laws.final_loss import ChinchillaLaw


def _seeded_grid(seeds: int) -> pd.DataFrame:
    n, mult = np.meshgrid([1e7, 3e7, 1e8, 3e8, 1e9], [5, 20, 80])
    n, d = np.repeat(n.ravel(), seeds), np.repeat((n * mult).ravel(), seeds)
    rng = np.random.default_rng(0)
    loss = (1.8 + 480 / n**0.35 + 2100 / d**0.37) * np.exp(0.003 * rng.standard_normal(n.size))
    return pd.DataFrame({"N": n, "D": d, "loss": loss})


def test_cells_are_the_resampling_unit_only_when_they_repeat() -> None:
    assert cell_labels(_seeded_grid(1)) is None
    labels = cell_labels(_seeded_grid(3))
    assert labels is not None and np.unique(labels).size == 15 and np.bincount(labels).tolist() == [3] * 15


def test_refits_start_from_the_optimum_and_the_grids_best_other_starts() -> None:
    table, law = _seeded_grid(1), ChinchillaLaw()
    data, y = law.prepare(table), table["loss"].to_numpy()
    fit = fit_law(law, data, y)
    starts = bootstrap_starts(law, data, y, fit)
    assert starts.shape == (4, 5)
    np.testing.assert_array_equal(starts[0], fit.theta)
    assert all(any(np.array_equal(s, g) for g in law.initial_grid()) for s in starts[1:])
    boot = bootstrap_cells(law, data, y, fit, n_boot=8)
    assert boot.thetas.shape == (8, 5) and boot.unit == "points"
    lo, hi = boot.param_intervals["alpha"]
    assert lo <= fit.params["alpha"] <= hi


def test_scaling_cli_bootstraps_cells(tmp_path: Path) -> None:
    runs = tmp_path / "runs.csv"
    _seeded_grid(3).to_csv(runs, index=False)
    out = tmp_path / "out"
    assert main(["scaling", "--law", "chinchilla", "--fit", str(runs), "--out", str(out), "--bootstrap", "6"]) == 0
    boot = json.loads((out / "params.json").read_text())["bootstrap"]
    assert boot["unit"] == "groups" and boot["n_boot"] == 6
