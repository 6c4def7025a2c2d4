"""Power Scheduler fit (harness/fit/power_scheduler.py) and the CLI's `powersched`: a and b recovered
from synthetic WSD sweeps whose losses come from a landscape written here (not from the fit's
code), units (B in tokens per step vs sequences), edge optima named, bootstrap intervals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit.__main__ import main
from harness.fit.hyperparams import GridError
from harness.fit.power_scheduler import fit_power_scheduler

A_TRUE, B_TRUE, SEQ_LEN = 3.0, -0.45, 64


def wsd_sweep(lr_factors=(0.3, 0.55, 1.0, 1.8, 3.2), noise: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Final losses of WSD runs: loss = L(n) + 0.04 (ln lr - ln lr_opt)^2 with lr_opt = a beta n^b,
    at 3 batch sizes (sequences) x 4 token counts; B written in tokens per step as harness.collect
    writes it, with a seq_len column. The LR grid is off-centre (factors not symmetric about 1) so
    the fit must interpolate, not read the centre."""
    rng = np.random.default_rng(seed)
    rows = []
    for beta in (4, 8, 16):
        for n in (2e5, 8e5, 3.2e6, 1.28e7):
            lr_opt = A_TRUE * beta * n**B_TRUE
            for f in lr_factors:
                lr = lr_opt * f * 1.1
                loss = 3.0 + 5.0 * n**-0.2 + 0.04 * np.log(lr / lr_opt) ** 2 + noise * rng.standard_normal()
                rows.append({"N": 1e6, "D": n, "B": beta * SEQ_LEN, "seq_len": SEQ_LEN, "lr": lr, "loss": loss})
    return pd.DataFrame(rows)


def test_recovers_a_and_b_from_an_exact_landscape() -> None:
    result = fit_power_scheduler(wsd_sweep(), n_bootstrap=0)
    assert result.a == pytest.approx(A_TRUE, rel=1e-6) and result.b == pytest.approx(B_TRUE, abs=1e-6)
    assert result.free.exponents == pytest.approx((1.0, B_TRUE), abs=1e-6)  # linear in beta, as the law says
    assert len(result.cells) == 12 and result.warnings == ()
    assert result.optimal_lr(8, 8e5) == pytest.approx(A_TRUE * 8 * 8e5**B_TRUE)


def test_noisy_sweep_gives_intervals_that_cover_the_truth() -> None:
    result = fit_power_scheduler(wsd_sweep(lr_factors=(0.25, 0.4, 0.63, 1.0, 1.6, 2.5, 4.0), noise=0.002, seed=3),
                                 n_bootstrap=400, seed=1)
    s = result.summary()
    assert s["a_ci"][0] < A_TRUE < s["a_ci"][1] and s["b_ci"][0] < B_TRUE < s["b_ci"][1]
    assert abs(result.b - B_TRUE) < 0.05 and abs(np.log(result.a / A_TRUE)) < 0.5
    assert s["batch_unit"] == "sequences" and s["schedule_overrides"][0] == "schedule=power"


def test_batch_units_are_explicit() -> None:
    sweep = wsd_sweep()
    in_sequences = sweep.assign(B=sweep["B"] / SEQ_LEN).drop(columns="seq_len")
    a = fit_power_scheduler(in_sequences, batch_unit="sequences", n_bootstrap=0).a
    assert a == pytest.approx(A_TRUE, rel=1e-6)
    # B in tokens read as sequences would give a SEQ_LEN times too small:
    wrong = fit_power_scheduler(sweep.drop(columns="seq_len"), batch_unit="sequences", n_bootstrap=0).a
    assert wrong == pytest.approx(A_TRUE / SEQ_LEN, rel=1e-6)
    with pytest.raises(ValueError, match="--seq-len"):
        fit_power_scheduler(sweep.drop(columns="seq_len"), n_bootstrap=0)
    assert fit_power_scheduler(sweep.drop(columns="seq_len"), seq_len=SEQ_LEN, n_bootstrap=0).a == pytest.approx(A_TRUE)


def test_an_edge_optimum_names_the_cell() -> None:
    edge = wsd_sweep(lr_factors=(1.5, 2.5, 4.0))  # every best LR is the smallest swept
    with pytest.raises(GridError) as e:
        fit_power_scheduler(edge, n_bootstrap=0)
    assert "cell (N=1e+06, B=4, D=2e+05)" in str(e.value) and "smallest lr" in str(e.value)
    result = fit_power_scheduler(edge, n_bootstrap=0, allow_edge=True)
    assert len(result.warnings) == 12


def test_one_token_count_is_refused() -> None:
    sweep = wsd_sweep()
    with pytest.raises(ValueError, match="at least 2"):
        fit_power_scheduler(sweep[sweep["D"] == 2e5], n_bootstrap=0)


def test_cli_writes_the_json_and_refuses_an_edge_grid(tmp_path: Path, capsys) -> None:
    good, edge = tmp_path / "runs.csv", tmp_path / "edge.csv"
    wsd_sweep().to_csv(good, index=False)
    wsd_sweep(lr_factors=(0.1, 0.2, 0.4)).to_csv(edge, index=False)
    out = tmp_path / "ps.json"
    assert main(["powersched", str(good), "--n-boot", "50", "--out", str(out)]) == 0
    fit = json.loads(out.read_text())
    assert fit["a"] == pytest.approx(A_TRUE, rel=1e-6) and fit["b"] == pytest.approx(B_TRUE, abs=1e-6)
    assert len(fit["cells"]) == 12 and fit["a_ci"][0] <= fit["a"] <= fit["a_ci"][1]
    capsys.readouterr()
    assert main(["powersched", "--fit", str(edge), "--n-boot", "0"]) == 2
    assert "largest lr" in capsys.readouterr().err and not (tmp_path / "edge.json").exists()
    assert main(["powersched", str(edge), "--n-boot", "0", "--allow-edge"]) == 0
