"""Experiments (harness/experiment): plan -> run (local launcher, real training) -> status -> report
on the tiny grid, relaunch, a failing run, a preempted run that resumes, and bad specs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, read_rows, run_experiment as experiment

TINY_GRID = "grid_tiny"






def read_plan_csv(path: Path) -> list[dict[str, str]]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_plan_writes_the_table_and_trains_nothing(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", TINY_GRID, "--dir", str(out), "--tokens-per-s", "1000",
                      in_process=False)  # the one real `python -m harness.experiment plan`
    assert proc.returncode == 0, proc.stderr
    rows = read_plan_csv(out / "plan.csv")
    assert [r["overrides"] for r in rows] == ["optim.lr=0.001 schedule=cosine", "optim.lr=0.001 schedule=wsd",
                                              "optim.lr=0.003 schedule=cosine", "optim.lr=0.003 schedule=wsd"]
    assert len({r["run_id"] for r in rows}) == 4
    for r in rows:
        assert int(r["D"]) == 20 * 4 * 32  # train=tiny: steps x batch x seq_len
        assert float(r["est_seconds"]) == pytest.approx(2560 / 1000)
        assert float(r["flops"]) > 6 * int(r["N_non_embedding"]) * int(r["D"]) * 0.5
        assert int(r["N"]) > int(r["N_non_embedding"]) > 0
        assert r["run_id"] in proc.stdout
    assert "an estimate" in proc.stdout
    assert not (out / "runs").exists()  # nothing trained, no run directory
    # The run id is the directory `python -m harness.train ... run_dir=X/{hash}` picks for that run.
    plan = json.loads((out / "plan.json").read_text())
    first = plan["runs"][0]
    overrides = [o for o in first["train_overrides"] if not o.startswith(("run_dir=", "name="))]
    train = subprocess.run([sys.executable, "-m", "harness.train", *overrides, f"run_dir='{tmp_path}/h/{{hash}}'"],
                           cwd=ROOT, env=module_env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr
    assert [p.name for p in (tmp_path / "h").iterdir()] == [first["run_id"]]


def test_spec_overrides_change_the_plan(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", TINY_GRID, "grid.axes.optim.lr=[1e-3,2e-3,4e-3]", "grid.axes.schedule=[wsd]",
                      "grid.runs=[[optim.lr=1e-2,schedule=constant]]", "name=other", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = read_plan_csv(out / "plan.csv")
    assert [r["overrides"] for r in rows] == ["optim.lr=0.001 schedule=wsd", "optim.lr=0.002 schedule=wsd",
                                              "optim.lr=0.004 schedule=wsd", "optim.lr=1e-2 schedule=constant"]
    assert json.loads((out / "plan.json").read_text())["spec"]["name"] == "other"


def test_a_run_planned_twice_is_planned_once(module_env, tmp_path):
    proc = experiment(module_env, "plan", TINY_GRID, "grid.axes.schedule=[cosine]",
                      "grid.runs=[[optim.lr=0.001,schedule=cosine]]", "--dir", str(tmp_path / "exp"))
    assert proc.returncode == 0, proc.stderr
    assert len(read_plan_csv(tmp_path / "exp" / "plan.csv")) == 2
    assert "is the same run as #0" in proc.stdout


@pytest.mark.parametrize("overrides, field", [
    (["grid.axs.optim.lr=[1e-3]"], "grid.axs: unknown key"),
    (["nme=x"], "nme: unknown key"),
    (["kind=grdi"], "kind: got 'grdi'; choose one of grid"),
    (["grid.axes.optim.lrr=[1e-3]"], "grid.axes.optim.lrr: optim.lrr: not a field of AdamWConfig"),
    (["grid.axes.schedule=[cosine,wsdd]"], "grid.axes.schedule: "),
    (["grid.axes.optim.lr=3e-3"], "grid.axes.optim.lr: got 0.003; an axis is a list"),
    (["grid.runs=[[optim.lr]]"], "grid.runs[0]: got 'optim.lr'; each override is key=value"),
    (["tokens_per_s=fast"], "tokens_per_s: "),
    (["base=[model=nope]"], "base: "),
])
def test_bad_spec_exits_2_naming_the_field_and_writes_nothing(module_env, tmp_path, overrides, field):
    out = tmp_path / "exp"
    for command in ("plan", "run"):
        # in process: a bad spec stops `run` before it launches anything
        proc = experiment(module_env, command, TINY_GRID, *overrides, "--dir", str(out), in_process=True)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert f"error: {field}" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert not out.exists()


def test_bad_spec_file_names_the_field(module_env, tmp_path):
    spec = tmp_path / "typo.yaml"
    spec.write_text("name: t\nkind: grid\ngrid:\n  axes:\n    optim: {lr: [1e-3]}\n  runz: []\n")
    proc = experiment(module_env, "plan", str(spec), "--dir", str(tmp_path / "exp"))
    assert proc.returncode == 2 and "error: grid.runz: unknown key; the fields are axes, runs" in proc.stderr
    proc = experiment(module_env, "plan", "no_such_spec")
    assert proc.returncode == 2 and "spec: no conf/experiment/no_such_spec.yaml; choose one of" in proc.stderr
    assert "grid_tiny" in proc.stderr and "lr_sweep_cpu" in proc.stderr


def test_cpu_preset_plans(module_env, tmp_path):
    proc = experiment(module_env, "plan", "lr_sweep_cpu", "--dir", str(tmp_path / "exp"))
    assert proc.returncode == 0, proc.stderr
    rows = read_plan_csv(tmp_path / "exp" / "plan.csv")
    from harness.config import ModelConfig
    from harness.models import flops

    default_1m = ModelConfig(d_model=128, n_layers=4, n_heads=4, d_ff=344, vocab_size=512, tie_embeddings=False,
                             max_seq_len=256)  # conf/model/llama_1m.yaml with data.vocab_size
    assert len(rows) == 5 and {int(r["N"]) for r in rows} == {flops.num_params(default_1m)}
    assert sum(float(r["est_seconds"]) for r in rows) < 11 * 60


@pytest.fixture(scope="module")
def finished_grid(module_env, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("grid") / "exp"
    return out, experiment(module_env, "run", TINY_GRID, "--dir", str(out), "--launcher", "local")


def test_run_local_trains_every_planned_run(finished_grid):
    out, proc = finished_grid
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Launching 4 jobs locally" in proc.stdout + proc.stderr  # ONE Hydra multirun of 4 jobs
    plan = json.loads((out / "plan.json").read_text())
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(r["run_id"] for r in plan["runs"])
    import yaml

    for run in plan["runs"]:
        run_dir = out / "runs" / run["run_id"]
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == 20
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert (cfg["optim"]["lr"], cfg["schedule"]["name"]) == (run["settings"]["optim.lr"], run["settings"]["schedule"])
        assert cfg["model"]["d_model"] == 32  # the spec's base: model=llama_tiny
        assert [r["step"] for r in read_rows(run_dir)] == list(range(1, 21))
    assert "4 completed" in proc.stdout


def test_status_counts_and_lists_runs(finished_grid, module_env):
    out, _ = finished_grid
    proc = experiment(module_env, "status", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "4 run(s): 4 completed" in proc.stdout
    assert proc.stdout.count("completed          20/20") == 4


def test_report_tables_best_runs_and_plots(finished_grid, module_env):
    out, _ = finished_grid
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "report.json").read_text())
    runs = summary["runs"]
    assert len(runs) == 4 and {r["status"] for r in runs} == {"completed"}
    finals = {r["run_id"]: json.loads((out / "runs" / r["run_id"] / "status.json").read_text())["final_val_loss"]
              for r in runs}
    assert {r["run_id"]: r["final_val_loss"] for r in runs} == pytest.approx(finals)
    best = min(finals, key=finals.get)
    assert summary["best"]["run_id"] == best
    for axis, values in (("optim.lr", [0.001, 0.003]), ("schedule", ["cosine", "wsd"])):
        entries = summary["best_per_axis"][axis]
        assert [e["value"] for e in entries] == values
        for e in entries:
            cands = {r["run_id"]: finals[r["run_id"]] for r in runs if r["settings"][axis] == e["value"]}
            assert e["best_run"] == min(cands, key=cands.get)
    md = (out / "report.md").read_text()
    assert f"Best run: `{best}`" in md and "## Best run per value of `optim.lr`" in md
    best_lr = next(r["settings"]["optim.lr"] for r in runs if r["run_id"] == best)
    on_edge = [w for w in summary["warnings"] if w.startswith("the best optim.lr")]
    assert len(on_edge) == 1  # a 2-value axis: whichever LR wins is on the grid's edge, and the report says so
    assert f"({best_lr:g})" in on_edge[0] and f"**Warning:** {on_edge[0]}" in md
    assert f"warning: {on_edge[0]}" in proc.stderr
    for plot in ("loss_vs_optim.lr.png", "val_curves.png"):
        assert (out / plot).read_bytes()[:4] == b"\x89PNG"
    assert summary["plots"] == ["loss_vs_optim.lr.png", "val_curves.png"]  # no plot for the string axis
    import pandas as pd

    table = pd.read_csv(out / "runs.csv")
    assert len(table) == 4 and set(table["status"]) == {"completed"}
    assert (out / "runs.parquet").is_file()


def test_relaunch_trains_nothing(finished_grid, module_env):
    out, first = finished_grid
    assert first.returncode == 0
    curves = sorted((out / "runs").glob("*/curve.jsonl"))
    before = {c: (c.read_bytes(), c.stat().st_mtime_ns, c.with_name("status.json").read_bytes()) for c in curves}
    launches = sorted((out / "launches").iterdir())
    proc = experiment(module_env, "run", TINY_GRID, "--dir", str(out), in_process=True)  # launches nothing
    assert proc.returncode == 0, proc.stderr
    assert "all 4 run(s) completed; nothing to launch" in proc.stdout
    assert sorted((out / "launches").iterdir()) == launches  # no launch at all
    assert sorted((out / "runs").glob("*/curve.jsonl")) == curves
    for c in curves:
        assert (c.read_bytes(), c.stat().st_mtime_ns, c.with_name("status.json").read_bytes()) == before[c]


def test_failed_run_shows_in_status_and_report_and_run_exits_1(module_env, tmp_path):
    out = tmp_path / "exp"
    args = ("run", TINY_GRID, "grid.axes.optim.lr=[3e-3]", "grid.axes.schedule=[cosine]",
            "grid.runs=[[optim.lr=1e4,train.grad_clip=0]]", "--dir", str(out))
    proc = experiment(module_env, *args)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 run(s) not completed" in proc.stderr
    status = experiment(module_env, "status", str(out)).stdout
    assert "2 run(s): 1 completed, 1 failed" in status
    assert "failed" in status and "non-finite training loss" in status
    assert experiment(module_env, "report", str(out)).returncode == 0
    runs = json.loads((out / "report.json").read_text())["runs"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 1 and "non-finite training loss" in failed[0]["reason"]
    assert "failed (non-finite training loss" in (out / "report.md").read_text()


def test_preempted_local_run_resumes_on_relaunch(module_env, tmp_path):
    out = tmp_path / "exp"
    args = ("run", TINY_GRID, "grid.axes.optim.lr=[3e-3]", "grid.axes.schedule=[cosine]",
            "base=[model=llama_tiny,train=tiny,train.steps=400,data.max_chars=300000,data.vocab_size=300,"
            "data.val_tokens=4096,logging.progress=false,logging.plot=false]", "--dir", str(out))
    launcher = subprocess.Popen([sys.executable, "-m", "harness.experiment", *args], cwd=ROOT, env=module_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.time() + 240
        curve = None
        while time.time() < deadline:
            assert launcher.poll() is None, launcher.stdout.read()
            found = list((out / "runs").glob("*/curve.jsonl")) if (out / "runs").is_dir() else []
            if found and sum(1 for _ in open(found[0])) >= 30:
                curve = found[0]
                break
            time.sleep(0.05)
        assert curve is not None, "the run did not start"
        os.killpg(launcher.pid, signal.SIGTERM)  # the whole launch: the CLI and the job it started
        launcher.wait(timeout=120)
    finally:
        if launcher.poll() is None:
            os.killpg(launcher.pid, signal.SIGKILL)
    deadline = time.time() + 60
    while json.loads(curve.with_name("status.json").read_text())["state"] == "running":
        assert time.time() < deadline
        time.sleep(0.1)
    status = json.loads(curve.with_name("status.json").read_text())
    assert status["state"] == "preempted", status
    stopped = status["step"]
    shown = experiment(module_env, "status", str(out)).stdout
    assert "1 preempted" in shown and f"{stopped}/400" in shown
    proc = experiment(module_env, *args)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    final = json.loads(curve.with_name("status.json").read_text())
    assert final["state"] == "completed" and final["resumed_from"] == stopped
    assert [r["step"] for r in read_rows(curve.parent)] == list(range(1, 401))


def test_run_with_submitit_local_launcher(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "run", TINY_GRID, "grid.axes.schedule=[cosine]", "--dir", str(out),
                      "--launcher", "submitit_local", "--launcher-arg", "hydra.launcher.timeout_min=10")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Submitit 'local' sweep output dir" in proc.stdout + proc.stderr
    (launch,) = (out / "launches").iterdir()
    assert sorted(p.name for p in launch.iterdir() if p.name.isdigit()) == ["0", "1"]  # one job per run
    assert "2 run(s): 2 completed" in proc.stdout


# ---- the same experiment through a real Slurm (tests/slurm_helpers.py; marked slurm) ----------

@pytest.fixture(scope="module")
def slurm_grid(slurm_env, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """grid_tiny launched with --no-wait on the test cluster, then waited for through `status`."""
    out = tmp_path_factory.mktemp("slurm_grid") / "exp"
    proc = experiment(slurm_env, "run", TINY_GRID, "--dir", str(out), "--launcher", "slurm_cpu", "--no-wait")
    deadline = time.time() + 300
    while proc.returncode == 0 and time.time() < deadline:
        if "4 run(s): 4 completed" in experiment(slurm_env, "status", str(out)).stdout:
            break
        time.sleep(1)
    return out, proc


@pytest.mark.slurm
def test_slurm_runs_the_experiment_as_one_job_array(slurm_grid, slurm_env):
    from slurm_helpers import array_job_id, sacct_array_states

    out, proc = slurm_grid
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "submitted job" in proc.stdout and "the launcher waits in the background" in proc.stdout
    status = experiment(slurm_env, "status", str(out)).stdout
    assert "4 run(s): 4 completed" in status, status
    (launch,) = (out / "launches").iterdir()
    job = array_job_id(launch)
    assert sacct_array_states(job, 4, slurm_env) == [f"{job}_{i}|COMPLETED" for i in range(4)]
    import yaml

    for run_dir in (out / "runs").iterdir():
        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["train"]["requeue"] is True and "SIGUSR2" in cfg["train"]["preempt_signals"]
        assert [r["step"] for r in read_rows(run_dir)] == list(range(1, 21))
    report = experiment(slurm_env, "report", str(out))
    assert report.returncode == 0, report.stderr
    assert json.loads((out / "report.json").read_text())["counts"] == {"completed": 4}


@pytest.mark.slurm
def test_slurm_relaunch_trains_nothing(slurm_grid, slurm_env):
    out, _ = slurm_grid
    curves = sorted((out / "runs").glob("*/curve.jsonl"))
    assert len(curves) == 4
    before = {c: (c.read_bytes(), c.stat().st_mtime_ns) for c in curves}
    launches = sorted((out / "launches").iterdir())
    proc = experiment(slurm_env, "run", TINY_GRID, "--dir", str(out), "--launcher", "slurm_cpu",
                      in_process=True)  # submits nothing
    assert proc.returncode == 0, proc.stderr
    assert "all 4 run(s) completed; nothing to launch" in proc.stdout
    assert sorted((out / "launches").iterdir()) == launches  # no job submitted
    assert all((c.read_bytes(), c.stat().st_mtime_ns) == before[c] for c in curves)


@pytest.mark.slurm
def test_slurm_requeued_array_task_resumes(slurm_env, tmp_path):
    """`scontrol requeue` of the experiment's array job: Slurm sends SIGTERM, the run checkpoints
    and requeues; the requeued task resumes from the checkpoint and `run` (waiting) exits 0."""
    from slurm_helpers import requeue_midway

    out = tmp_path / "exp"
    args = ("run", TINY_GRID, "grid.axes.optim.lr=[3e-3]", "grid.axes.schedule=[cosine]",
            "base=[model=llama_tiny,train=tiny,train.steps=300,train.checkpoint_every=50,data.max_chars=300000,"
            "data.vocab_size=300,data.val_tokens=4096,logging.progress=false,logging.plot=false]",
            "--dir", str(out), "--launcher", "slurm_cpu")
    launcher = subprocess.Popen([sys.executable, "-m", "harness.experiment", *args], cwd=ROOT, env=slurm_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while not list(out.glob("runs/*/curve.jsonl")):
        if time.time() >= deadline or launcher.poll() is not None:
            launcher.kill()
            raise AssertionError("the array task did not start")
        time.sleep(0.1)
    (curve,) = out.glob("runs/*/curve.jsonl")
    (launch,) = (out / "launches").iterdir()
    output, seen = requeue_midway(launcher, curve, launch, slurm_env, timeout=180)
    assert launcher.returncode == 0, output[-3000:]
    assert "PENDING" in seen
    status = json.loads(curve.with_name("status.json").read_text())
    assert status["state"] == "completed" and 30 <= status["resumed_from"] < 300, status
    assert [r["step"] for r in read_rows(curve.parent)] == list(range(1, 301))  # every step once
    assert "1 run(s): 1 completed" in output


def test_edge_warning_only_when_the_best_value_is_an_end_of_the_axis():
    from harness.experiment.grid_report import edge_warnings

    def axis(losses: dict[float, float]) -> dict[str, list[dict]]:
        return {"optim.lr": [{"value": v, "best_loss": s} for v, s in losses.items()]}

    best = {"run_id": "x"}
    inside = edge_warnings(best, axis({1e-3: 3.2, 3e-3: 3.0, 1e-2: 3.1}))
    assert inside == []
    low = edge_warnings(best, axis({1e-3: 2.9, 3e-3: 3.0, 1e-2: 3.1}))
    assert len(low) == 1 and "smallest" in low[0] and "(0.001)" in low[0]
    high = edge_warnings(best, axis({1e-3: 3.3, 3e-3: 3.0, 1e-2: 2.8}))
    assert len(high) == 1 and "largest" in high[0] and "(0.01)" in high[0]
    # string axes, single values and runs that did not finish are not judged
    assert edge_warnings(best, {"schedule": [{"value": "cosine", "best_loss": 3.0},
                                             {"value": "wsd", "best_loss": 2.9}]}) == []
    assert edge_warnings(best, axis({1e-3: 3.0})) == []
    assert edge_warnings(best, axis({1e-3: None, 3e-3: 3.0, 1e-2: 3.1})) == []
    assert edge_warnings(None, axis({1e-3: 2.9, 3e-3: 3.0})) == []
