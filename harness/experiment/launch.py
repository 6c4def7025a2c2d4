"""Launch a plan's unfinished runs as ONE Hydra multirun (see harness/experiment/job.py).

    local           hydra/launcher=basic: one run after another in one process
    submitit_local  one process per run on this machine
    slurm           hydra/launcher=slurm (GPU nodes): ONE Slurm job array, requeued on preemption
    slurm_cpu       hydra/launcher=slurm_cpu (CPU nodes, the test cluster): the same

Completed runs are not launched at all; the others are, and harness.train resumes a run that has
a checkpoint. Hydra's output (and submitit's logs, `.submitit/`) go to DIR/launches/<time>/.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

from harness.experiment.status import run_states
from harness.ladder.overrides import format_value

LAUNCHERS = {"local": "basic", "submitit_local": "submitit_local", "slurm": "slurm", "slurm_cpu": "slurm_cpu"}
# What conf/sweep/slurm.yaml sets on every run: checkpoint and requeue on Slurm's signals.
SLURM_RUN_SETTINGS = ["train.requeue=true", "train.preempt_signals=[SIGTERM,SIGUSR1,SIGUSR2]"]


def pending_indices(plan: dict[str, Any]) -> list[int]:
    return [s.index for s in run_states(plan) if s.state != "completed"]


def job_command(out_dir: Path, indices: Sequence[int], launcher: str, launcher_args: Sequence[str],
                sweep_dir: Path) -> list[str]:
    extra = SLURM_RUN_SETTINGS if launcher.startswith("slurm") else []
    return [sys.executable, "-m", "harness.experiment.job", "-m",
            f"hydra/launcher={LAUNCHERS[launcher]}",
            f"hydra.sweep.dir={format_value(str(sweep_dir))}",
            f"+experiment_plan={format_value(str(Path(out_dir).resolve() / 'plan.json'))}",
            f"+experiment_extra={format_value(extra)}",
            f"+experiment_run={','.join(str(i) for i in indices)}",
            *launcher_args]


def launch(out_dir: Path, plan: dict[str, Any], launcher: str, launcher_args: Sequence[str] = (),
           wait: bool = True) -> int:
    """Launch the pending runs; returns the launcher process's exit code (0 when nothing to launch)."""
    indices = pending_indices(plan)
    done = len(plan["runs"]) - len(indices)
    if not indices:
        print(f"[experiment] all {done} run(s) completed; nothing to launch")
        return 0
    sweep_dir = Path(out_dir).resolve() / "launches" / time.strftime("%Y-%m-%d_%H-%M-%S")
    cmd = job_command(out_dir, indices, launcher, launcher_args, sweep_dir)
    print(f"[experiment] launching {len(indices)} run(s) with {launcher} ({done} completed, skipped); "
          f"launcher output in {sweep_dir}", flush=True)
    if wait or launcher == "local":
        return subprocess.run(cmd, env=os.environ.copy()).returncode
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log = open(sweep_dir / "launch.log", "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    (sweep_dir / "launch.pid").write_text(f"{proc.pid}\n")
    # Return once the jobs are submitted: submitit names a folder after each job id.
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not _submitted(sweep_dir):
        time.sleep(0.2)
    if proc.poll() not in (None, 0):
        print(f"[experiment] the launcher failed (exit {proc.returncode}); see {sweep_dir / 'launch.log'}",
              file=sys.stderr)
        return proc.returncode or 1
    jobs = sorted({p.name.split("_")[0] for p in (sweep_dir / ".submitit").glob("[0-9]*")}) \
        if (sweep_dir / ".submitit").is_dir() else []
    print(f"[experiment] submitted{' job ' + ', '.join(jobs) if jobs else ''}; the launcher waits in the background "
          f"(pid {proc.pid}, log {sweep_dir / 'launch.log'}); follow with `python -m harness.experiment status {out_dir}`")
    return 0


def _submitted(sweep_dir: Path) -> bool:
    folder = sweep_dir / ".submitit"
    return folder.is_dir() and any(p.name[0].isdigit() for p in folder.iterdir())
