"""Kind `downstream_scaling` (harness/experiment/downstream_scaling*.py): the plan carries the evals,
bad specs name the field, the report's laws on synthetic points from known parameters, and the
tiny preset end to end (train with evals -> report -> `harness.fit scaling --law gadre-error`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT
from conftest import run_experiment as experiment

TINY = "downstream_tiny"


def test_plan_adds_the_evals_to_every_ladder_run(module_env, tmp_path):
    proc = experiment(module_env, "plan", TINY, "--dir", str(tmp_path / "p"))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "p" / "plan.json").read_text())["runs"]
    assert len(runs) == 6
    for run in runs:
        assert "train.eval_tasks=[pydoc_cloze,word_repeat]" in run["overrides"]
        assert "train.eval_tasks_limit=20" in run["overrides"] and "train.eval_tasks_max_samples=16" in run["overrides"]


@pytest.mark.parametrize("override, field", [
    ("downstream_scaling.tasks=[nope]", "downstream_scaling.tasks[0]"),
    ("downstream_scaling.held_out=d999", "downstream_scaling.held_out"),
    ("downstream_scaling.sizes=[]", "downstream_scaling.sizes"),
])
def test_bad_spec_exits_2_naming_the_field(module_env, tmp_path, override, field):
    proc = experiment(module_env, "plan", TINY, override, "--dir", str(tmp_path / "p"))
    assert proc.returncode == 2 and field in proc.stderr, proc.stderr
    assert not (tmp_path / "p").exists()


def test_cpu_preset_plans_within_its_budget(module_env, tmp_path):
    proc = experiment(module_env, "plan", "downstream_cpu", "--dir", str(tmp_path / "cpu"))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((tmp_path / "cpu" / "plan.json").read_text())["runs"]
    assert len({r["settings"]["size"] for r in runs}) >= 4
    assert sum(r["est_seconds"] for r in runs) <= 10 * 60  # training; the evals add about a minute per run


def synthetic_points(eps=0.75, k=400.0, gamma=2.5, seed=0):
    """Runs of 4 sizes x 2 data multiples whose mean error follows Gadre's law in their loss."""
    rng = np.random.default_rng(seed)
    points = []
    for i, size in enumerate(["a", "b", "c", "d"]):
        for j in range(2):
            loss = 3.6 - 0.3 * i - 0.12 * j
            err = (eps - k * math.exp(-gamma * loss)) * math.exp(rng.normal(0, 0.003))
            C = 1e10 * 4 ** i * 2 ** j
            points.append({"run_id": f"{size}{j}", "size": size, "loss": loss, "error": err, "C": C,
                           "pass_rate/t": math.exp(-50.0 * C ** -0.12)})
    return points


def test_error_law_fitted_without_the_largest_size_predicts_it():
    from harness.experiment.downstream_scaling_report import fit_error_law

    out = fit_error_law(synthetic_points(), held_out="d")
    assert out["n_fit"] == 6 and out["n_held_out"] == 2
    assert out["held_out_rel_error"] < 0.02
    assert out["derived"]["epsilon"] == pytest.approx(0.75, abs=0.03)


def test_error_law_needs_three_fit_points():
    from harness.experiment.downstream_scaling_report import fit_error_law

    out = fit_error_law(synthetic_points()[:4], held_out="b")
    assert "skipped" in out and "needs >= 3" in out["skipped"]


def test_passuntil_law_recovers_its_exponent():
    from harness.experiment.downstream_scaling_report import fit_passuntil_law

    out = fit_passuntil_law(synthetic_points(), "t")
    assert out["b"] == pytest.approx(-0.12, abs=1e-6) and out["a"] == pytest.approx(50.0, rel=1e-6)


@pytest.mark.slow
def test_tiny_preset_end_to_end(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "run", TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    md = (out / "report.md").read_text()
    for section in ("Task error vs loss", "PassUntil pass rate vs compute", "Probability mass on the correct choice"):
        assert section in md
    summary = json.loads((out / "report.json").read_text())
    assert summary["points"] == 6
    law = summary["error_law"]
    assert law["held_out"] == "64x1" and law["n_fit"] == 4 and law["n_held_out"] == 2
    assert math.isfinite(law["held_out_abs_error"])
    for plot in ("error_vs_loss.png", "passuntil_vs_compute.png", "probability_mass.png"):
        assert (out / plot).stat().st_size > 1000
    # Every run's evals are in the collected table, and the error law fits straight from it.
    import pandas as pd

    table = pd.read_csv(out / "runs.csv")
    assert table["error"].notna().all() and table["acc/pydoc_cloze"].between(0, 1).all()
    assert (table["samples/word_repeat"] > 0).all()
    fit = subprocess.run([sys.executable, "-m", "harness.fit", "scaling", "--law", "gadre-error", "--fit",
                          str(out / "runs.csv"), "--out", str(tmp_path / "fit"), "--allow-unconverged"],
                         cwd=ROOT, env=module_env, capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    params = json.loads(next((tmp_path / "fit").glob("*.json")).read_text())
    assert "epsilon" in json.dumps(params)
