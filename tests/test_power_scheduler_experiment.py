"""Kind `power_scheduler` (harness/experiment/power_scheduler.py): the plan (WSD runs per (beta, n)
cell and LR), the tiny study run end to end through the local launcher, its fit reproduced by
`python -m harness.fit powersched` on the collected runs.csv, the fitted schedule trained, the
ladder planning with the fit's JSON, and a refused edge grid. Also the ladder rule's unit check."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT
from conftest import run_experiment as experiment


@pytest.fixture(scope="module")
def finished(module_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("power_scheduler") / "exp"
    proc = experiment(module_env, "run", "power_scheduler_tiny", "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = experiment(module_env, "report", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    return out


def test_plan_sweeps_the_lr_of_wsd_runs_in_every_cell(module_env, tmp_path) -> None:
    out = tmp_path / "plan"
    proc = experiment(module_env, "plan", "power_scheduler_tiny", "power_scheduler.lrs=[]",
                      "power_scheduler.lr_factors=[0.5,1,2]", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert len(runs) == 2 * 2 * 3
    for run in runs:
        s = run["settings"]
        assert s["steps"] * s["batch_size"] * 32 == s["tokens"] == run["D"]
        assert "schedule=wsd" in run["overrides"] and f"train.batch_size={s['batch_size']}" in run["overrides"]
    # lr_factors multiply the paper's prior 4.6 beta n^-0.51 in each cell
    one = [r["settings"] for r in runs if r["settings"]["batch_size"] == 4 and r["settings"]["tokens"] == 2560]
    guess = 4.6 * 4 * 2560**-0.51
    assert sorted(s["lr"] for s in one) == pytest.approx([0.5 * guess, guess, 2 * guess], rel=1e-3)


@pytest.mark.parametrize("override,field", [
    ("power_scheduler.tokens=[1280]", "power_scheduler.tokens"),
    ("power_scheduler.lrs=[1e-3,2e-3]", "power_scheduler.lrs"),
    ("power_scheduler.batch_sizes=[0]", "power_scheduler.batch_sizes"),
    ("power_scheduler.tokens=[10,20]", "power_scheduler.tokens"),
])
def test_bad_spec_exits_2_naming_the_field(module_env, tmp_path, override, field) -> None:
    proc = experiment(module_env, "plan", "power_scheduler_tiny", override, "--dir", str(tmp_path / "x"))
    assert proc.returncode == 2 and field in proc.stderr and not (tmp_path / "x").exists()


def test_tiny_study_fits_a_and_b_and_the_cli_reproduces_them(finished) -> None:
    report = json.loads((finished / "report.json").read_text())
    fit = json.loads((finished / "power_scheduler_fit.json").read_text())
    assert report["n_runs"] == 12 and report["missing"] == 0 and len(fit["cells"]) == 4
    assert fit["a"] > 0 and fit["b"] < 0 and fit["batch_unit"] == "sequences"
    assert fit["a_ci"][0] <= fit["a"] <= fit["a_ci"][1] and fit["b_ci"][0] <= fit["b"] <= fit["b_ci"][1]
    # The same fit from the collected table alone (B in tokens per step, train.seq_len column):
    proc = subprocess.run([sys.executable, "-m", "harness.fit", "powersched", str(finished / "runs.csv"),
                           "--allow-edge", "--n-boot", "0"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    cli = json.loads(proc.stdout)
    assert cli["a"] == pytest.approx(fit["a"], rel=1e-6) and cli["b"] == pytest.approx(fit["b"], rel=1e-6)
    yaml_text = (finished / "schedule_power_fitted.yaml").read_text()
    assert "name: power" in yaml_text and f"power_b: {fit['b']!r}" in yaml_text


def test_the_fitted_schedule_trains(finished, module_env, tmp_path) -> None:
    """The report's overrides train a run whose LR follows min(lr_max, a beta n^b)."""
    overrides = json.loads((finished / "report.json").read_text())["schedule_overrides"]
    fit = json.loads((finished / "power_scheduler_fit.json").read_text())
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "harness.train", "model=llama_tiny", "train=tiny", "train.steps=6",
           "data.max_chars=300000", "data.vocab_size=300", "data.val_tokens=4096", "logging.progress=false",
           "logging.plot=false", "optim.lr=1.0", "schedule.warmup_steps=0", f"run_dir={run_dir}", *overrides]
    proc = subprocess.run(cmd, cwd=ROOT, env=module_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in (run_dir / "curve.jsonl").read_text().splitlines() if line.strip()]
    lrs = {r["step"]: r["lr"] for r in rows if "lr" in r}
    # train=tiny: 4 sequences of 32 tokens per step; the cap 1.0 is above the law at these token counts
    step = 2
    expected = fit["a"] * 4 * (step * 4 * 32) ** fit["b"]
    assert lrs[step] == pytest.approx(expected, rel=1e-3) or lrs[step + 1] == pytest.approx(expected, rel=1e-3)


def test_the_ladder_plans_with_the_fit(finished, tmp_path) -> None:
    from harness.ladder import RECIPES, LadderConfig, plan_ladder

    fit = json.loads((finished / "power_scheduler_fit.json").read_text())
    recipe = RECIPES["default"].with_power_scheduler(fit, lr_max=0.02)
    run = plan_ladder(["d64"], LadderConfig(vocab_size=512, recipe=recipe))[0]
    cfg = run.run_config()
    assert cfg.schedule.name == "power" and cfg.schedule.power_a == fit["a"] and cfg.schedule.power_b == fit["b"]
    assert cfg.optim.lr == 0.02 and f"schedule.power_a={fit['a']!r}" in " ".join(run.overrides())
    from harness.ladder.cli import main as ladder_main

    assert ladder_main(["dry-run", "--sizes", "d64", "--out", str(tmp_path / "plan"), "--no-data-check",
                        "--power-scheduler-json", str(finished / "power_scheduler_fit.json")]) == 0
    assert ladder_main(["dry-run", "--sizes", "d64", "--out", str(tmp_path / "plan2"), "--no-data-check",
                        "--schedule", "cosine", "--power-scheduler-json",
                        str(finished / "power_scheduler_fit.json")]) == 2


def test_the_ladder_refuses_a_fit_without_units() -> None:
    from harness.ladder import RECIPES, LadderError

    for bad in ({"a": 4.6, "b": -0.51}, {"a": 4.6, "b": -0.51, "batch_unit": "tokens", "tokens_unit": "tokens"}):
        with pytest.raises(LadderError, match="sequences"):
            RECIPES["default"].with_power_scheduler(bad)
    with pytest.raises(LadderError, match="negative"):
        RECIPES["default"].with_power_scheduler({"a": 4.6, "b": 0.2, "batch_unit": "sequences", "tokens_unit": "tokens"})


def test_report_refuses_an_edge_grid_naming_the_cell(tmp_path) -> None:
    """The report on a synthetic collected table whose best LRs are all the largest swept."""
    from harness.experiment.power_scheduler_report import FIT_JSON, power_scheduler_report

    rows = []
    for beta in (2, 4):
        for n in (1280, 2560):
            for lr in (1e-3, 2e-3, 4e-3):
                rows.append({"status": "completed", "D": n, "loss": 5.0 - 10 * lr,
                             "settings": json.dumps({"batch_size": beta, "lr": lr})})
    plan = {"spec": {"name": "edge", "kind": "power_scheduler", "power_scheduler": {"allow_edge": False, "n_boot": 0}}}
    report = power_scheduler_report(tmp_path, pd.DataFrame(rows), plan)
    assert report.summary["fit"] is None and "cell (B=2, D=1280)" in report.summary["refused"]
    assert "largest lr" in report.markdown and not (tmp_path / FIT_JSON).exists()
    plan["spec"]["power_scheduler"]["allow_edge"] = True
    report = power_scheduler_report(tmp_path, pd.DataFrame(rows), plan)
    assert report.summary["fit"] is not None
    assert sum("largest lr" in w for w in report.summary["warnings"]) == 4
    assert np.isfinite(report.summary["fit"]["a"]) and (tmp_path / FIT_JSON).exists()


def test_report_writes_no_schedule_when_the_best_lr_rises_with_tokens(tmp_path) -> None:
    from harness.experiment.power_scheduler_report import FIT_JSON, SCHEDULE_YAML, power_scheduler_report

    rows = []
    for beta in (2, 4):
        for n in (1280, 5120):
            lr_opt = 1e-3 * beta * (n / 1280) ** 0.5  # b = +0.5
            for f in (0.5, 1.0, 2.0):
                rows.append({"status": "completed", "D": n, "loss": 4.0 + 0.1 * np.log(f) ** 2,
                             "settings": json.dumps({"batch_size": beta, "lr": lr_opt * f})})
    plan = {"spec": {"name": "rising", "kind": "power_scheduler", "power_scheduler": {"n_boot": 0}}}
    report = power_scheduler_report(tmp_path, pd.DataFrame(rows), plan)
    assert report.summary["fit"]["b"] == pytest.approx(0.5) and report.summary["schedule_overrides"] is None
    assert (tmp_path / FIT_JSON).exists() and not (tmp_path / SCHEDULE_YAML).exists()
    assert "No schedule written" in report.markdown


def test_stacked_jobs_all_run_under_the_local_launcher(module_env, tmp_path) -> None:
    """batch_runs stacks each cell's 3 LRs into one job: 4 jobs, all run in one `run` (a batched
    job's success used to end the basic launcher's process after the first job)."""
    out = tmp_path / "stacked"
    proc = experiment(module_env, "run", "power_scheduler_tiny", "batch_runs=3", "name=ps_stacked", "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    statuses = [json.loads(p.read_text())["state"] for p in (out / "runs").glob("*/status.json")]
    assert len(statuses) == 12 and set(statuses) == {"completed"}
