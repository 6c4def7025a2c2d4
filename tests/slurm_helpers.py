"""Slurm test helpers shared by tests/test_slurm.py and tests/test_experiment.py: the session's
single-node cluster (fixtures `slurm_conf`, `slurm_env`, made session-wide by tests/conftest.py)
and small waits on jobs, array ids and curve files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SLURM_DIR = Path(os.environ.get("HARNESS_SLURM_DIR", "/tmp/slurm-harness"))


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    if shutil.which("apt-get") is None and shutil.which("slurmctld") is None:
        pytest.skip("no apt-get to install Slurm (and no Slurm installed): slurm tests need Debian/Ubuntu")
    if os.geteuid() != 0:
        pytest.skip("slurm/start_slurm.sh runs the daemons as root; run the slurm tests as root (e.g. in CI)")
    proc = subprocess.run(["bash", str(ROOT / "slurm/start_slurm.sh"), str(SLURM_DIR)], capture_output=True,
                          text=True, timeout=900)
    if proc.returncode == 3 and "apt-get not found" in proc.stderr:
        pytest.skip(proc.stderr.strip())
    assert proc.returncode == 0, proc.stdout + proc.stderr
    was_running = "already running" in proc.stderr
    conf = str(SLURM_DIR / "slurm.conf")
    assert f"export SLURM_CONF={conf}" in proc.stdout
    yield conf
    if not was_running:  # leave a cluster that was up before the session as it was
        subprocess.run(["bash", str(ROOT / "slurm/stop_slurm.sh"), str(SLURM_DIR)], timeout=120)


@pytest.fixture(scope="session")
def slurm_env(slurm_conf, harness_cache, tmp_path_factory) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SLURM_CONF": slurm_conf,
        "HARNESS_CACHE": str(harness_cache),
        "HARNESS_VENV": sys.prefix,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "HF_HOME": str(tmp_path_factory.mktemp("hf_home")),
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_MODE": "offline",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def slurm(*args: str, env: dict[str, str], check: bool = True) -> str:
    proc = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=30)
    if check:
        assert proc.returncode == 0, f"{args}: {proc.stderr}"
    return proc.stdout.strip()


def array_job_id(submitit_parent: Path) -> str:
    """The one Slurm array job a sweep submitted (its submitit folder is named by the job id)."""
    deadline = time.time() + 30
    while time.time() < deadline:
        folder = submitit_parent / ".submitit"
        ids = {p.name.split("_")[0] for p in folder.iterdir() if p.is_dir() and p.name[0].isdigit()} \
                if folder.is_dir() else set()
        if ids:
            assert len(ids) == 1, ids
            return ids.pop()
        time.sleep(0.1)
    raise AssertionError(f"no submitit job folder under {submitit_parent}")


def wait_rows(curve: Path, n: int, timeout: float = 120, proc: subprocess.Popen | None = None) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"ended before the preemption point:\n{proc.stdout.read() if proc.stdout else ''}")
        if curve.exists() and sum(1 for _ in open(curve)) >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{curve} did not reach {n} rows in {timeout} s")


def release_when_requeued(job: str, env: dict[str, str], done, timeout: float = 120) -> list[str]:
    """After a requeue, Slurm holds the job (Reason=BeginTime) for a while; start it sooner instead.

    Not in the same second as the requeue: slurmd revokes the old launch credential with a
    one-second resolution, so a relaunch within that second is killed ("Job credential revoked").
    Returns the squeue states seen."""
    seen: list[str] = []
    pending_since: float | None = None
    deadline = time.time() + timeout
    while time.time() < deadline and not done():
        state = slurm("squeue", "-h", "-j", job, "-o", "%T", env=env, check=False)
        if state and (not seen or seen[-1] != state):
            seen.append(state)
        if state == "PENDING":
            pending_since = pending_since or time.time()
            if time.time() - pending_since >= 2.0:
                slurm("scontrol", "update", f"JobId={job}", "StartTime=now", env=env, check=False)
        time.sleep(0.5)
    return seen


def requeue_midway(launcher: subprocess.Popen, curve: Path, submitit_parent: Path, env: dict[str, str],
                   timeout: float = 180) -> tuple[str, list[str]]:
    """Once `curve` has 30 rows, `scontrol requeue` the launcher's Slurm array job, release the
    requeued task, and wait for the launcher to end (killed if anything here fails).
    Returns the launcher's output and the squeue states seen after the requeue."""
    try:
        wait_rows(curve, 30, proc=launcher)
        job = array_job_id(submitit_parent)
        slurm("scontrol", "requeue", job, env=env)
        seen = release_when_requeued(job, env, done=lambda: launcher.poll() is not None)
        output, _ = launcher.communicate(timeout=timeout)
    finally:
        if launcher.poll() is None:
            launcher.kill()
    return output, seen


def sacct_array_states(job: str, n_tasks: int, env: dict[str, str]) -> list[str]:
    """`JobID|State` of the array's tasks once all `n_tasks` are COMPLETED in accounting (which lags
    a job's end by a second or so), or whatever accounting shows after ~20 s."""
    expected = [f"{job}_{i}|COMPLETED" for i in range(n_tasks)]
    for _ in range(40):
        acct = sorted(slurm("sacct", "-n", "-X", "-P", "-j", job, "-o", "JobID,State", env=env).splitlines())
        if acct == expected:
            break
        time.sleep(0.5)
    return acct
