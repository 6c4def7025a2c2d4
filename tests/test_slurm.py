"""Sweeps and preemption on a real single-node Slurm cluster (slurm/start_slurm.sh).

The session fixture starts the cluster (installing it with apt-get if missing; about 5 s when
installed, 15-40 s otherwise) and stops it at the end. Covers: a 4-run Hydra sweep through the
submitit Slurm launcher (`+sweep=slurm_cpu`), relaunching it (every run skipped, curves untouched),
and preemption both ways: `scontrol requeue` of a submitit sweep job (Slurm sends SIGTERM) and
`scancel --signal=USR1` of a job from slurm/cpu.sbatch (the run requeues itself); both resume to
a curve identical to an uninterrupted run's.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, TINY, read_rows, run_train
from slurm_helpers import array_job_id, release_when_requeued, requeue_midway, sacct_array_states, slurm, wait_rows

pytestmark = pytest.mark.slurm

TINY_NO_SCHEDULE = [o for o in TINY if not o.startswith("schedule=")]
DETERMINISTIC = ["train.steps=300", "train.checkpoint_every=50", "train.deterministic=true", "train.num_threads=1",
                 "train.eval_every=50"]


def sweep_cmd(sweep: Path, submitit_dir: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "harness.train", "-m", "+sweep=slurm_cpu", f"hydra.sweep.dir={sweep / submitit_dir}",
            f"run_dir='{sweep}/runs/{{hash}}'", *TINY_NO_SCHEDULE, *overrides]


def assert_continuous_and_identical(run_dir: Path, reference: Path, stopped_at: int) -> None:
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed", status
    assert status["resumed_from"] == stopped_at
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 301))  # every step once: none doubled or missing
    ref = read_rows(reference)
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]
    assert [r.get("val_loss") for r in rows] == [r.get("val_loss") for r in ref]


@pytest.fixture(scope="module")
def finished_sweep(slurm_env, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    sweep = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run(sweep_cmd(sweep, "launch1", "optim.lr=1e-3,3e-3", "schedule=cosine,wsd"), cwd=ROOT,
                          env=slurm_env, capture_output=True, text=True, timeout=300)
    return sweep, proc


def test_sweep_through_submitit_slurm_completes(finished_sweep, slurm_env, tmp_path):
    sweep, proc = finished_sweep
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Submitit 'slurm' sweep output dir" in proc.stdout + proc.stderr
    run_dirs = sorted(p for p in (sweep / "runs").iterdir() if p.is_dir())
    assert len(run_dirs) == 4  # one directory per config hash
    configs = set()
    for run_dir in run_dirs:
        status = json.loads((run_dir / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == 20
        assert [r["step"] for r in read_rows(run_dir)] == list(range(1, 21))
        import yaml

        cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
        assert cfg["train"]["requeue"] is True and "SIGUSR2" in cfg["train"]["preempt_signals"]
        configs.add((cfg["optim"]["lr"], cfg["schedule"]["name"]))
    assert configs == {(1e-3, "cosine"), (1e-3, "wsd"), (3e-3, "cosine"), (3e-3, "wsd")}
    # It ran as one Slurm array job of 4 tasks, recorded by accounting.
    job = array_job_id(sweep / "launch1")
    assert sacct_array_states(job, 4, slurm_env) == [f"{job}_{i}|COMPLETED" for i in range(4)]
    if (ROOT / "harness" / "collect.py").exists():
        out = tmp_path / "table"
        proc = subprocess.run([sys.executable, "-m", "harness.collect", str(sweep / "runs"), "--out", str(out)],
                              cwd=ROOT, env=slurm_env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        import pandas as pd

        table = pd.read_csv(out.with_suffix(".csv"))
        assert len(table) == 4 and set(table["status"]) == {"completed"}


def test_relaunching_finished_sweep_runs_nothing(finished_sweep, slurm_env):
    sweep, first = finished_sweep
    assert first.returncode == 0, first.stderr[-3000:]
    curves = sorted((sweep / "runs").glob("*/curve.jsonl"))
    assert len(curves) == 4
    before = {c: (c.read_bytes(), c.stat().st_mtime_ns) for c in curves}
    statuses = {c: c.with_name("status.json").read_bytes() for c in curves}
    proc = subprocess.run(sweep_cmd(sweep, "launch2", "optim.lr=1e-3,3e-3", "schedule=cosine,wsd"), cwd=ROOT,
                          env=slurm_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    logs = sorted((sweep / "launch2" / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 4
    for log in logs:
        assert "already completed; skipping" in log.read_text(), log.read_text()
    assert sorted((sweep / "runs").glob("*/curve.jsonl")) == curves  # no new run directory
    for c in curves:
        assert (c.read_bytes(), c.stat().st_mtime_ns) == before[c]
        assert c.with_name("status.json").read_bytes() == statuses[c]


@pytest.fixture(scope="module")
def reference_run(slurm_env, tmp_path_factory) -> Path:
    """The uninterrupted run both preemption tests compare with (run outside Slurm)."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    proc = run_train(slurm_env, f"run_dir={run_dir}", *DETERMINISTIC)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_scontrol_requeue_of_submitit_job_resumes_continuous_curve(slurm_env, reference_run, tmp_path):
    """Preemption as a cluster does it: `scontrol requeue` makes Slurm send SIGTERM; the run
    checkpoints and exits 75; the requeued array task reruns submitit's pickled job, which resumes
    from the checkpoint; the Hydra launcher waits through it and returns the result."""
    sweep = tmp_path / "sweep"
    launcher = subprocess.Popen(sweep_cmd(sweep, "launch", *DETERMINISTIC), cwd=ROOT, env=slurm_env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while not (sweep / "runs").is_dir() or not list((sweep / "runs").iterdir()):
        if time.time() >= deadline or launcher.poll() is not None:
            launcher.kill()
            raise AssertionError("the sweep job did not start")
        time.sleep(0.1)
    run_dir = next((sweep / "runs").iterdir())
    out, seen = requeue_midway(launcher, run_dir / "curve.jsonl", sweep / "launch", slurm_env, timeout=120)
    job = array_job_id(sweep / "launch")
    assert launcher.returncode == 0, out[-3000:]
    assert "PENDING" in seen
    log = next((sweep / "launch" / ".submitit").glob("*/*_log.err")).read_text()
    assert "DUE TO JOB REQUEUE" in log and "preempted: stopped by SIGTERM after step" in log
    stopped_at = int(log.split("stopped by SIGTERM after step ")[1].split(";")[0])
    assert 30 <= stopped_at < 300
    assert_continuous_and_identical(run_dir, reference_run, stopped_at)
    for _ in range(40):  # accounting lags the job's end by a second or so
        acct = slurm("sacct", "-n", "-X", "-P", "--duplicates", "-j", job, "-o", "State", env=slurm_env).splitlines()
        if acct and acct[-1] == "COMPLETED":
            break
        time.sleep(0.5)
    assert acct[0] == "REQUEUED" and acct[-1] == "COMPLETED", acct


def test_usr1_to_sbatch_job_checkpoints_and_requeues_itself(slurm_env, reference_run, tmp_path):
    """slurm/cpu.sbatch: USR1 (what --signal=B:USR1@60 sends before the time limit) makes the run
    checkpoint, mark itself preempted, exit 75 and `scontrol requeue` its own job (train.requeue=true);
    the requeued job reruns the same command and resumes."""
    run_dir = tmp_path / "run"
    out = tmp_path / "slurm-%j.out"
    job = slurm("sbatch", "--parsable", "--cpus-per-task=1", "--mem=1G", "--time=10", f"--output={out}",
                str(ROOT / "slurm/cpu.sbatch"), *TINY, f"run_dir={run_dir}", *DETERMINISTIC, env=slurm_env)
    job = job.split(";")[0]
    log = tmp_path / f"slurm-{job}.out"

    def finished() -> bool:
        return not slurm("squeue", "-h", "-j", job, "-o", "%T", env=slurm_env, check=False)

    try:
        wait_rows(run_dir / "curve.jsonl", 30)
        slurm("scancel", "--batch", "--signal=USR1", job, env=slurm_env)
        deadline = time.time() + 60
        while "requeued: True" not in (log.read_text() if log.exists() else ""):
            assert time.time() < deadline, log.read_text() if log.exists() else "no job output"
            time.sleep(0.2)
        release_when_requeued(job, slurm_env, done=finished)
    finally:
        if not finished():
            slurm("scancel", job, env=slurm_env, check=False)
    text = log.read_text()
    assert "restart 0" in text and "restart 1" in text, text
    assert "preempted: stopped by SIGUSR1 after step" in text
    stopped_at = int(text.split("stopped by SIGUSR1 after step ")[1].split(";")[0])
    assert 30 <= stopped_at < 300
    assert_continuous_and_identical(run_dir, reference_run, stopped_at)
