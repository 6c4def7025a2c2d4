"""Kind `ladder` (harness/experiment/ladder_kind.py) and the shared Approach-3 fit
(harness/experiment/scaling_fit.py): plan -> run (local launcher, real training) -> report on the
tiny ladder, a report with runs missing, bad specs, the presets' plans, and the fit on synthetic
data from known parameters."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_experiment as experiment

TINY = "ladder_tiny"
TRUE = {"E": 1.7, "A": 400.0, "alpha": 0.34, "B": 1200.0, "beta": 0.28}






@pytest.fixture(scope="module")
def finished_ladder(module_env, tmp_path_factory) -> Path:
    """The tiny ladder (3 sizes x 2 tokens per parameter), trained and reported."""
    out = tmp_path_factory.mktemp("ladder") / "exp"
    proc = experiment(module_env, "run", TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


# ------------------------------------------------------------------ plan / run / report


def test_plan_rows_carry_the_ladder_settings(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert [(r["settings"]["size"], r["settings"]["tokens_per_param"]) for r in runs] == \
        [(s, t) for t in (1.0, 2.0) for s in ("32x1", "d32", "64x1")]
    for r in runs:
        s = r["settings"]
        assert (s["N"], s["N_non_embedding"], s["D"]) == (r["N"], r["N_non_embedding"], r["D"])
        # D = tokens_per_param x N (non-embedding, the default recipe's N), up to whole steps.
        assert s["D"] == pytest.approx(s["tokens_per_param"] * s["N_non_embedding"], rel=0.05)
        # The experiment layer, not the ladder, names the run and its directory.
        assert not any(o.startswith(("run_dir=", "name=")) for o in r["overrides"].split())
        assert r["run_dir"] == str((out / "runs" / r["run_id"]).resolve())
    assert not (out / "runs").exists()


def test_isoflop_plan_notes_the_skipped_sizes(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", TINY, "ladder.tokens_per_param=[]", "ladder.budgets=[2e9,8e9]",
                      "ladder.min_steps=80", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert runs and all(r["settings"]["budget"] in (2e9, 8e9) for r in runs)
    assert all(r["steps"] >= 80 for r in runs)
    assert "note: isoFLOP: skipped" in proc.stdout and "< min_steps 80" in proc.stdout
    assert len(runs) < 6  # some size was skipped at the small budget


def test_report_fits_approach3_with_intervals_and_plots(finished_ladder):
    summary = json.loads((finished_ladder / "report.json").read_text())
    assert summary["kind"] == "ladder" and summary["counts"] == {"completed": 6}
    assert len(summary["points"]) == 6
    fit = summary["fit"]
    assert set(fit["params"]) >= {"E", "A", "alpha", "B", "beta"}
    for name, (lo, hi) in fit["intervals"].items():
        assert lo <= hi, name
    assert fit["n_points"] == 6 and fit["n_boot"] == 20
    opt = summary["optimum_10x"]
    assert opt["extrapolation"] is True
    assert opt["C"] == pytest.approx(10 * max(p["C"] for p in summary["points"]))
    # N is the run's non-embedding count as trained (the default param_count).
    assert summary["param_count"] == "non_embedding"
    assert all(p["C"] == pytest.approx(6 * p["N"] * p["D"]) for p in summary["points"])
    md = (finished_ladder / "report.md").read_text()
    assert "Chinchilla Approach 3" in md and "EXTRAPOLATION" in md
    assert "| alpha |" in md and "| beta |" in md
    for run in summary["runs"]:
        assert run["run_id"] in md
    assert (finished_ladder / "loss_vs_D.png").stat().st_size > 1000
    assert summary["plots"] == ["loss_vs_D.png"]
    assert (finished_ladder / "runs.csv").is_file()


def test_report_with_runs_missing_is_written_and_names_them(finished_ladder, module_env, tmp_path):
    copy = tmp_path / "partial"
    shutil.copytree(finished_ladder, copy)
    plan = json.loads((copy / "plan.json").read_text())
    for run in plan["runs"]:  # the copy's plan points at the copy's run directories
        run["run_dir"] = str(copy / "runs" / run["run_id"])
    (copy / "plan.json").write_text(json.dumps(plan))
    gone = plan["runs"][1:3]
    for run in gone:
        shutil.rmtree(run["run_dir"])
    for name in ("report.md", "report.json", "loss_vs_D.png"):
        (copy / name).unlink()
    proc = experiment(module_env, "report", str(copy))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((copy / "report.json").read_text())
    assert summary["fit"] is None and summary["optimum_10x"] is None
    assert summary["counts"] == {"completed": 4, "not started": 2}
    md = (copy / "report.md").read_text()
    assert "not fitted: 4 completed run(s)" in md and "at least 5" in md
    for run in gone:
        assert f"#{run['index']} {run['settings']['size']} (not started)" in md
    assert "fit not fitted" in proc.stderr or "warning: fit" in proc.stderr
    assert not (copy / "loss_vs_D.png").exists()


def test_report_of_a_plan_with_no_run_is_written(module_env, tmp_path):
    out = tmp_path / "exp"
    assert experiment(module_env, "plan", TINY, "--dir", str(out)).returncode == 0
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "report.json").read_text())
    assert summary["fit"] is None and summary["counts"] == {"not started": 6}
    assert "not fitted: 0 completed run(s)" in (out / "report.md").read_text()


# ------------------------------------------------------------------ bad specs


@pytest.mark.parametrize("overrides, field", [
    (["ladder.sizes=[d32,d33]"], "ladder.sizes[1]"),
    (["ladder.sizes=[]"], "ladder.sizes"),
    (["ladder.tokens_per_param=[]"], "ladder.tokens_per_param / ladder.budgets"),
    (["ladder.tokens_per_param=[2,-1]"], "ladder.tokens_per_param[1]"),
    (["ladder.recipe=nope"], "ladder.recipe"),
    (["ladder.arch=moe"], "ladder.arch"),
    (["ladder.param_count=all"], "ladder.param_count"),
    (["ladder.sizez=[d32]"], "ladder.sizez"),
])
def test_bad_spec_exits_2_naming_the_field_and_writes_nothing(module_env, tmp_path, overrides, field):
    out = tmp_path / "exp"
    for command in ("plan", "run"):
        # in process: a bad spec stops `run` before it launches anything
        proc = experiment(module_env, command, TINY, *overrides, "--dir", str(out), in_process=True)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"error: {field}" in proc.stderr, proc.stderr
        assert not out.exists()


# ------------------------------------------------------------------ presets (planning only)


def test_gpu_preset_plans(module_env, tmp_path):
    out = tmp_path / "gpu"
    proc = experiment(module_env, "plan", "ladder_gpu", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    n_non_emb = sorted({r["N_non_embedding"] for r in runs})
    assert len(n_non_emb) >= 4 and 25e6 <= n_non_emb[0] and n_non_emb[-1] <= 300e6
    assert len({r["settings"]["tokens_per_param"] for r in runs}) >= 3
    assert all("train=gpu" in r["train_overrides"] for r in runs)


def test_cpu_preset_plans_within_its_budget(module_env, tmp_path):
    out = tmp_path / "cpu"
    proc = experiment(module_env, "plan", "ladder_cpu", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    runs = plan["runs"]
    assert len({r["settings"]["size"] for r in runs}) >= 4
    assert len({r["settings"]["tokens_per_param"] for r in runs}) >= 2
    assert all("data=gcide" in r["train_overrides"] for r in runs)
    # GCIDE has ~18M unique tokens: no run repeats data.
    assert max(r["D"] for r in runs) < 18e6
    assert sum(r["est_seconds"] for r in runs) <= 15 * 60


# ------------------------------------------------------------------ the fit on synthetic data


def synthetic(noise: float = 0.002, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """4 sizes x 4 token counts from TRUE, with multiplicative log-normal noise."""
    sizes = np.geomspace(1e6, 1e8, 4)
    N = np.repeat(sizes, 4)
    D = np.concatenate([n * np.array([5.0, 10.0, 20.0, 40.0]) for n in sizes])
    L = TRUE["E"] + TRUE["A"] / N ** TRUE["alpha"] + TRUE["B"] / D ** TRUE["beta"]
    return N, D, L * np.exp(np.random.default_rng(seed).normal(0.0, noise, N.size))


def test_fit_approach3_recovers_known_parameters_within_its_interval():
    from harness.experiment.scaling_fit import fit_approach3

    N, D, L = synthetic()
    fit = fit_approach3(N, D, L, n_boot=100, seed=1)
    assert fit.converged and fit.n_points == 16 and fit.n_boot == 100
    assert fit.params["alpha"] == pytest.approx(TRUE["alpha"], abs=0.05)
    assert fit.params["beta"] == pytest.approx(TRUE["beta"], abs=0.05)
    assert fit.params["E"] == pytest.approx(TRUE["E"], rel=0.1)
    for name, true in TRUE.items():
        lo, hi = fit.intervals[name]
        assert lo <= true <= hi, (name, lo, true, hi)
    lo, hi = fit.predict_interval(N, D)
    assert np.all(lo <= fit.predict(N, D) + 1e-9) and np.all(fit.predict(N, D) <= hi + 1e-9)
    assert np.allclose(fit.predict(N, D), L, rtol=0.01)
    assert json.loads(json.dumps(fit.to_json()))["params"]["alpha"] == fit.params["alpha"]


def test_optimum_is_the_closed_form_allocation_and_minimises_the_loss():
    from harness.experiment.scaling_fit import fit_approach3

    N, D, L = synthetic()
    fit = fit_approach3(N, D, L, n_boot=50)
    C = 1e21
    opt = fit.optimum(C)
    assert 6 * opt["N_opt"] * opt["D_opt"] == pytest.approx(C)
    # Along 6ND = C, the loss is lowest at N_opt.
    for factor in (0.7, 1.4):
        n = opt["N_opt"] * factor
        assert fit.predict(n, C / (6 * n)) > opt["loss"]
    assert opt["intervals"]["N_opt"][0] <= opt["N_opt"] <= opt["intervals"]["N_opt"][1]
    assert fit.params["a"] + fit.params["b"] == pytest.approx(1.0)


def test_a_single_token_count_warns_that_beta_is_not_identified():
    from harness.experiment.scaling_fit import fit_approach3

    N, _, L = synthetic()
    fit = fit_approach3(N, np.full_like(N, 1e9), L, n_boot=20)
    assert any("single token count" in w and "beta" in w for w in fit.warnings), fit.warnings


def test_too_few_points_or_sizes():
    from harness.experiment.scaling_fit import fit_approach3

    N, D, L = synthetic()
    with pytest.raises(ValueError, match="at least 5 runs"):
        fit_approach3(N[:4], D[:4], L[:4])
    one_size = fit_approach3(N[:4].tolist() + [N[0]], D[:4].tolist() + [D[0] * 3], L[:4].tolist() + [L[0] * 0.97],
                             n_boot=10)
    assert any("1 model size" in w and "alpha" in w for w in one_size.warnings), one_size.warnings
    well_posed = fit_approach3(N, D, L, n_boot=50)
    assert not any(w.startswith("too few points") for w in well_posed.warnings)


def test_isoflop_report_finds_the_valley_and_warns_at_an_edge(tmp_path):
    """The report's isoFLOP part on a collected table built from a known law (no training)."""
    from harness.experiment.ladder_kind import LadderKind

    params = LadderKind.Config(sizes=["a", "b", "c", "d"], budgets=[1e15, 1e16, 1e17], n_boot=10)
    sizes = np.geomspace(1e6, 1e8, 5)
    rows = []
    for j, C in enumerate(params.budgets):
        for i, n in enumerate(sizes):
            d = C / (6 * n)
            loss = TRUE["E"] + TRUE["A"] / n ** TRUE["alpha"] + TRUE["B"] / d ** TRUE["beta"]
            rows.append({"index": len(rows), "run_id": f"r{len(rows)}", "overrides": "", "status": "completed",
                         "settings": json.dumps({"size": f"s{i}", "budget": C}), "N_non_embedding": n, "N": n * 1.2,
                         "D": d, "final_val_loss": loss})
    report = LadderKind().report(tmp_path, pd.DataFrame(rows),
                                 {"spec": {"name": "iso", "ladder": {**params.__dict__}}})
    iso = report.summary["isoflop"]
    assert iso["fit"] is not None and iso["fit"]["n_budgets"] >= 2
    # N_opt grows with C (Approach 2's exponent a is positive and below 1).
    assert 0 < iso["fit"]["a"] < 1
    edges = [w for w in report.summary["warnings"] if w.startswith("isoFLOP")]
    best = {e["C"]: e["best_size"] for e in iso["budgets"]}
    assert {size in ("s0", "s4") for size in best.values()} == {True, False}  # the test covers both cases
    for C, size in best.items():
        at_edge = size in ("s0", "s4")
        assert any(f"C={C:.3g}" in w for w in edges) == at_edge, (C, size, edges)
    assert (tmp_path / "isoflop_profiles.png").is_file() and "isoflop_profiles.png" in report.summary["plots"]
    assert "isoFLOP profiles" in report.markdown
