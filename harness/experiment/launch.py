"""Launch a plan's unfinished runs as ONE Hydra multirun (see harness/experiment/job.py).

    local           hydra/launcher=basic: one run after another in one process
    submitit_local  one process per run on this machine
    slurm           hydra/launcher=slurm (GPU nodes): ONE Slurm job array, requeued on preemption
    slurm_cpu       hydra/launcher=slurm_cpu (CPU nodes, the test cluster): the same

With `batch_runs: K` in the spec, the pending runs of one shape (harness/batched/compat.py) are
grouped into jobs of up to K runs, each trained as one stacked model (a job index `3+5+8`);
runs that cannot batch (another optimizer, a MoE, a branch) stay jobs of their own.

Completed runs are not launched at all; the others are, and harness.train resumes a run that has
a checkpoint. Hydra's output (and submitit's logs, `.submitit/`) go to DIR/launches/<time>/.

A plan with stages (cooldown branches start from their parent's checkpoint) launches one multirun
per stage, each after the previous one ended; a run whose parent did not complete is held back
(and shown as not started). With --no-wait such a plan is driven by a background
`python -m harness.experiment launch DIR` process (its log is DIR/launches/<time>.log); if that
process dies, `run` again: completed runs are skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import AbstractSet, Any, Sequence

from harness.experiment.status import run_states
from harness.ladder.overrides import format_value

LAUNCHERS = {"local": "basic", "submitit_local": "submitit_local", "slurm": "slurm", "slurm_cpu": "slurm_cpu"}
# What conf/sweep/slurm.yaml sets on every run: checkpoint and requeue on Slurm's signals.
SLURM_RUN_SETTINGS = ["train.requeue=true", "train.preempt_signals=[SIGTERM,SIGUSR1,SIGUSR2]"]


def pending_indices(plan: dict[str, Any], stage: int | None = None, skip: AbstractSet[str] = frozenset()) -> list[int]:
    """Runs not completed and not in `skip` (of `stage`, when given) whose parent, if any, completed."""
    states = run_states(plan)
    completed = {plan["runs"][s.index]["run_id"] for s in states if s.state == "completed"}
    out = []
    for s in states:
        run = plan["runs"][s.index]
        if s.state == "completed" or s.run_id in skip or (stage is not None and run.get("stage", 0) != stage):
            continue
        if run.get("parent") and run["parent"] not in completed:
            continue
        out.append(s.index)
    return out


def stages(plan: dict[str, Any]) -> list[int]:
    return sorted({run.get("stage", 0) for run in plan["runs"]})


def job_units(plan: dict[str, Any], indices: Sequence[int]) -> list[str]:
    """The jobs of a stage: one index per run, or with the spec's `batch_runs` > 1 runs of one shape
    joined into batched jobs (`3+5+8`); returned in plan order of their first run."""
    batch_runs = int(plan.get("spec", {}).get("batch_runs") or 1)
    if batch_runs == 1 or len(indices) < 2:
        return [str(i) for i in indices]
    from harness.batched.compat import group_runs
    from harness.ladder.overrides import compose_base

    cfgs = [compose_base(tuple(plan["runs"][i]["train_overrides"])) for i in indices]
    grouping = group_runs(cfgs, batch_runs)
    units = [[indices[j] for j in batch] for batch in grouping.batches]
    units += [[indices[j]] for j, _ in grouping.separate]
    return ["+".join(str(i) for i in unit) for unit in sorted(units)]


def job_command(out_dir: Path, indices: Sequence[int | str], launcher: str, launcher_args: Sequence[str],
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
           wait: bool = True, skip: AbstractSet[str] = frozenset()) -> int:
    """Launch the pending runs, stage by stage; returns the launcher's exit code (0: nothing to launch).
    Runs in `skip` (ids) are not launched (a kind that plans in rounds: runs that diverged)."""
    if not pending_indices(plan, skip=skip):
        done = sum(s.state == "completed" for s in run_states(plan))
        print(f"[experiment] all {done} run(s) completed; nothing to launch" if done == len(plan["runs"]) else
              f"[experiment] nothing to launch: {len(skip)} run(s) diverged" if skip and done + len(skip) == len(plan["runs"])
              else "[experiment] nothing to launch: the runs not completed wait on parents that did not complete")
        return 0
    levels = stages(plan)
    if len(levels) > 1 and not wait and launcher != "local":
        return _drive_in_background(out_dir, launcher, launcher_args)
    code = 0
    for number, stage in enumerate(levels, start=1):
        indices = pending_indices(plan, stage, skip)
        if not indices:
            continue
        stage_code = launch_stage(out_dir, plan, indices, launcher, launcher_args, wait=wait,
                                  label=f" (stage {number} of {len(levels)})" if len(levels) > 1 else "")
        code = code or stage_code
    return code


def launch_stage(out_dir: Path, plan: dict[str, Any], indices: list[int], launcher: str,
                 launcher_args: Sequence[str], wait: bool, label: str = "") -> int:
    """One Hydra multirun over `indices` (one Slurm array with slurm)."""
    done = sum(s.state == "completed" for s in run_states(plan))
    sweep_dir = Path(out_dir).resolve() / "launches" / time.strftime("%Y-%m-%d_%H-%M-%S")
    units = job_units(plan, indices)
    cmd = job_command(out_dir, units, launcher, launcher_args, sweep_dir)
    batched = [u for u in units if "+" in u]
    jobs = f" as {len(units)} job(s), {len(batched)} of them batched ({', '.join(batched)})" if batched else ""
    print(f"[experiment] launching {len(indices)} run(s){label}{jobs} with {launcher} ({done} completed, skipped); "
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


def _drive_in_background(out_dir: Path, launcher: str, launcher_args: Sequence[str]) -> int:
    """A staged plan without waiting: a detached `launch DIR` process runs the stages in turn."""
    launches = Path(out_dir).resolve() / "launches"
    launches.mkdir(parents=True, exist_ok=True)
    log_path = launches / f"{time.strftime('%Y-%m-%d_%H-%M-%S')}-stages.log"
    cmd = [sys.executable, "-m", "harness.experiment", "launch", str(Path(out_dir).resolve()),
           "--launcher", launcher, *(f"--launcher-arg={a}" for a in launcher_args)]
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    print(f"[experiment] the plan has stages (branches wait for their parents): a background process "
          f"(pid {proc.pid}) launches them in turn; log {log_path}; follow with "
          f"`python -m harness.experiment status {out_dir}`")
    return 0


def _submitted(sweep_dir: Path) -> bool:
    folder = sweep_dir / ".submitit"
    return folder.is_dir() and any(p.name[0].isdigit() for p in folder.iterdir())
