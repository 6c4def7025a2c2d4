"""IsoFLOP (Approaches 1 and 2) and hyperparameter laws on synthetic runs with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.fit.isoflop import envelope_minimum, group_budgets, isoflop_profiles
from harness.fit.laws.final_loss import chinchilla_optimal
from harness.fit.hyperparams import (
    adamw_timescale,
    critical_batch_scan,
    fit_critical_batch,
    fit_power_lines,
    fit_step_law,
    steps_to_target,
)
from harness.fit.powerlaw import fit_power_law

# Hoffmann's published Approach-3 law: N_opt ∝ C^(beta/(alpha+beta)) = C^0.4545.
E, A, B, ALPHA, BETA = 1.69, 406.4, 410.7, 0.34, 0.28
N_EXPONENT = BETA / (ALPHA + BETA)


def chinchilla_loss(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return E + A / n**ALPHA + B / d**BETA


# --------------------------------------------------------------------------------------------
# IsoFLOP


def test_isoflop_profiles_recover_the_allocation_exponent() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for C in np.logspace(18, 21, 7):
        n_star = float(chinchilla_optimal(C, A, B, ALPHA, BETA).N_opt)
        # 9 sizes spanning 1.2 decades around the optimum, offset so it is not a grid point.
        for n in n_star * np.logspace(-0.55, 0.65, 9):
            d = C / (6 * n)
            rows.append({"N": n, "D": d, "loss": chinchilla_loss(n, d) * (1 + 1e-4 * rng.standard_normal())})
    result = isoflop_profiles(pd.DataFrame(rows))
    assert len(result.optima) == 7 and result.optima["interior"].all()
    assert result.N_opt.exponent == pytest.approx(N_EXPONENT, abs=0.01)
    assert result.N_opt.exponent + result.D_opt.exponent == pytest.approx(1.0, abs=1e-9)
    C = 5.76e23
    exact = chinchilla_optimal(C, A, B, ALPHA, BETA)
    assert result.N_opt(C) == pytest.approx(float(exact.N_opt), rel=0.15)
    assert result.tokens_per_param(C) == pytest.approx(float(exact.tokens_per_param), rel=0.3)


def test_isoflop_groups_budgets_recorded_inexactly() -> None:
    C = np.array([1e19, 1.02e19, 0.99e19, 1e20, 1.03e20])
    labels = group_budgets(C, rel_tol=0.05)
    assert labels.tolist() == [0, 0, 0, 1, 1]


def test_envelope_minimum_recovers_the_allocation_exponent() -> None:
    # Loss curves of 25 model sizes: every point of a curve is read as a run of D_t tokens.
    rows = []
    for i, n in enumerate(np.logspace(7.5, 10.5, 25)):
        for d in np.logspace(np.log10(n) - 0.5, np.log10(n) + 3.5, 60):
            rows.append({"run": i, "N": n, "D": d, "loss": chinchilla_loss(n, d)})
    result = envelope_minimum(pd.DataFrame(rows), n_grid=200)
    assert result.N_opt.exponent == pytest.approx(N_EXPONENT, abs=0.01)


def test_isoflop_bad_table_names_the_column() -> None:
    with pytest.raises(ValueError, match=r"\['loss'\]"):
        isoflop_profiles(pd.DataFrame({"N": [1.0], "D": [1.0]}))
    with pytest.raises(ValueError, match="curves"):
        envelope_minimum(pd.DataFrame({"N": [1e8, 1e9], "D": [1e9, 1e10], "loss": [3.0, 2.5]}))


# --------------------------------------------------------------------------------------------
# Step Law


def step_law_runs(lr_law=(1.79, -0.713, 0.307), bs_law=(0.58, 0.571)) -> pd.DataFrame:
    """A (lr, B) grid per (N, D) cell; loss is quadratic in log lr and log B around the optimum."""
    rng = np.random.default_rng(3)
    rows = []
    for n in (1e8, 3e8, 1e9, 3e9):
        for d in (4e9, 1.6e10, 6.4e10, 2.56e11):
            lr_opt = lr_law[0] * n ** lr_law[1] * d ** lr_law[2]
            b_opt = bs_law[0] * d ** bs_law[1]
            # A fixed sweep (not centred on the optimum), as in a real grid search.
            for lr in np.exp(np.arange(np.log(1e-5), np.log(3e-2), 0.2)):
                for b in np.exp(np.arange(np.log(1e4), np.log(2e7), 0.2)):
                    loss = (chinchilla_loss(n, d) + 0.02 * np.log(lr / lr_opt) ** 2
                            + 0.01 * np.log(b / b_opt) ** 2)
                    rows.append({"N": n, "D": d, "lr": lr, "B": b,
                                 "loss": loss * (1 + 2e-5 * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_step_law_recovers_published_exponents() -> None:
    result = fit_step_law(step_law_runs(), n_bootstrap=200)
    a_n, b_d = result.lr.exponents
    assert a_n == pytest.approx(-0.713, abs=0.03)
    assert b_d == pytest.approx(0.307, abs=0.03)
    assert result.batch.exponent == pytest.approx(0.571, abs=0.03)
    lo, hi = result.lr.exponents_ci[0]
    assert lo < a_n < hi
    pred = result.predict(N=1e9, D=1e11)
    assert pred["lr"] == pytest.approx(1.79 * 1e9**-0.713 * 1e11**0.307, rel=0.25)
    assert pred["B"] == pytest.approx(0.58 * 1e11**0.571, rel=0.25)


def test_step_law_bad_table_names_the_column() -> None:
    runs = step_law_runs().drop(columns=["lr"])
    with pytest.raises(ValueError, match=r"\['lr'\]"):
        fit_step_law(runs)
    runs = step_law_runs()
    runs.loc[3, "B"] = -1.0
    with pytest.raises(ValueError, match="'B' must be > 0"):
        fit_step_law(runs)


# --------------------------------------------------------------------------------------------
# Power Lines


def power_lines_runs() -> pd.DataFrame:
    """Weight-decay sweeps at several (N, D, B); tau_opt = 0.4 (D/N)^-0.5, B_opt = 0.1 D^0.4."""
    rng = np.random.default_rng(4)
    rows = []
    lr = 3e-3
    for n in (1e8, 4e8, 1.6e9):
        for ratio in (10, 40, 160):
            d = n * ratio
            tau_opt = 0.4 * ratio**-0.5
            b_opt = 0.1 * d**0.4
            for b in b_opt * np.array([0.25, 0.6, 1.3, 3.0]):
                # A weight-decay sweep that brackets the optimum (off-centre), as a tuned sweep would.
                wd_opt = b / (lr * d * tau_opt)
                for wd in wd_opt * np.logspace(-1.1, 0.9, 9):
                    tau = b / (lr * wd * d)
                    loss = (chinchilla_loss(n, d) + 0.01 * np.log(tau / tau_opt) ** 2
                            + 0.02 * np.log(b / b_opt) ** 2)
                    rows.append({"N": n, "D": d, "B": b, "lr": lr, "wd": wd,
                                 "loss": loss * (1 + 1e-5 * rng.standard_normal())})
    return pd.DataFrame(rows)


def test_power_lines_recover_tau_and_batch_laws() -> None:
    runs = power_lines_runs()
    result = fit_power_lines(runs, n_bootstrap=100)
    assert result.tau_opt.exponent == pytest.approx(-0.5, abs=0.03)
    assert result.tau_opt.coefficient == pytest.approx(0.4, rel=0.1)
    assert result.batch_opt.exponent == pytest.approx(0.4, abs=0.03)
    # lambda_opt from tau_opt: tau(B, lr, lambda_opt, D) must equal tau_opt(D/N).
    wd = result.optimal_weight_decay(N=1e9, D=4e10, B=1e6, lr=3e-3)
    assert adamw_timescale(1e6, 3e-3, wd, 4e10) == pytest.approx(float(result.tau_opt(40.0)))


def test_power_lines_bad_table_names_the_column() -> None:
    with pytest.raises(ValueError, match=r"\['wd'\]"):
        fit_power_lines(power_lines_runs().drop(columns=["wd"]))


# --------------------------------------------------------------------------------------------
# Critical batch size


def test_critical_batch_recovers_s_min_e_min() -> None:
    rng = np.random.default_rng(5)
    s_min, e_min = 2000.0, 2000.0 * 512  # B_crit = 512
    batch = 2.0 ** np.arange(4, 14)
    steps = (s_min + e_min / batch) * np.exp(0.02 * rng.standard_normal(batch.size))
    fit = fit_critical_batch(pd.DataFrame({"B": batch, "steps": steps}))
    assert fit.B_crit == pytest.approx(512, rel=0.1)
    assert fit.S_min == pytest.approx(s_min, rel=0.1)
    # The fitted hyperbola: (S/S_min - 1)(E/E_min - 1) = 1 with E = B S.
    s = fit.steps(batch)
    np.testing.assert_allclose((s / fit.S_min - 1) * (batch * s / fit.E_min - 1), 1.0, rtol=1e-9)


def test_critical_batch_scan_from_curves() -> None:
    # Runs at 8 batch sizes; reaching loss L takes S_min(L) (1 + B_crit(L)/B) steps, with
    # B_crit(L) = 2e6 L^-4.8 (Kaplan's form) and S_min(L) = 1e3 (L - 2)^-2.
    targets = np.linspace(2.6, 4.0, 15)
    b_crit = 2e6 * targets**-4.8
    s_min = 1e3 * (targets - 2.0) ** -2
    rows = []
    for j, b in enumerate(2.0 ** np.arange(10, 18)):
        for loss, s, bc in zip(targets, s_min, b_crit):
            rows.append({"run": j, "B": b, "step": s * (1 + bc / b), "loss": loss})
    curves = pd.DataFrame(rows)
    reached = steps_to_target(curves, 3.0)
    assert len(reached) == 8
    scan = critical_batch_scan(curves, targets[1:-1])
    np.testing.assert_allclose(scan.per_target["B_crit"], b_crit[1:-1], rtol=1e-4)
    assert scan.vs_loss.exponent == pytest.approx(-4.8, abs=1e-3)


def test_critical_batch_bad_table_names_the_column() -> None:
    with pytest.raises(ValueError, match=r"\['steps'\]"):
        fit_critical_batch(pd.DataFrame({"B": [1, 2]}))


def test_power_law_bootstrap_interval_covers_truth() -> None:
    rng = np.random.default_rng(6)
    x = np.logspace(0, 3, 40)
    law = fit_power_law({"x": x}, 2.0 * x**0.5 * np.exp(0.05 * rng.standard_normal(40)),
                        n_bootstrap=300)
    lo, hi = law.exponents_ci[0]
    assert lo < 0.5 < hi and hi - lo < 0.1


# --------------------------------------------------------------------------------------------
# The CLI: `python -m harness.fit isoflop|envelope|steplaw|powerlines|critbatch TABLE [--out FILE]`


def isoflop_runs() -> pd.DataFrame:
    rows = []
    for C in np.logspace(18, 21, 5):
        n_star = float(chinchilla_optimal(C, A, B, ALPHA, BETA).N_opt)
        for n in n_star * np.logspace(-0.55, 0.65, 7):
            rows.append({"N": n, "D": C / (6 * n), "loss": chinchilla_loss(n, C / (6 * n))})
    return pd.DataFrame(rows)


def envelope_curves() -> pd.DataFrame:
    rows = []
    for i, n in enumerate(np.logspace(7.5, 10.5, 12)):
        for d in np.logspace(np.log10(n) - 0.5, np.log10(n) + 3.5, 30):
            rows.append({"run": i, "N": n, "D": d, "loss": chinchilla_loss(n, d)})
    return pd.DataFrame(rows)


def critbatch_curves() -> pd.DataFrame:
    targets = np.linspace(2.6, 4.0, 15)
    rows = []
    for j, b in enumerate(2.0 ** np.arange(10, 18)):
        for loss, s, bc in zip(targets, 1e3 * (targets - 2.0) ** -2, 2e6 * targets**-4.8):
            rows.append({"run": j, "B": b, "step": s * (1 + bc / b), "loss": loss})
    return pd.DataFrame(rows)


CLI_CASES = {
    # subcommand: (table, extra argv, check of the JSON result)
    "isoflop": (isoflop_runs, [], lambda r: r["a"] == pytest.approx(N_EXPONENT, abs=0.02) and r["n_budgets"] == 5),
    "envelope": (envelope_curves, ["--run-column", "run"],
                 lambda r: r["a"] == pytest.approx(N_EXPONENT, abs=0.03) and len(r["optima"]) == r["n_budgets"]),
    "steplaw": (step_law_runs, ["--n-boot", "50"],
                lambda r: r["lr"]["exponent_N"] == pytest.approx(-0.713, abs=0.03) and "lr_formula" in r),
    "powerlines": (power_lines_runs, ["--n-boot", "50"],
                   lambda r: r["tau_opt"]["exponent_D/N"] == pytest.approx(-0.5, abs=0.03) and r["cells"]),
    "critbatch": (critbatch_curves, ["--targets", "2.8", "3.0", "3.2", "3.4"],
                  lambda r: len(r["per_target"]) == 4 and r["B_crit_vs_loss"]["exponent_L"] == pytest.approx(-4.8, abs=1e-3)),
}


@pytest.mark.parametrize("mode", sorted(CLI_CASES))
def test_analysis_subcommands_print_and_write_json(mode, tmp_path, capsys) -> None:
    import json

    from harness.fit.cli import main

    make, extra, check = CLI_CASES[mode]
    table = tmp_path / f"{mode}.csv"
    make().to_csv(table, index=False)
    out = tmp_path / "results" / f"{mode}.json"
    assert main([mode, str(table), *extra, "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert json.loads(out.read_text()) == printed
    assert check(printed), printed


@pytest.mark.parametrize("mode", sorted(CLI_CASES))
def test_analysis_subcommands_bad_table_exit_2_and_write_nothing(mode, tmp_path, capsys) -> None:
    from harness.fit.cli import main

    make, extra, _ = CLI_CASES[mode]
    table = tmp_path / "no_loss.csv"
    make().drop(columns=["loss"]).to_csv(table, index=False)
    out = tmp_path / "result.json"
    assert main([mode, str(table), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {table}: ") and "'loss'" in err
    assert not out.exists()
    missing = tmp_path / "absent.csv"
    assert main([mode, str(missing), *extra, "--out", str(out)]) == 2
    assert f"{missing}: file not found" in capsys.readouterr().err and not out.exists()
