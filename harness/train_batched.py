"""Entry point: `python -m harness.train_batched [--batch-runs K] [--sweep-dir DIR] OVERRIDES...`

A sweep on the command line, in Hydra's syntax (`optim.lr=1e-3,2e-3,4e-3 train.seed=0,1`: the
Cartesian product, as `python -m harness.train -m` would run it), trained with runs of one shape
grouped into batches of up to K (default: all of them) that each train as one stacked model in
this process (harness/batched/). Runs that cannot batch (another optimizer, a MoE, a branch: see
harness/batched/compat.py) train one after another as `python -m harness.train` would, with the
reason printed.

Each run's directory is `DIR/{hash}` (DIR: --sweep-dir, default runs/sweeps/<time>), as for the jobs
of a Hydra multirun; an explicit `run_dir=...` override wins (it needs `{hash}` when the sweep has
several runs). Relaunching the same command with the same --sweep-dir skips completed runs and
resumes the others. Exit code: the worst of the runs' (harness/outcome.py).

    python -m harness.train_batched --sweep-dir runs/lr_sweep train.steps=250 \\
        optim.lr=1e-3,2e-3,4e-3,8e-3,1.6e-2
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Sequence

from harness.checks import ConfigError
from harness.config import RunConfig


def expand_sweep(overrides: Sequence[str]) -> list[list[str]]:
    """Hydra sweep syntax -> one override list per run (the Cartesian product, Hydra's order)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [list(run) for chunk in BasicSweeper.split_arguments(parsed, None) for run in chunk]


def compose_runs(overrides: Sequence[str], sweep_dir: str) -> list[RunConfig]:
    """The validated RunConfig of every run of the sweep, each with its run_dir (`{hash}` left for
    harness.identity to resolve)."""
    from harness.ladder.overrides import compose_base, format_value

    runs = expand_sweep(overrides)
    explicit = any(o.lstrip("+").startswith("run_dir=") for o in overrides)
    if explicit and len(runs) > 1 and not any("{hash}" in o for o in overrides if o.lstrip("+").startswith("run_dir=")):
        raise ConfigError("run_dir: the sweep has several runs; put {hash} in run_dir (or drop it for "
                          "--sweep-dir/{hash})")
    cfgs = []
    for run in runs:
        cfg = compose_base(tuple(run if explicit else [*run, f"run_dir={format_value(sweep_dir + '/{hash}')}"]))
        cfg.validate()
        cfgs.append(cfg)
    return cfgs


def train_all(cfgs: list[RunConfig], batch_runs: int) -> int:
    """Batches first, then the separate runs; returns the worst exit code."""
    from harness.batched.compat import group_runs
    from harness.batched.run import run_batched
    from harness.train import train_main

    grouping = group_runs(cfgs, batch_runs)
    print(f"[harness] {len(cfgs)} run(s): {len(grouping.batches)} batch(es) of "
          f"{[len(b) for b in grouping.batches]}, {len(grouping.separate)} separate", flush=True)
    codes = []
    for members in grouping.batches:
        codes.append(run_batched([cfgs[i] for i in members]).exit_code)
    for i, reason in grouping.separate:
        print(f"[harness] run {i} trains separately: {reason}", flush=True)
        try:
            train_main(cfgs[i])
            codes.append(0)
        except SystemExit as exit_:
            codes.append(exit_.code if isinstance(exit_.code, int) else 1)
    return max(codes, key=lambda c: (c != 0, c == 75, c), default=0)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m harness.train_batched", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-runs", type=int, default=0,
                        help="at most this many runs per stacked batch (default 0: all runs of one shape)")
    parser.add_argument("--sweep-dir", default=f"runs/sweeps/{time.strftime('%Y-%m-%d_%H-%M-%S')}",
                        help="runs go to SWEEP_DIR/<config hash> (default runs/sweeps/<time>)")
    parser.add_argument("overrides", nargs="*", help="run overrides, Hydra syntax; a,b,c sweeps")
    args = parser.parse_args(argv)
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfgs = compose_runs(args.overrides, args.sweep_dir)
    except (ConfigError, HydraException, OmegaConfBaseException) as err:
        print(f"config error: {str(err).splitlines()[0]}", file=sys.stderr)
        sys.exit(2)
    try:
        code = train_all(cfgs, args.batch_runs or len(cfgs))
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(2)
    sys.exit(code)


if __name__ == "__main__":
    main()
