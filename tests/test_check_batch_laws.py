"""scripts/check_batch_laws.py: held-out checks of `three-term`, `kaplan-steps`, `critbatch` and
`powerlines` on Step Law's released grid (docs/STEPLAW.md), and its table logic on a synthetic grid
whose answers are known."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import load_script, needs_data

from harness.fit.hyperparams import tau_batch_warnings, within_cell_slope


def _load_checks():
    # Registered in sys.modules before it runs: its dataclasses look their module up there
    # (conftest's load_script does not register, which the scripts without dataclasses do not need).
    path = Path(__file__).resolve().parents[1] / "scripts" / "check_batch_laws.py"
    spec = importlib.util.spec_from_file_location("check_batch_laws", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_batch_laws"] = module
    spec.loader.exec_module(module)
    return module


checks = _load_checks()

# The synthetic grid's truth: the three-term law in (N, batch M tokens, steps K), and Power Lines'
# lr: at every (N, D, B) the best lr is B / (wd D tau*), tau* = 0.2 (D/N)^-0.5, independent of B.
E, A, ALPHA, BB, BETA, C, GAMMA = 1.8, 400.0, 0.34, 3.0, 0.15, 8.0, 0.3
WD = 0.1


def synthetic_runs() -> pd.DataFrame:
    rows = []
    for n in (1e8, 2e8, 4e8, 8e8):
        for tpp in (10.0, 30.0, 100.0):
            d = tpp * n
            for b in 2.0 ** np.arange(15, 23):
                lr_opt = b / (WD * d * 0.2 * tpp ** -0.5)
                base = E + A / n**ALPHA + BB / b**BETA + C / (d / b) ** GAMMA
                for k in range(-3, 4):   # lr sweep centred on the optimum, factor 2 apart
                    rows.append({"N": n, "D": d, "B": b, "lr": lr_opt * 2.0**k, "loss": base * (1 + 0.01 * k * k)})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def synthetic() -> dict[str, object]:
    return checks.run_checks(synthetic_runs(), fit_max_n=5e8)


def test_table_on_a_synthetic_grid_recovers_what_it_was_made_from(synthetic) -> None:
    loss, lines, table = synthetic["loss"], synthetic["lines"], synthetic["table"]
    # 3 fit sizes x 3 budgets x 8 batches, and the 800M size held out.
    assert (loss.n_fit_rows, loss.n_held_rows) == (72, 24)
    # The rows are the law's own: three-term predicts the held-out size to fit precision; chinchilla,
    # blind to the batch, cannot.
    assert loss.rows["three-term"].max < 1e-3
    assert loss.rows["chinchilla"].mean > 10 * loss.rows["three-term"].mean
    assert loss.m_opt[1] == pytest.approx(GAMMA / (BETA + GAMMA), abs=0.01)
    assert max(loss.batch_gaps["three-term M*(D)"]) < 1e-3
    # Power Lines' lr is exact on this grid (tau_opt independent of B, slope 0), so its (lr, B) gap
    # is only the batch's, and tau_opt's fitted exponent is the truth's.
    assert lines.tau_batch_slope == pytest.approx(0.0, abs=0.02)
    assert "D/N^-0.5" in lines.tau_formula
    assert np.mean(lines.gaps) < 2e-3
    # One row per check, every number printed.
    text = checks.format_table(table)
    # The law's own steps to the held-out size's targets: off only by the coarse interpolation of the
    # "measured" steps between budgets 3x apart (what the real grid's coarseness row measures).
    assert np.mean(synthetic["crit"].law_steps["three-term"]) < 0.2
    assert len(table) == 16 and text.count("\n") == len(table) + 1
    assert "nan" not in text and "n/a" not in text
    assert {r.law for r in table} == {"three-term", "kaplan-steps", "critbatch", "powerlines"}


def test_steps_to_target_reads_the_budgets_of_each_batch() -> None:
    # Two batches, losses falling with D: tokens to reach 2.5 interpolated in log D, steps = D / B.
    runs = pd.DataFrame({"B": [1.0, 1.0, 4.0, 4.0], "D": [1e9, 1e10, 1e9, 1e10], "loss": [3.0, 2.0, 3.5, 2.5]})
    table = checks.steps_by_batch(runs, 2.5)
    np.testing.assert_allclose(table["steps"], [np.sqrt(1e9 * 1e10), 1e10 / 4.0])
    assert checks.steps_by_batch(runs, 1.9).empty   # never reached


def test_within_cell_slope_removes_each_cells_level() -> None:
    cells = pd.DataFrame({"N": [1, 1, 2, 2], "D": [1, 1, 1, 1], "B": [1.0, 4.0, 1.0, 4.0],
                          "tau_opt": [1.0, 2.0, 10.0, 20.0]})
    assert within_cell_slope(cells, "B", "tau_opt") == pytest.approx(0.5)
    assert np.isnan(within_cell_slope(cells.iloc[[0, 2]], "B", "tau_opt"))  # no cell with two batch sizes


def test_power_lines_warns_when_tau_opt_moves_with_the_batch() -> None:
    assert tau_batch_warnings(0.05, 1) == [] and tau_batch_warnings(float("nan"), 1) == []
    (loud,) = tau_batch_warnings(0.83, 1)
    assert "slope 0.83" in loud and "one weight decay" in loud and "steplaw" in loud
    (other,) = tau_batch_warnings(-0.6, 3)
    assert "slope -0.60" in other and "one weight decay" not in other


@needs_data("li2025_steplaw")
def test_step_law_grid_held_out_checks() -> None:
    """The numbers of docs/STEPLAW.md "Independent checks of the batch laws", within loose bounds;
    the two findings stated there are pinned: three-term beats a batch-blind chinchilla on held-out
    rows, and Power Lines' tau_opt is far from independent of B on this grid (its lr misses)."""
    runs = load_script("reproduce_steplaw").load_runs()
    r = checks.run_checks(runs)
    loss, crit, lines = r["loss"], r["crit"], r["lines"]
    assert (loss.n_fit_rows, loss.n_held_rows) == (120, 50)
    values = [loss.rows[k].mean for k in loss.rows] + [loss.rows[k].max for k in loss.rows]
    values += [v for errs in loss.cell_best.values() for v in errs] + [g for v in loss.batch_gaps.values() for g in v]
    values += lines.gaps + list(crit.lobo["error"]) + [v for e in crit.trend.values() for v in e]
    values += [v for e in crit.law_steps.values() for v in e]
    assert np.all(np.isfinite(values))
    assert all(not h.problems for h in loss.rows.values())
    assert loss.rows["three-term"].mean < 0.01 and loss.rows["three-term"].max < 0.03
    assert loss.rows["kaplan-steps"].mean < 0.01
    assert loss.rows["three-term"].mean < 0.5 * loss.rows["chinchilla"].mean
    assert np.mean(loss.cell_best["three-term"]) < 0.01
    for method, gaps in loss.batch_gaps.items():
        assert np.mean(gaps) < 0.002, method
    assert np.mean(lines.step_law_gaps) == pytest.approx(0.00114, abs=2e-5)   # the official refit, as reproduced
    assert 0.002 < np.mean(lines.gaps) < 0.02                                   # Power Lines' lr misses
    assert lines.tau_batch_slope > 0.5
    assert np.mean(lines.tau_at_b_opt_gaps) < np.mean(lines.gaps)   # the post-hoc diagnostic of that miss
    # critbatch: the hyperbola predicts a left-out batch better than perfect scaling, within a grid whose
    # own steps-to-target interpolation is coarse (a budget dropped moves the tokens by ~17% on average).
    assert crit.lobo["error"].mean() < 0.3 and crit.lobo["error"].mean() < crit.lobo["scaling_error"].mean()
    assert 0.05 < crit.interpolation.mean() < 0.5
    assert np.mean(crit.trend["B_crit(D_min) = c D_min^m"]) < 0.5
    for name, errors in crit.law_steps.items():
        assert len(errors) == 80 and errors.mean() < 0.3, name
