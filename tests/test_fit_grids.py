"""Issue 13: grids are validated, bootstraps resample cells, isoFLOP D_opt uses the table's own
FLOPs per token. Synthetic sweeps with known optima."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit.__main__ import main
from harness.fit.hyperparams import GridError, fit_step_law, validate_grid
from harness.fit.isoflop import isoflop_profiles
from harness.fit.powerlaw import fit_power_law


def step_law_grid(lr_factors=(0.25, 0.5, 1.0, 2.0, 4.0), b_factors=(0.25, 0.5, 1.0, 2.0, 4.0)) -> pd.DataFrame:
    """A convex landscape in (log lr, log B) around lr_opt = 0.5 N^-0.5 D^0.1, B_opt = 2 D^0.5."""
    rows = []
    for n in (1e7, 3e7, 1e8):
        for d in (1e9, 4e9):
            lr_opt, b_opt = 0.5 * n**-0.5 * d**0.1, 2.0 * d**0.5
            for fl in lr_factors:
                for fb in b_factors:
                    loss = 3.0 + 0.01 * np.log(fl) ** 2 + 0.005 * np.log(fb) ** 2
                    rows.append({"N": n, "D": d, "lr": lr_opt * fl, "B": b_opt * fb, "loss": loss})
    return pd.DataFrame(rows)


def test_a_good_grid_recovers_the_law_and_bootstraps_cells() -> None:
    result = fit_step_law(step_law_grid(), n_bootstrap=200)
    assert result.warnings == ()
    assert result.lr.exponents == pytest.approx((-0.5, 0.1), abs=1e-6)
    assert result.batch.exponents == pytest.approx((0.5,), abs=1e-6)
    assert result.summary()["batch_unit"] == "tokens" and result.summary()["n_cells"] == 6


def test_an_edge_optimum_names_the_cell() -> None:
    edge = step_law_grid(lr_factors=(1.0, 2.0, 4.0))  # the best lr is the smallest swept
    with pytest.raises(GridError) as e:
        fit_step_law(edge, n_bootstrap=0)
    assert "cell (N=1e+07, D=1e+09)" in str(e.value) and "smallest lr" in str(e.value)
    result = fit_step_law(edge, n_bootstrap=0, allow_edge=True)
    assert len(result.warnings) == 6 and all("smallest lr" in w for w in result.warnings)


def test_too_few_runs_in_a_cell() -> None:
    grid = step_law_grid()
    sparse = pd.concat([grid[grid["N"] != 1e8], grid[grid["N"] == 1e8].nsmallest(2, "loss")])
    with pytest.raises(GridError, match=r"cell \(N=1e\+08, D=\S+\) has 1 run"):
        validate_grid(sparse, ("N", "D"), ("lr", "B"), "Step Law fit")


def test_cli_refuses_an_edge_grid_and_allow_edge_warns(tmp_path: Path, capsys) -> None:
    path = tmp_path / "runs.csv"
    step_law_grid(b_factors=(1.0, 2.0, 4.0)).to_csv(path, index=False)
    assert main(["steplaw", "--fit", str(path), "--n-boot", "0"]) == 2
    assert "smallest B" in capsys.readouterr().err
    out = tmp_path / "law.json"
    assert main(["steplaw", "--fit", str(path), "--n-boot", "0", "--allow-edge", "--out", str(out)]) == 0
    assert "warning: Step Law fit: cell" in capsys.readouterr().err
    assert len(json.loads(out.read_text())["warnings"]) == 6


def test_batch_in_sequences_is_converted_to_tokens(tmp_path: Path) -> None:
    grid = step_law_grid()
    path = tmp_path / "seqs.csv"
    grid.assign(B=grid["B"] / 256).to_csv(path, index=False)
    out = tmp_path / "law.json"
    assert main(["steplaw", str(path), "--n-boot", "0", "--batch-unit", "sequences", "--seq-len", "256",
                 "--out", str(out)]) == 0
    assert json.loads(out.read_text())["batch"]["coefficient"] == pytest.approx(2.0, rel=1e-6)
    assert main(["steplaw", str(path), "--n-boot", "0", "--batch-unit", "sequences"]) == 2


def test_bootstrap_over_groups_is_wider_when_points_within_a_group_agree() -> None:
    """Ten copies of each of 5 points: resampling points sees 50 'independent' points and a narrow
    interval; resampling the 5 groups gives the honest, wider one."""
    rng = np.random.default_rng(0)
    x = np.repeat(np.geomspace(1, 100, 5), 10)
    y = 2.0 * x**0.5 * np.repeat(np.exp(0.1 * rng.standard_normal(5)), 10)
    groups = np.repeat(np.arange(5), 10)
    by_points = fit_power_law({"x": x}, y, n_bootstrap=500, seed=1)
    by_groups = fit_power_law({"x": x}, y, n_bootstrap=500, seed=1, groups=groups)
    assert by_groups.exponent == by_points.exponent  # same point estimate
    width = lambda law: law.exponents_ci[0][1] - law.exponents_ci[0][0]  # noqa: E731
    assert width(by_groups) > 2 * width(by_points)


def _isoflop_table(flops_per_token) -> pd.DataFrame:
    rows = []
    for c in (1e17, 1e18, 1e19):
        n_opt = 0.1 * c**0.5
        for f in (0.25, 0.5, 1.0, 2.0, 4.0):
            n = n_opt * f
            d = c / flops_per_token(n)
            rows.append({"N": n, "D": d, "C": c, "flops_per_token": flops_per_token(n),
                         "loss": 2.0 + 0.05 * np.log(f) ** 2})
    return pd.DataFrame(rows)


def test_isoflop_d_opt_uses_the_tables_flops_per_token() -> None:
    fpt = lambda n: 6.0 * n + 2e6  # noqa: E731 -- an attention/vocabulary term 6N leaves out
    result = isoflop_profiles(_isoflop_table(fpt))
    for _, row in result.optima.iterrows():
        assert row["N_opt"] == pytest.approx(0.1 * row["C"] ** 0.5, rel=1e-6)
        assert row["D_opt"] == pytest.approx(row["C"] / fpt(row["N_opt"]), rel=1e-6)
        assert row["D_opt"] < row["C"] / (6 * row["N_opt"])  # 6N would overstate it


def test_isoflop_leaves_extrapolated_vertices_out_of_the_fit() -> None:
    table = _isoflop_table(lambda n: 6.0 * n)
    # At the largest budget, sample only sizes below the optimum: its vertex is an extrapolation.
    top = table["C"] == 1e19
    table.loc[top, "N"] = table.loc[top, "N"] / 16
    table.loc[top, "D"] = 1e19 / (6 * table.loc[top, "N"])
    table.loc[top, "loss"] = 2.0 + 0.05 * np.log(table.loc[top, "N"] / (0.1 * 1e19**0.5)) ** 2
    result = isoflop_profiles(table)
    assert list(result.optima["interior"]) == [True, True, False]
    assert result.N_opt.n_points == 2 and result.N_opt.exponent == pytest.approx(0.5, abs=1e-6)
    assert "1e+19" in result.summary()["notes"][0]
