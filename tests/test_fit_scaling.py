"""Final-loss laws over (N, D): vectorized predict, parameter recovery, Chinchilla reproduction."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from conftest import load_script, needs_data

from harness.fit.fitter import fit_law
from harness.fit.laws.downstream import GadreErrorLaw
from harness.fit.laws.final_loss import (
    FINAL_LOSS_LAWS,
    ChinchillaLaw,
    ComputeLaw,
    FarseerLaw,
    GadreLaw,
    chinchilla_optimal,
)


def _load_reproduce_script():
    return load_script("reproduce_chinchilla")


def grid_table() -> pd.DataFrame:
    """36 runs: 6 model sizes (30M-10B) x 6 tokens-per-parameter ratios (5-160)."""
    n, ratio = np.meshgrid(np.logspace(7.5, 10, 6), np.array([5, 10, 20, 40, 80, 160.0]))
    return pd.DataFrame({"N": n.ravel(), "D": (n * ratio).ravel()})


# Ground truths near published fits: Besiroglu's Chinchilla, Kaplan 2020, Gadre's RedPajama
# fit, and a Farseer-style surface whose D exponent and coefficient grow with N.
TRUTHS = {
    "chinchilla": [np.log(1.8), np.log(480.0), np.log(2100.0), 0.35, 0.37],
    "kaplan": [np.log(8.8e13), np.log(5.4e13), 0.076, 0.095],
    "gadre": [np.log(1.84), np.log(213.0), np.log(367.0), 0.136],
    "farseer": [0.1, -1.0, 0.3, 0.5, 7.5, 0.2, 0.2, 0.55, -0.35],
    "compute": [np.log(1.7), np.log(1600.0), 0.16],
}


@pytest.mark.parametrize("name", sorted(FINAL_LOSS_LAWS))
def test_predict_is_vectorized_over_starts(name: str) -> None:
    law = FINAL_LOSS_LAWS[name]()
    data = law.prepare(grid_table())
    starts = law.initial_grid()[:: max(1, len(law.initial_grid()) // 7)][:7]
    batched = law.predict(starts, data)
    assert batched.shape == (len(starts), 36)
    np.testing.assert_allclose(batched, np.stack([law.predict(s, data) for s in starts]),
                               rtol=1e-12)
    assert law.predict(np.asarray(TRUTHS[name]), data).shape == (36,)


@pytest.mark.parametrize("name", sorted(FINAL_LOSS_LAWS))
def test_analytic_jacobian_matches_finite_differences(name: str) -> None:
    law = FINAL_LOSS_LAWS[name]()
    data = law.prepare(grid_table())
    theta = np.asarray(TRUTHS[name])
    pred, jac = law.jacobian(theta, data)
    np.testing.assert_allclose(pred, law.predict(theta, data), rtol=1e-12)
    for j in range(theta.size):
        h = 1e-6 * max(1.0, abs(theta[j]))
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        fd = (law.predict(up, data) - law.predict(down, data)) / (2 * h)
        np.testing.assert_allclose(jac[:, j], fd, rtol=1e-5, atol=1e-9, err_msg=law.param_names[j])


def test_chinchilla_grid_is_hoffmanns() -> None:
    # Scoring this grid in one call is timed by scripts/bench_fit.py (docs/BENCHMARKS.md).
    law = ChinchillaLaw()
    grid = law.initial_grid()
    assert grid.shape == (4500, 5)
    names = law.param_names
    # Hoffmann et al.: alpha, beta in {0, 0.5, ..., 2}, e in {-1, -0.5, ..., 1}, a, b in {0, 5, ..., 25}.
    assert sorted(set(grid[:, names.index("alpha")])) == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert sorted(set(grid[:, names.index("e")])) == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert sorted(set(grid[:, names.index("a")])) == pytest.approx([0.0, 5.0, 10.0, 15.0, 20.0, 25.0])
    data = law.prepare(grid_table().sample(240, replace=True, random_state=0))
    assert law.predict(grid, data).shape == (4500, 240)


@pytest.mark.parametrize("name,noise", [("chinchilla", 0.002), ("kaplan", 0.002),
                                        ("gadre", 0.002), ("compute", 0.002)])
def test_recovers_parameters_from_noisy_synthetic_data(name: str, noise: float) -> None:
    law = FINAL_LOSS_LAWS[name]()
    data = law.prepare(grid_table())
    truth = np.asarray(TRUTHS[name])
    y = law.predict(truth, data)
    y_noisy = y * np.exp(noise * np.random.default_rng(1).standard_normal(y.size))
    fit = fit_law(law, data, y_noisy)
    # Exponents and the floor are identified; amplitudes trade off along a flat direction, so
    # they are checked through the predictions instead.
    checks = {
        "chinchilla": {"e": 0.01, "alpha": 0.03, "beta": 0.03},
        "kaplan": {"alpha_N": 0.05, "alpha_D": 0.05},
        "gadre": {"log_E": 0.03, "eta": 0.03},
        "compute": {"e": 0.01, "a": 0.01, "alpha": 0.02},
    }[name]
    for param, rel in checks.items():
        i = law.param_names.index(param)
        assert fit.theta[i] == pytest.approx(truth[i], rel=rel), param
    assert np.max(np.abs(law.predict(fit.theta, data) / y - 1)) < 3 * noise


def test_farseer_recovers_parameters_from_exact_data() -> None:
    # Nine parameters: recovery needs noiseless data and more refined starts than the default.
    law = FarseerLaw()
    data = law.prepare(grid_table())
    truth = np.asarray(TRUTHS["farseer"])
    fit = fit_law(law, data, law.predict(truth, data), n_refine=8)
    np.testing.assert_allclose(fit.theta, truth, atol=0.02)
    far = law.prepare(pd.DataFrame({"N": [3e10, 1e11], "D": [6e11, 3e12]}))
    np.testing.assert_allclose(law.predict(fit.theta, far), law.predict(truth, far), rtol=1e-3)


def test_gadre_is_chinchilla_with_a_shared_exponent() -> None:
    table = grid_table()
    gadre, chin = GadreLaw(), ChinchillaLaw()
    log_e, log_a, log_b, eta = TRUTHS["gadre"]
    # E + a 6^-eta N^-2eta + b 6^-eta D^-2eta
    as_chinchilla = [log_e, log_a - eta * np.log(6), log_b - eta * np.log(6), 2 * eta, 2 * eta]
    np.testing.assert_allclose(gadre.predict(np.asarray(TRUTHS["gadre"]), gadre.prepare(table)),
                               chin.predict(np.asarray(as_chinchilla), chin.prepare(table)),
                               rtol=1e-12)
    derived = gadre.derived(TRUTHS["gadre"])
    assert derived["code_p"] == pytest.approx(-2 * eta)


def test_compute_law_uses_c_column_or_6nd() -> None:
    law = ComputeLaw()
    table = grid_table()
    from_nd = law.prepare(table)["C"]
    np.testing.assert_allclose(from_nd, 6 * table["N"] * table["D"])
    np.testing.assert_allclose(law.prepare(table.assign(C=1.0 + table.index))["C"],
                               1.0 + table.index)
    with pytest.raises(ValueError, match="'C'.*'N' and 'D'"):
        law.prepare(pd.DataFrame({"N": [1e9]}))


def test_bad_input_names_the_column() -> None:
    with pytest.raises(ValueError, match="needs column 'D'"):
        ChinchillaLaw().prepare(pd.DataFrame({"N": [1e9], "loss": [2.0]}))
    with pytest.raises(ValueError, match="column 'N' must be finite and > 0"):
        ChinchillaLaw().prepare(pd.DataFrame({"N": [1e9, -1.0], "D": [1e10, 1e10]}))


def test_chinchilla_allocation_is_the_constrained_minimum() -> None:
    e, a, b, alpha, beta = TRUTHS["chinchilla"]
    A, B = np.exp(a), np.exp(b)
    C = 1e22
    alloc = chinchilla_optimal(C, A, B, alpha, beta)
    assert 6 * alloc.N_opt * alloc.D_opt == pytest.approx(C)
    # Brute force along the budget line.
    n = np.logspace(8, 12, 20001)
    loss = A / n**alpha + B / (C / (6 * n)) ** beta
    assert alloc.N_opt == pytest.approx(n[np.argmin(loss)], rel=1e-3)


def test_gadre_error_law_recovers_parameters() -> None:
    law = GadreErrorLaw()
    data = law.prepare({"loss": np.linspace(2.0, 4.0, 12)})
    truth = np.array([0.9, np.log(5.0), 1.5])
    y = law.predict(truth, data)
    fit = fit_law(law, data, y * np.exp(0.002 * np.random.default_rng(2).standard_normal(y.size)))
    assert fit.theta[0] == pytest.approx(0.9, rel=0.02)
    assert fit.theta[2] == pytest.approx(1.5, rel=0.05)
    starts = law.initial_grid()[:5]
    np.testing.assert_allclose(law.predict(starts, data),
                               np.stack([law.predict(s, data) for s in starts]))


@needs_data("besiroglu2024_analyzing_chinchilla")
def test_reproduces_besiroglu_chinchilla_fit() -> None:
    script = _load_reproduce_script()
    r = script.reproduce(n_boot=40, seed=0)
    ours, paper = r["ours"], r["paper"]
    assert r["n_points"] == 240 and r["n_starts"] == 4500
    for k in ("E", "alpha", "beta"):
        assert ours[k] == pytest.approx(paper[k], rel=0.02), k
    # Hoffmann's procedure on these points (notes §12): the same optimum to 4 digits.
    for k, v in script.HOFFMANN_PROCEDURE.items():
        assert ours[k] == pytest.approx(v, rel=2e-3), k
    assert r["objective"] == pytest.approx(1.018274e-3, rel=1e-5)
    # A modest bootstrap: intervals overlap Besiroglu's and contain the point estimate.
    for k in ("E", "alpha", "beta"):
        lo, hi = r["ours_ci"][k]
        plo, phi = r["paper_ci"][k]
        assert lo < ours[k] < hi and lo < phi and plo < hi, k
    # ~20 tokens per parameter at Chinchilla's budget, as Besiroglu's fit gives (18.4).
    assert 15 < r["allocation"]["ours"]["tokens_per_param"] < 22
    assert 0.45 < r["approach2"]["a"] < 0.56
    # Issue 13: fit the lower 80% of compute, predict the top 20%. Hoffmann's procedure re-measured
    # (1.053%); settings chosen by validation inside the training split meet the 0.8% goal.
    x = r["extrapolation"]
    assert (x["n_train"], x["n_test"]) == (192, 48)
    assert x["hoffmann_prede"] == pytest.approx(0.01053, abs=2e-4)
    assert x["validated_prede"] <= 0.008
