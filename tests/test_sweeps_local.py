"""Sweeps without Slurm: Hydra multirun with the basic and submitit_local launchers, hash run
directories, skip on relaunch, and the lock that keeps two launches out of one run."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, TINY, run_train, train_cmd, wait_for_rows


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_multirun_sweep_hash_dirs_and_skip_on_relaunch(train_env, tmp_path, launcher):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "harness.train", "-m", *TINY, f"hydra/launcher={launcher}",
           f"hydra.sweep.dir={tmp_path / 'hydra'}", f'run_dir="{sweep}/{{hash}}"', "optim.lr=1e-3,3e-3"]
    if launcher == "submitit_local":
        cmd += ["hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"]
    proc = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(runs) == 2 and all(len(p.name) == 12 for p in runs)
    lrs = sorted(yaml.safe_load((p / "config.yaml").read_text())["optim"]["lr"] for p in runs)
    assert lrs == [1e-3, 3e-3]
    for p in runs:
        assert json.loads((p / "status.json").read_text())["state"] == "completed"
    before = {p: (p / "curve.jsonl").read_bytes() for p in runs}
    again = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert sorted(p for p in sweep.iterdir() if p.is_dir()) == runs  # same configs, same dirs
    assert all((p / "curve.jsonl").read_bytes() == before[p] for p in runs)


def test_two_launches_never_write_one_run(train_env, tmp_path):
    run_dir = tmp_path / "run"
    # Far more steps than the second launch's start-up takes, so the first is still training when the
    # second arrives (with 400 steps a quiet machine finished the first before the second started).
    first = subprocess.Popen(train_cmd(f"run_dir={run_dir}", "train.steps=200000"), cwd=ROOT, env=train_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_rows(run_dir / "curve.jsonl", 5, first)
        second = run_train(train_env, f"run_dir={run_dir}", "train.steps=200000")
        assert first.poll() is None, "the first launch ended before the second arrived: nothing was tested"
        assert second.returncode == 1 and "in use by another process" in second.stderr
    finally:
        first.terminate()  # a preemption signal: the run checkpoints and exits
        first.wait(timeout=300)
    rows = [json.loads(line)["step"] for line in (run_dir / "curve.jsonl").read_text().splitlines()]
    assert len(rows) >= 5 and rows == list(range(1, len(rows) + 1))  # one writer: no repeated or interleaved step


def _hash_dirs(sweep):
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "config.yaml").is_file())


@pytest.mark.parametrize("launcher", ["basic", "submitit_local"])
def test_multirun_without_run_dir_gets_one_hash_dir_per_job_and_relaunch_skips(train_env, tmp_path, launcher):
    """`-m` with no run_dir: each job defaults to <hydra.sweep.dir>/<hash>, not one shared runs/<name>."""
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "harness.train", "-m", *TINY, f"hydra/launcher={launcher}",
           f"hydra.sweep.dir={sweep}", "optim.lr=1e-3,2e-3"]
    if launcher == "submitit_local":
        cmd += ["hydra.launcher.timeout_min=10", "hydra.launcher.cpus_per_task=1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=train_env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = _hash_dirs(sweep)
    assert len(runs) == 2 and all(len(p.name) == 12 for p in runs), [p.name for p in sweep.iterdir()]
    assert not (tmp_path / "runs").exists()  # nothing went to the single-run default
    assert sorted(yaml.safe_load((p / "config.yaml").read_text())["optim"]["lr"] for p in runs) == [1e-3, 2e-3]
    for p in runs:
        assert yaml.safe_load((p / "config.yaml").read_text())["run_dir"] == str(p)
        assert json.loads((p / "status.json").read_text())["state"] == "completed"
    before = {p: (p / "curve.jsonl").read_bytes() for p in runs}
    again = subprocess.run(cmd, cwd=tmp_path, env=train_env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    # submitit_local keeps each job's stdout in its own log file under the sweep dir
    out = again.stdout if launcher == "basic" else "".join(p.read_text() for p in sweep.rglob("*_log.out"))
    assert out.count("already completed; skipping") == 2, out[-3000:]
    assert _hash_dirs(sweep) == runs
    assert all((p / "curve.jsonl").read_bytes() == before[p] for p in runs)


def test_single_run_without_run_dir_keeps_runs_name(train_env, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "harness.train", *TINY, "name=solo"], cwd=tmp_path, env=train_env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((tmp_path / "runs" / "solo" / "status.json").read_text())["state"] == "completed"
