"""The job every launcher runs: `python -m harness.experiment.job -m +experiment_plan=PLAN.json
+experiment_run=0,3,4 hydra/launcher=...` (a job `3+5+8` trains those runs as one stacked batch,
harness/batched/: launch.py groups them when the spec has `batch_runs`).

Hydra's sweepers only make Cartesian products, and a plan is a list of unrelated override sets.
So the sweep has ONE synthetic axis, the run's index in plan.json; Hydra hands the list of indices
to the launcher as one batch (the basic launcher runs them in turn in this process; submitit_local
starts one process each; submitit_slurm submits them as ONE Slurm job array), and each job looks
its index up and composes that run's `python -m harness.train` overrides (stored in plan.json)
on conf/config.yaml, then trains it through harness.train's own entry (`train_main`: validation, the
`{hash}` run directory, skip when completed, resume from a checkpoint, status and exit codes).

Launcher-level run settings (`train.requeue=true` and the preemption signals for Slurm) come in as
`+experiment_extra=[...]`: they are not part of a run's identity (harness/identity.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.config import register_configs


def run_overrides(plan_file: str, index: int, extra: list[str]) -> list[str]:
    runs = json.loads(Path(plan_file).read_text())["runs"]
    if not 0 <= index < len(runs):
        raise SystemExit(f"experiment_run={index}: {plan_file} has runs 0..{len(runs) - 1}")
    return [*runs[index]["train_overrides"], *extra]


def _job(cfg: Any) -> int:
    from hydra import compose
    from hydra.core.hydra_config import HydraConfig

    from harness.outcome import EXIT_PREEMPTED
    from harness.train import train_main

    indices = [int(i) for i in str(cfg.experiment_run).split("+")]
    extra = list(cfg.get("experiment_extra") or [])
    run_cfgs = [compose(config_name="config", overrides=run_overrides(cfg.experiment_plan, i, extra)) for i in indices]
    in_process = "BasicLauncher" in str(HydraConfig.get().launcher.get("_target_", ""))
    try:
        if len(run_cfgs) == 1:
            train_main(run_cfgs[0])
        else:
            train_batch_main(run_cfgs)
    except SystemExit as exit_:
        # harness.train exits with the run's code. In a process of its own (submitit) that is the
        # job's end, as for `python -m harness.train`; in the basic launcher's shared process a
        # failed run would end the whole sweep, so its code is returned and the next run starts.
        # A preemption (a signal: Ctrl-C, SIGTERM) does stop the sweep. `run` reads every run's
        # status.json afterwards either way.
        code = exit_.code if isinstance(exit_.code, int) else 1
        if not in_process or code in (0, EXIT_PREEMPTED):
            raise
        print(f"[experiment] run {cfg.experiment_run} ended with exit code {code}", flush=True)
        return code
    return 0


def train_batch_main(run_cfgs: list[Any]) -> None:
    """Train composed run configs as one batch (harness/batched/run.py); exit with the worst run's code."""
    import sys

    from harness.batched.run import run_batched
    from harness.config import ConfigError, to_run_config

    try:
        result = run_batched([to_run_config(c) for c in run_cfgs])
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    # Success returns, as train_main does: a SystemExit(0) would end the basic launcher's shared
    # process after the first batched job (the rest of the sweep never started).
    if result.exit_code != 0:
        sys.exit(result.exit_code)


register_configs()


def main() -> None:
    import hydra

    conf_dir = str(Path(__file__).resolve().parents[2] / "conf")
    hydra.main(version_base="1.3", config_path=conf_dir, config_name="config")(_job)()


if __name__ == "__main__":
    main()
