"""Step Law's vertex method (harness/fit/steplaw_landscape.py): each cell's optimum is the vertex of
a quadratic in (log lr, log B), the window chosen by leave-one-size-out validation. Synthetic grids
whose optima fall between the grid points, where the official near-optimal OLS can only return
grid points."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit.__main__ import main
from harness.fit.hyperparams import fit_step_law
from harness.fit.steplaw_landscape import (as_predictor, cell_optimum, choose_window, fit_step_law_vertex,
                                           fit_vertex_law, leave_one_size_out, nearest_run_gap)

SIZES = (1e7, 2e7, 4e7, 8e7)
TOKENS = (1e9, 3e9, 1e10)


def lr_opt(n: float, d: float) -> float:
    return 0.3 * n**-0.45 * d**0.12


def b_opt(n: float, d: float) -> float:
    return 3.0 * n**-0.1 * d**0.55


def landscape_grid(steps: int = 4) -> pd.DataFrame:
    """log L = log L*(N, D) + 0.02 dl^2 + 0.01 db^2 + 0.005 dl db on a fixed lr grid (factor sqrt 2)
    and B grid (factor 2): the true optimum lies between grid points, differently in each cell."""
    lrs = 1e-3 * 2.0 ** (np.arange(-8, 9) / 2)
    rows = []
    for n in SIZES:
        for d in TOKENS:
            best = 2.0 + 50 * n**-0.3 + 300 * d**-0.3
            b_grid = 2.0 ** np.round(np.log2(b_opt(n, d)) + np.arange(-steps, steps + 1))
            for lr in lrs:
                for b in b_grid:
                    dl, db = np.log(lr / lr_opt(n, d)), np.log(b / b_opt(n, d))
                    loss = best * np.exp(0.02 * dl * dl + 0.01 * db * db + 0.005 * dl * db)
                    rows.append({"N": n, "D": d, "lr": lr, "B": b, "loss": loss})
    return pd.DataFrame(rows)


def test_the_vertex_of_an_exact_quadratic_is_the_true_optimum() -> None:
    grid = landscape_grid()
    cell = grid[(grid["N"] == SIZES[0]) & (grid["D"] == TOKENS[0])]
    opt = cell_optimum(cell, window=0.01)
    assert opt.source == "vertex" and opt.n_runs >= 8
    assert opt.lr_opt == pytest.approx(lr_opt(SIZES[0], TOKENS[0]), rel=1e-8)
    assert opt.B_opt == pytest.approx(b_opt(SIZES[0], TOKENS[0]), rel=1e-8)
    # The best run is only the nearest grid point.
    best = cell.loc[cell["loss"].idxmin()]
    assert abs(np.log(best["lr"] / lr_opt(SIZES[0], TOKENS[0]))) > 1e-3


def test_the_fit_recovers_both_laws_where_near_optimal_ols_cannot() -> None:
    grid = landscape_grid()
    fit = fit_vertex_law(grid, window=0.01)
    assert fit.warnings == ()
    assert fit.lr.inputs == ("N", "D") and fit.batch.inputs == ("N", "D")
    assert fit.lr.exponents == pytest.approx((-0.45, 0.12), abs=1e-6)
    assert fit.batch.exponents == pytest.approx((-0.1, 0.55), abs=1e-6)
    assert fit.lr.coefficient == pytest.approx(0.3, rel=1e-5) and fit.batch.coefficient == pytest.approx(3.0, rel=1e-5)
    official = fit_step_law(grid, n_bootstrap=0)
    assert abs(official.lr.exponents[0] + 0.45) > 1e-3   # grid points, not the optimum
    # Scored as issue 13 scores it, the fit does exactly as well as the true optimum (whose nearest
    # run in log distance need not be the best run: the valley is not round).
    truth = nearest_run_gap(grid, lambda n, d: (lr_opt(n, d), b_opt(n, d)))
    assert nearest_run_gap(grid, as_predictor(fit)) == truth and max(truth) < 1e-3


def test_a_cell_without_a_convex_valley_uses_its_best_run_and_says_so() -> None:
    grid = landscape_grid()
    # Too few runs in the window for a quadratic: every cell falls back, each named.
    fit = fit_vertex_law(grid, window=1e-9)
    assert len(fit.warnings) == len(SIZES) * len(TOKENS)
    assert "cell N=1e+07, D=1e+09: 1 run(s) within 1e-09" in fit.warnings[0]
    # A cell whose loss wiggles in lr: the fitted quadratic is not convex, so no vertex.
    first = (grid["N"] == SIZES[0]) & (grid["D"] == TOKENS[0])
    wiggly = grid[first].copy()
    dl = np.log(wiggly["lr"] / lr_opt(SIZES[0], TOKENS[0]))
    wiggly["loss"] = 3.0 * np.exp(0.001 * np.sin(3 * dl) - 0.0001 * dl**2)
    opt = cell_optimum(wiggly, window=0.05)
    assert opt.source == "best run" and opt.lr_opt == wiggly.loc[wiggly["loss"].idxmin(), "lr"]


def test_window_choice_is_leave_one_size_out_and_ties_go_to_the_larger_window() -> None:
    grid = landscape_grid()
    choice = choose_window(grid, windows=(0.005, 0.01, 0.02))
    truth = float(np.mean(nearest_run_gap(grid, lambda n, d: (lr_opt(n, d), b_opt(n, d)))))
    # Exact quadratics: windows with enough runs per cell predict each left-out size as well as the
    # truth does, and the tie goes to 0.02; at 0.005 some cells keep < 8 runs and fall back to their best run.
    assert choice.validation[0.01] == pytest.approx(truth, abs=1e-12) == choice.validation[0.02]
    assert choice.validation[0.005] > truth and choice.window == 0.02
    # Noise makes small windows worse: with few runs per vertex the quadratic chases the noise.
    noisy = grid.assign(loss=grid["loss"] * np.exp(4e-4 * np.random.default_rng(0).standard_normal(len(grid))))
    gaps = leave_one_size_out(noisy, lambda r: as_predictor(fit_vertex_law(r, 0.02)))
    assert len(gaps) == len(SIZES) * len(TOKENS) and all(g >= 0 for g in gaps)
    with pytest.raises(ValueError, match=">= 3 model sizes"):
        choose_window(grid[grid["N"] <= SIZES[1]])


def test_bad_window_is_refused_with_its_value() -> None:
    with pytest.raises(ValueError, match=r"window 1.5 must be in \(0, 1\)"):
        fit_step_law_vertex(landscape_grid(), window=1.5)


def test_cli_method_vertex_writes_a_law_the_ladder_reads(tmp_path: Path) -> None:
    path, out = tmp_path / "runs.csv", tmp_path / "vertex.json"
    landscape_grid().to_csv(path, index=False)
    assert main(["steplaw", "--fit", str(path), "--method", "vertex", "--n-boot", "50", "--out", str(out)]) == 0
    law = json.loads(out.read_text())
    assert law["method"] == "vertex" and law["window"] in (0.005, 0.0075, 0.01, 0.015, 0.02)
    assert law["batch_unit"] == "tokens" and law["n_cells"] == len(SIZES) * len(TOKENS)
    assert law["lr"]["exponent_N"] == pytest.approx(-0.45, abs=1e-6)
    assert law["batch"]["exponent_N"] == pytest.approx(-0.1, abs=1e-6)
    assert law["batch"]["exponent_D"] == pytest.approx(0.55, abs=1e-6)
    lo, hi = law["batch"]["exponent_D_ci"]
    assert lo - 1e-9 <= 0.55 <= hi + 1e-9
    # Two model sizes cannot validate a window: exit 2 with the reason.
    two = tmp_path / "two.csv"
    landscape_grid().query("N <= @SIZES[1]").to_csv(two, index=False)
    assert main(["steplaw", str(two), "--method", "vertex", "--n-boot", "0"]) == 2

    from harness.ladder import RECIPES

    recipe = RECIPES["default"].with_step_law(law)
    n, d = 3e7, 5e9
    assert recipe.lr.peak_lr(n, d) == pytest.approx(lr_opt(n, d), rel=1e-5)
    # The ladder's batch rule uses the N exponent too (a power-of-two number of sequences).
    seqs = recipe.batch.batch_size(n, d, seq_len=256)
    assert abs(np.log2(seqs * 256 / b_opt(n, d))) <= 0.5 + 1e-9
