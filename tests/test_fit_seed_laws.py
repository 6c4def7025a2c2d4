"""Seed laws of issue 13: Kaplan's L(N, S_min) with B_crit(L), and Chinchilla over N_avg."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.fit.fitter import fit_law
from harness.fit.laws.critical_batch import KaplanStepsLaw
from harness.fit.laws.final_loss import ChinchillaLaw
from harness.fit.laws.journey import JourneyChinchillaLaw

# Kaplan et al. 2020's values (notes §7e): log N_c, alpha_N, log S_c, alpha_S, log B*, alpha_B.
KAPLAN = np.array([np.log(8.8e13), 0.076, np.log(2.1e3), 0.76, np.log(2e8), 0.21])


def _kaplan_runs() -> pd.DataFrame:
    n, s, b = np.meshgrid([1e6, 1e7, 1e8, 1e9], [2e3, 8e3, 3.2e4, 1.28e5], [6.5e4, 2.6e5, 1e6, 4e6])
    return pd.DataFrame({"N": n.ravel(), "step": s.ravel(), "B": b.ravel()})


def test_kaplan_steps_solves_its_implicit_equation() -> None:
    law, runs = KaplanStepsLaw(), _kaplan_runs()
    data = law.prepare(runs)
    loss = law.predict(KAPLAN, data)
    b_crit = law.critical_batch(KAPLAN, loss)
    s_min = runs["step"] / (1 + b_crit / runs["B"])
    rhs = (8.8e13 / runs["N"]) ** 0.076 + (2.1e3 / s_min) ** 0.76
    np.testing.assert_allclose(loss, rhs, rtol=1e-10)
    # Larger batches at fixed steps always help, by less once B >> B_crit.
    by_b = loss.reshape(4, 4, 4)  # (steps, N, B) from meshgrid's xy order
    assert np.all(np.diff(by_b, axis=2) < 0)
    assert law.predict(np.stack([KAPLAN, KAPLAN]), data).shape == (2, len(runs))


def test_kaplan_steps_recovers_its_parameters() -> None:
    law, runs = KaplanStepsLaw(), _kaplan_runs()
    data = law.prepare(runs)
    y = law.predict(KAPLAN, data) * np.exp(0.001 * np.random.default_rng(0).standard_normal(len(runs)))
    fit = fit_law(law, data, y)
    assert fit.metrics["prede"] < 0.002
    d = fit.derived
    assert d["alpha_S"] == pytest.approx(0.76, rel=0.1) and d["alpha_B"] == pytest.approx(0.21, rel=0.15)


def test_journey_law_is_chinchilla_on_dense_runs_and_reads_n_avg() -> None:
    n, mult = np.meshgrid([1e7, 3e7, 1e8, 3e8, 1e9], [5, 20, 80])
    table = pd.DataFrame({"N": n.ravel(), "D": (n * mult).ravel()})
    table["loss"] = 1.8 + 480 / table["N"] ** 0.35 + 2100 / table["D"] ** 0.37
    dense = fit_law(ChinchillaLaw(), ChinchillaLaw().prepare(table), table["loss"].to_numpy())
    journey = JourneyChinchillaLaw()
    same = fit_law(journey, journey.prepare(table.assign(N_avg=table["N"])), table["loss"].to_numpy())
    np.testing.assert_allclose(same.theta, dense.theta)
    with pytest.raises(ValueError, match="'N_avg'"):
        journey.prepare(table)
    # A pruned run (N_avg below its final N) is predicted from N_avg.
    pruned = pd.DataFrame({"N_avg": [2e8], "D": [4e9]})
    assert journey.predict(same.theta, journey.prepare(pruned))[0] == pytest.approx(
        1.8 + 480 / 2e8**0.35 + 2100 / 4e9**0.37, rel=1e-3)
