"""Refuse or warn, never silently (issue 13): `python -m harness.fit scaling` exits 3 and writes
nothing for a fit that cannot be trusted; `--allow-unconverged` keeps it with warnings stored in
params.json and metrics.json. Data: a synthetic Chinchilla surface (Besiroglu's parameters)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.fit.__main__ import main
from harness.fit.fit_checks import FitRefused, bound_problems, check_fit, enforce, prediction_problems
from harness.fit.laws.final_loss import ChinchillaLaw, FarseerLaw


def _chinchilla(n: np.ndarray, d: np.ndarray) -> np.ndarray:
    return 1.817 + 482.0 / n**0.3478 + 2085.4 / d**0.3658


def _grid(tmp: Path, sizes: list[float], name: str = "runs.csv") -> Path:
    n, mult = np.meshgrid(sizes, [5, 10, 20, 40, 80, 160])
    n, d = n.ravel(), (n * mult).ravel()
    rng = np.random.default_rng(0)
    loss = _chinchilla(n, d) * np.exp(0.002 * rng.standard_normal(n.size))
    path = tmp / name
    pd.DataFrame({"N": n, "D": d, "loss": loss}).to_csv(path, index=False)
    return path


def test_farseer_on_four_sizes_is_refused_and_writes_nothing(tmp_path: Path, capsys) -> None:
    runs = _grid(tmp_path, [1e7, 3e7, 1e8, 3e8])
    out = tmp_path / "out"
    assert main(["scaling", "--law", "farseer", "--fit", str(runs), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "'farseer'" in err and "5 distinct model sizes" in err and "Fix:" in err
    assert not out.exists()


def test_allow_unconverged_keeps_the_fit_with_warnings(tmp_path: Path, capsys) -> None:
    runs = _grid(tmp_path, [1e7, 3e7, 1e8, 3e8])
    out = tmp_path / "out"
    assert main(["scaling", "--law", "farseer", "--fit", str(runs), "--out", str(out),
                 "--allow-unconverged"]) == 0
    assert "warning: law 'farseer'" in capsys.readouterr().err
    for name in ("params.json", "metrics.json"):
        warnings = json.loads((out / name).read_text())["warnings"]
        assert any(w["kind"] == "underdetermined" for w in warnings), name


def test_a_diverged_prediction_is_refused(tmp_path: Path, capsys) -> None:
    runs = _grid(tmp_path, [1e7, 3e7, 1e8, 3e8, 1e9])
    # N = D = 10: Chinchilla's A/N^alpha + B/D^beta is ~1000x any loss in the fit set.
    absurd = tmp_path / "absurd.csv"
    pd.DataFrame({"N": [10.0], "D": [10.0]}).to_csv(absurd, index=False)
    out = tmp_path / "out"
    assert main(["scaling", "--law", "chinchilla", "--fit", str(runs), "--predict", str(absurd),
                 "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "'chinchilla'" in err and "plausible range" in err and "absurd" in err
    assert not out.exists()


def test_a_sound_fit_passes_with_no_warnings(tmp_path: Path) -> None:
    runs = _grid(tmp_path, [1e7, 3e7, 1e8, 3e8, 1e9])
    out = tmp_path / "out"
    assert main(["scaling", "--law", "chinchilla", "--fit", str(runs), "--out", str(out)]) == 0
    assert json.loads((out / "params.json").read_text())["warnings"] == []


def test_check_units() -> None:
    law = ChinchillaLaw()
    on_bound = np.array([0.6, 6.0, 7.6, 0.0, 0.37])  # alpha = 0 is its lower bound
    (problem,) = bound_problems(law, on_bound)
    assert problem.kind == "on_bound" and "'alpha'" in problem.message and "lower bound" in problem.message
    assert bound_problems(law, np.array([0.6, 6.0, 7.6, 0.35, 0.37])) == []

    obs = np.array([2.0, 3.0])
    assert prediction_problems("x", {"t": np.array([2.5, 29.0, 0.21])}, obs) == []
    for bad in (np.nan, 0.0, -1.0, 31.0, 0.19):
        (p,) = prediction_problems("x", {"t": np.array([2.5, bad])}, obs)
        assert p.kind == "implausible_prediction" and "row 1" in p.message

    problems = check_fit(law, on_bound, converged=False, predictions={}, observed=obs)
    kinds = [p.kind for p in problems]
    assert kinds == ["underdetermined", "not_converged", "on_bound"]  # 2 points < 5 parameters too
    with pytest.raises(FitRefused, match="did not converge"):
        enforce(problems, allow=False)
    assert [w["kind"] for w in enforce(problems, allow=True)] == kinds


def test_farseer_identifiability_counts_model_sizes() -> None:
    law = FarseerLaw()
    table = {"N": np.repeat([1e7, 2e7, 4e7, 8e7, 1.6e8], 3), "D": np.tile([1e9, 2e9, 4e9], 5)}
    assert law.identifiability_problems(law.prepare(table)) == []
    four = {k: v[:12] for k, v in table.items()}
    (msg,) = law.identifiability_problems(law.prepare(four))
    assert "the fit set has 4" in msg


def test_a_bound_that_is_a_nested_law_is_not_refused() -> None:
    # lr-noise-clock's clock exponent p = 1 is the plain LR-area clock (lr-noise): a valid answer.
    from harness.fit.laws.lr_noise import LRNoiseClockLaw

    law = LRNoiseClockLaw()
    names = [p.name for p in law.params]
    theta = np.array([{"L0": 2.0, "A": 1.0, "alpha": 0.4, "sigma": 1.0, "tau": 1.0, "p": 1.0}[n] for n in names])
    assert bound_problems(law, theta) == []
    theta[names.index("alpha")] = 5.0  # alpha's upper bound is a box edge, not a nested law
    assert [p.kind for p in bound_problems(law, theta)] == ["on_bound"]
