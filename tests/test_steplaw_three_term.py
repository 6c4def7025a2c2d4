"""Schaipp 2026's three-term law L(N, M, K) = E + A/N^alpha + B/M^beta + C/K^gamma
(harness/fit/laws/three_term.py): its closed-form optimal batch, recovery of its own synthetic
runs, the CLI, and Step Law's public grid against the paper's quoted M* = 0.667 D^0.566."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import load_script, needs_data
from harness.fit.__main__ import main
from harness.fit.fitter import fit_law
from harness.fit.laws.three_term import ThreeTermLaw
from harness.fit.registry import SCALING_LAWS

# e, a, b, c (logs of E, A, B, C), alpha, beta, gamma: Chinchilla-like magnitudes.
TRUTH = np.array([np.log(1.8), np.log(400.0), np.log(30.0), np.log(60.0), 0.34, 0.35, 0.45])


def runs() -> pd.DataFrame:
    n, m, k = np.meshgrid([1e8, 2e8, 4e8, 8e8], [6.5e4, 2.6e5, 1e6, 4e6], [2e3, 8e3, 3.2e4, 1.28e5])
    return pd.DataFrame({"N": n.ravel(), "B": m.ravel(), "step": k.ravel()})


def test_the_law_is_its_formula_and_the_optimal_batch_minimizes_it_at_fixed_tokens() -> None:
    law, table = ThreeTermLaw(), runs()
    loss = law.predict(TRUTH, law.prepare(table))
    want = 1.8 + 400 / table["N"] ** 0.34 + 30 / table["B"] ** 0.35 + 60 / table["step"] ** 0.45
    np.testing.assert_allclose(loss, want, rtol=1e-12)
    # At D = 1e10 tokens, scan M (K = D / M): the scan's minimum is the closed form M*(D).
    d = 1e10
    m = np.exp(np.linspace(np.log(1e3), np.log(1e8), 20001))
    scan = law.predict(TRUTH, law.prepare({"N": np.full_like(m, 1e8), "B": m, "step": d / m}))
    assert m[np.argmin(scan)] == pytest.approx(float(law.optimal_batch(TRUTH, d)), rel=1e-3)
    derived = law.derived(TRUTH)
    assert derived["M_opt_exponent"] == pytest.approx(0.45 / 0.8)
    assert derived["D_exponent_at_M_opt"] == pytest.approx(0.35 * 0.45 / 0.8)
    # theta (S, P) scores S starts at once.
    assert law.predict(np.stack([TRUTH, TRUTH]), law.prepare(table)).shape == (2, len(table))


def test_analytic_gradient_matches_finite_differences() -> None:
    law = ThreeTermLaw()
    data = law.prepare(runs())
    theta = TRUTH + 0.05
    log_l, grad = law.log_gradient(theta, data)
    eps = 1e-6
    for j in range(len(theta)):
        step = np.zeros_like(theta)
        step[j] = eps
        fd = (law.predict_log(theta + step, data) - law.predict_log(theta - step, data)) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-5, atol=1e-9)


def test_recovers_its_parameters_and_optimal_batch_from_noisy_runs() -> None:
    law, table = ThreeTermLaw(), runs()
    data = law.prepare(table)
    y = law.predict(TRUTH, data) * np.exp(0.001 * np.random.default_rng(0).standard_normal(len(table)))
    fit = fit_law(law, data, y)
    assert fit.metrics["prede"] < 0.002
    for name, value in (("alpha", 0.34), ("beta", 0.35), ("gamma", 0.45)):
        assert fit.derived[name] == pytest.approx(value, abs=0.03), name
    assert fit.derived["M_opt_exponent"] == pytest.approx(0.5625, abs=0.01)


def test_registered_and_fitted_by_the_cli(tmp_path: Path) -> None:
    assert SCALING_LAWS["three-term"]().name == "three-term"
    law, table = ThreeTermLaw(), runs()
    table["loss"] = law.predict(TRUTH, law.prepare(table))
    path, out = tmp_path / "runs.csv", tmp_path / "fit"
    table.to_csv(path, index=False)
    assert main(["scaling", "--law", "three-term", "--fit", str(path), "--out", str(out)]) == 0
    params = json.loads((out / "params.json").read_text())
    assert params["law"] == "three-term" and params["derived"]["M_opt_exponent"] == pytest.approx(0.5625, abs=0.01)
    # A table without the steps column is refused, naming it.
    table.drop(columns="step").to_csv(path, index=False)
    assert main(["scaling", "--law", "three-term", "--fit", str(path), "--out", str(tmp_path / "bad")]) == 2


@needs_data("li2025_steplaw")
def test_step_law_grid_against_the_papers_optimal_batch() -> None:
    """An independent check, and it does not match: the paper's M* exponent is 0.566 (as quoted by
    secondary summaries; its run selection was not reachable). Ours, on the best-lr run of each
    (N, D, B) of Step Law's released grid, is 0.656; the official OLS on the same grid gives 0.6125.
    Pinned so a change shows; docs/STEPLAW.md says what is known and what is not."""
    r = load_script("reproduce_steplaw_three_term").reproduce()
    d = r["derived"]
    assert r["n_rows"] == 170 and r["metrics"]["prede"] < 0.005
    assert d["M_opt_exponent"] == pytest.approx(0.656, abs=0.005)
    assert abs(d["M_opt_exponent"] - r["paper_M_opt"][1]) > 0.05   # the disagreement, stated
    assert r["official_B_opt"][1] == pytest.approx(0.6125, abs=0.001)
