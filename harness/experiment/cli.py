"""`python -m harness.experiment plan|run|status|report`: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from harness.checks import ConfigError
from harness.experiment import __doc__ as PACKAGE_DOC
from harness.experiment.kinds import KINDS
from harness.experiment.launch import LAUNCHERS, launch
from harness.experiment.plan import format_plan, plan_experiment, read_plan, write_plan
from harness.experiment.report import write_report
from harness.experiment.spec import load_spec
from harness.experiment.status import format_status, run_states

EXIT_BAD_SPEC, EXIT_ERROR = 2, 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m harness.experiment", description=PACKAGE_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("plan", "write DIR/plan.csv and plan.json and print the plan; trains nothing"),
                       ("run", "plan, then launch every run not yet completed as one Hydra multirun")):
        p = sub.add_parser(name, help=text)
        p.add_argument("spec", help="conf/experiment/<SPEC>.yaml, or a path to a spec .yaml")
        p.add_argument("overrides", nargs="*", help="spec overrides, dotlist syntax: name=x grid.axes.optim.lr=[1e-3,3e-3]")
        p.add_argument("--dir", type=Path, default=None, help="experiment directory (default experiments/<name>)")
        p.add_argument("--tokens-per-s", type=float, default=None,
                       help="training throughput for the time estimate (else the spec's tokens_per_s)")
        p.add_argument("--no-data-check", action="store_true",
                       help="do not prepare the data to count its unique tokens (no repetition check)")
        if name == "run":
            _add_launcher_args(p)
            p.add_argument("--no-wait", action="store_true", help="return once submitted (submitit launchers)")
    p = sub.add_parser("launch", help="launch the runs of DIR's existing plan.json not yet completed, stage "
                                      "by stage, and wait (what `run --no-wait` drives in the background)")
    p.add_argument("dir", type=Path, help="the experiment directory")
    _add_launcher_args(p)
    for name, text in (("status", "counts by state and a per-run table"),
                       ("report", "collect the runs and write report.md, report.json and plots")):
        p = sub.add_parser(name, help=text)
        p.add_argument("dir", type=Path, help="the experiment directory")
    return parser


def _add_launcher_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--launcher", choices=tuple(LAUNCHERS), default="local")
    p.add_argument("--launcher-arg", action="append", default=[], metavar="OVERRIDE",
                   help="a Hydra launcher override, e.g. hydra.launcher.partition=debug (repeatable)")


def _plan(args: argparse.Namespace):
    spec = load_spec(args.spec, args.overrides)
    out_dir = args.dir if args.dir is not None else Path("experiments") / spec.name
    runs, notes = plan_experiment(spec, out_dir, args.tokens_per_s, check_data=not args.no_data_check)
    write_plan(spec, runs, out_dir)
    for note in notes:
        print(f"note: {note}")
    print(format_plan(spec, runs))
    print(f"wrote {out_dir / 'plan.csv'} and {out_dir / 'plan.json'}")
    return spec, out_dir


def _finish(name: str, plan: dict, code: int, done: set[str] = frozenset()) -> int:
    """Print where the runs stand after a launch; non-zero when any did not complete (runs in `done`
    count as finished: a diverged setting is a result for a kind that plans in rounds)."""
    states = run_states(plan)
    print(format_status(name, states))
    unfinished = [s for s in states if s.state != "completed" and s.run_id not in done]
    if done and not unfinished:
        print(f"[experiment] {len(done)} run(s) diverged (non-finite loss); the kind counts them as the worst "
              "result of their setting")
        return 0
    if code != 0 or unfinished:
        print(f"error: {len(unfinished)} run(s) not completed (launcher exit {code}); "
              "relaunch the same command to resume them", file=sys.stderr)
        return EXIT_ERROR
    return 0


def _run_rounds(args: argparse.Namespace, spec, out_dir: Path, plan: dict) -> int:
    """A kind that plans in rounds: launch the pending runs, re-plan with their results, launch the
    new ones, ... until a re-plan adds no run (the kind's own guard, e.g. max_rounds, ends it)."""
    if args.no_wait:
        print("[experiment] this kind plans in rounds (each needs the previous results): --no-wait "
              "launches only the runs known now; run again once they finished", file=sys.stderr)
        return launch(out_dir, plan, args.launcher, args.launcher_arg, wait=False)
    code, number = 0, 1
    while True:
        code = launch(out_dir, plan, args.launcher, args.launcher_arg, skip=_done_for_good(plan)) or code
        known = {r["run_id"] for r in plan["runs"]}
        runs, notes = plan_experiment(spec, out_dir, args.tokens_per_s, check_data=not args.no_data_check)
        new = [r for r in runs if r.run_id not in known]
        if not new:
            break
        number += 1
        write_plan(spec, runs, out_dir)
        plan = read_plan(out_dir)
        print(f"[experiment] round {number}: the results so far add {len(new)} run(s) "
              f"({len(runs)} planned); plan.json rewritten", flush=True)
    for note in notes:
        print(f"note: {note}")
    return _finish(spec.name, plan, code, done=_done_for_good(plan))


def _done_for_good(plan: dict) -> set[str]:
    """Run ids that diverged (failed on a non-finite loss): a result for a kind that plans in rounds."""
    from harness.experiment.results import DIVERGED_MARKERS

    states = run_states(plan)
    return {plan["runs"][s.index]["run_id"] for s in states
            if s.state == "failed" and any(m in (s.reason or "") for m in DIVERGED_MARKERS)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "plan":
            _plan(args)
            return 0
        if args.command == "run":
            spec, out_dir = _plan(args)
            plan = read_plan(out_dir)
            if KINDS.get(spec.kind).rounds:
                return _run_rounds(args, spec, out_dir, plan)
            code = launch(out_dir, plan, args.launcher, args.launcher_arg, wait=not args.no_wait)
            if args.no_wait and args.launcher != "local":
                return code
            return _finish(spec.name, plan, code)
        plan = read_plan(args.dir)
        if args.command == "launch":
            return _finish(plan["spec"]["name"], plan, launch(args.dir, plan, args.launcher, args.launcher_arg))
        if args.command == "status":
            print(format_status(plan["spec"]["name"], run_states(plan)))
            return 0
        report = write_report(args.dir)
        print(report.markdown)
        print(f"wrote {args.dir / 'report.md'}, {args.dir / 'report.json'}"
              + "".join(f", {p}" for p in report.plots) + f" and {args.dir / 'runs.csv'}")
        for warning in report.summary.get("warnings", []):
            print(f"warning: {warning}", file=sys.stderr)
        return 0
    except ConfigError as err:  # ExperimentError, or an unknown kind from the registry
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_SPEC
