"""Power Lines completed (harness/fit/hyperparams.py): B_crit(D) from runs that sweep D at fixed
(N, B), and the Pareto choice of (N, D, B) under a step budget, checked against a brute-force
search over a grid written here."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit.__main__ import main
from harness.fit.hyperparams import ChinchillaLoss, critical_batch_from_runs, pareto_choice
from harness.fit.powerlaw import PowerLaw

LOSS = ChinchillaLoss(E=1.8, A=400.0, alpha=0.34, B=400.0, beta=0.28)
C_CRIT, M_CRIT = 20.0, 0.45  # B_crit = 20 D^0.45 tokens (1e5 at D = 2e8, 9e5 at D = 2e10)
BATCHES = (3e4, 1.2e5, 4.8e5, 1.9e6)


def b_crit(d):
    return C_CRIT * np.asarray(d, float) ** M_CRIT


def small_batch_tokens(d: float, b: float) -> float:
    """D_min with d = D_min (1 + b / B_crit(D_min)): what a run of d tokens at batch b is worth."""
    from scipy.optimize import brentq

    return float(np.exp(brentq(lambda x: np.log(np.exp(x) * (1 + b / b_crit(np.exp(x)))) - np.log(d),
                               np.log(d) - 30, np.log(d))))


def batch_runs(d_values=np.geomspace(4e8, 4e10, 16)) -> pd.DataFrame:
    """Final losses at (N, B, D) on one shared D grid: a run of D tokens at batch B is worth D_min
    small-batch tokens, D = D_min (1 + B / B_crit(D_min)), and reaches L(N, D_min)."""
    rows = []
    for n in (2e7, 8e7):
        for b in BATCHES:
            for d in d_values:
                rows.append({"N": n, "B": b, "D": d, "loss": float(LOSS(n, small_batch_tokens(d, b)))})
    return pd.DataFrame(rows)


def test_b_crit_power_law_is_recovered_from_final_losses() -> None:
    from harness.fit.powerlaw import fit_power_law

    points = critical_batch_from_runs(batch_runs())
    assert len(points) == 8 and set(points["N"]) == {2e7, 8e7}
    # each point: B_crit at its D_min as the generator defined it, up to log-D interpolation
    assert np.allclose(points["B_crit"], b_crit(points["D_min"]), rtol=0.03)
    law = fit_power_law({"D": points["D_min"].to_numpy()}, points["B_crit"].to_numpy())
    assert law.exponent == pytest.approx(M_CRIT, abs=0.02) and law.coefficient == pytest.approx(C_CRIT, rel=0.3)


def test_b_crit_needs_a_d_sweep() -> None:
    runs = batch_runs()
    with pytest.raises(ValueError, match="swept over >= 2 values of D"):
        critical_batch_from_runs(runs.groupby(["N", "B"]).head(1))


def brute_force(max_steps: float, target: float) -> dict[str, float]:
    """Least 6ND over a dense (N, B) grid whose run reaches `target` within `max_steps` steps."""
    best = None
    for n in np.geomspace(1e6, 1e12, 1200):
        gap = target - LOSS.E - LOSS.A / n**LOSS.alpha
        if gap <= 0:
            continue
        d_min = (LOSS.B / gap) ** (1 / LOSS.beta)
        for b in np.geomspace(1e3, 1e10, 1500):
            d = d_min * (1 + b / b_crit(d_min))
            if d / b <= max_steps and (best is None or 6 * n * d < best["C"]):
                best = {"N": n, "B": b, "D": d, "C": 6 * n * d}
    return best


LAW = PowerLaw(inputs=("D",), coefficient=C_CRIT, exponents=(M_CRIT,))


def unconstrained() -> dict[str, float]:
    return pareto_choice(LOSS, LAW, 2.6, max_steps=None).choice


@pytest.mark.parametrize("budget", [0.5, 3.0])
def test_pareto_choice_matches_a_brute_force_search(budget: float) -> None:
    max_steps = budget * unconstrained()["S_min"]  # a time budget tighter / looser than the compute optimum's S_min
    choice = pareto_choice(LOSS, LAW, target_loss=2.6, max_steps=max_steps,
                           n_values=np.geomspace(1e6, 1e12, 4000)).choice
    ref = brute_force(max_steps, 2.6)
    assert choice["steps"] == pytest.approx(max_steps, rel=1e-9)
    assert choice["C"] == pytest.approx(ref["C"], rel=0.01)
    assert choice["N"] == pytest.approx(ref["N"], rel=0.05)


def test_a_tighter_time_budget_picks_a_larger_model_on_fewer_tokens() -> None:
    # S_min = D_min / B_crit(D_min) grows as D_min^(1 - 0.45): fewer tokens reach the loss in fewer steps
    loose = unconstrained()
    tight = pareto_choice(LOSS, LAW, 2.6, max_steps=0.5 * loose["S_min"]).choice
    assert tight["N"] > loose["N"] and tight["tokens_per_param"] < loose["tokens_per_param"]
    assert tight["C"] > loose["C"] and tight["B"] / tight["B_crit"] > loose["B"] / loose["B_crit"]
    with pytest.raises(ValueError, match="no model size reaches"):
        pareto_choice(LOSS, LAW, 2.6, max_steps=10)


def powerlines_table() -> pd.DataFrame:
    """A full Power Lines sweep: the B_crit landscape above (shared D grid) with an lr / wd sweep
    per (N, D, B) around tau_opt = 0.3 (D/N)^-0.5 (a valley in log tau that leaves the best loss
    of each cell as it was)."""
    rows = []
    for r in batch_runs(np.geomspace(4e8, 4e10, 8)).itertuples():
        tau_opt = 0.3 * (r.D / r.N) ** -0.5
        for f in (0.5, 1.0, 2.0):
            lr = 1e-3
            rows.append({"N": r.N, "D": r.D, "B": r.B, "lr": lr, "wd": r.B / (lr * r.D * tau_opt * f),
                         "loss": r.loss + 0.01 * np.log(f) ** 2})
    return pd.DataFrame(rows)


def test_cli_powerlines_reports_b_crit_and_the_pareto_choice(tmp_path: Path) -> None:
    path, out = tmp_path / "runs.csv", tmp_path / "pl.json"
    powerlines_table().to_csv(path, index=False)
    law = "E=1.8,A=400,alpha=0.34,B=400,beta=0.28"
    assert main(["powerlines", str(path), "--n-boot", "50", "--allow-edge", "--target-loss", "2.6",
                 "--loss-law", law, "--max-steps", "1e6", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_crit"]["exponent_D"] == pytest.approx(M_CRIT, abs=0.05)
    assert result["tau_opt"]["exponent_D/N"] == pytest.approx(-0.5, abs=0.05)
    assert result["pareto"]["choice"]["steps"] == pytest.approx(1e6)
    assert main(["powerlines", str(path), "--n-boot", "0", "--allow-edge", "--target-loss", "2.6"]) == 2
    assert main(["powerlines", str(path), "--n-boot", "0", "--allow-edge", "--max-steps", "1e6"]) == 2
    # The compute-budget twin: the least loss for the compute the target needed, within the same steps.
    spent = result["pareto"]["choice"]["C"]
    assert main(["powerlines", str(path), "--n-boot", "50", "--allow-edge", "--compute", repr(spent),
                 "--loss-law", law, "--max-steps", "1e6", "--out", str(out)]) == 0
    at_compute = json.loads(out.read_text())["pareto"]["choice"]
    assert at_compute["loss"] == pytest.approx(2.6, abs=2e-3) and at_compute["steps"] == pytest.approx(1e6)
    assert main(["powerlines", str(path), "--n-boot", "0", "--allow-edge", "--compute", "1e20",
                 "--loss-law", law]) == 2  # a compute budget without a time budget
    assert main(["powerlines", str(path), "--n-boot", "0", "--allow-edge", "--compute", "1e20", "--target-loss", "2.6",
                 "--loss-law", law, "--max-steps", "1e6"]) == 2


def test_pareto_at_compute_matches_a_brute_force_search_and_inverts_pareto_choice() -> None:
    from harness.fit.hyperparams import pareto_at_compute

    ref = pareto_choice(LOSS, LAW, target_loss=2.6, max_steps=0.5 * unconstrained()["S_min"],
                        n_values=np.geomspace(1e6, 1e12, 4000)).choice
    # The least loss at the compute and steps that the least-compute choice for loss 2.6 needed is 2.6, at that N.
    got = pareto_at_compute(LOSS, LAW, compute=ref["C"], max_steps=ref["steps"],
                            n_values=np.geomspace(1e6, 1e12, 4000)).choice
    assert got["loss"] == pytest.approx(2.6, abs=2e-4)
    assert got["N"] == pytest.approx(ref["N"], rel=0.05)
    assert got["B"] == pytest.approx(ref["B"], rel=0.05)
    # Brute force over (N, B) at that compute: no batch >= D / S gives a lower loss than the choice.
    best = np.inf
    for n in np.geomspace(ref["N"] / 30, ref["N"] * 30, 300):
        d = ref["C"] / (6 * n)
        for d_min in np.geomspace(d * 1e-4, d, 800):
            batch = (d / d_min - 1) * b_crit(d_min)
            if batch >= d / ref["steps"]:
                best = min(best, float(LOSS(n, d_min)))
    assert got["loss"] <= best + 1e-4
    with pytest.raises(ValueError, match="positive"):
        pareto_at_compute(LOSS, LAW, compute=0, max_steps=10)
