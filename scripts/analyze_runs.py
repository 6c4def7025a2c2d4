"""Compute-optimal and hyperparameter analyses of a table of runs (CSV in, JSON out).

    python scripts/analyze_runs.py isoflop    runs.csv [--budgets 6e18 1e19 ...] [--rel-tol 0.05]
    python scripts/analyze_runs.py envelope   curves.csv [--run-column run]
    python scripts/analyze_runs.py steplaw    runs.csv [--tol 0.0025] [--n-boot 1000]
    python scripts/analyze_runs.py powerlines runs.csv [--n-boot 1000]
    python scripts/analyze_runs.py critbatch  curves.csv --targets 3.2 3.1 3.0

Columns: isoflop N, D, loss (C optional, else 6ND); envelope N, D (tokens so far), loss, run;
steplaw N, D, lr, B, loss; powerlines N, D, B, lr, wd, loss; critbatch run, B, step, loss.
The result is printed as JSON (and written to --out if given). The Python API is in
harness/fit/isoflop.py and harness/fit/laws/hyperparams.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fit.isoflop import envelope_minimum, isoflop_profiles  # noqa: E402
from harness.fit.laws.hyperparams import (  # noqa: E402
    critical_batch_scan,
    fit_power_lines,
    fit_step_law,
)


def analyze(args: argparse.Namespace) -> dict[str, object]:
    table = pd.read_csv(args.csv)
    if args.kind == "isoflop":
        result = isoflop_profiles(table, rel_tol=args.rel_tol, budgets=args.budgets)
        return {**result.summary(), "optima": result.optima.to_dict(orient="records")}
    if args.kind == "envelope":
        result = envelope_minimum(table, run_column=args.run_column)
        return {**result.summary(), "optima": result.optima.to_dict(orient="records")}
    if args.kind == "steplaw":
        return fit_step_law(table, tol=args.tol, n_bootstrap=args.n_boot, seed=args.seed).summary()
    if args.kind == "powerlines":
        result = fit_power_lines(table, n_bootstrap=args.n_boot, seed=args.seed)
        return {**result.summary(), "cells": result.cells.to_dict(orient="records")}
    scan = critical_batch_scan(table, args.targets, run=args.run_column)
    return {"per_target": scan.per_target.to_dict(orient="records"),
            "B_crit_vs_D": scan.vs_data.as_dict(), "B_crit_vs_loss": scan.vs_loss.as_dict()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", choices=["isoflop", "envelope", "steplaw", "powerlines", "critbatch"])
    ap.add_argument("csv", type=Path)
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    ap.add_argument("--budgets", type=float, nargs="+", help="isoflop: nominal FLOP budgets")
    ap.add_argument("--rel-tol", type=float, default=0.05, help="isoflop: budget grouping tolerance")
    ap.add_argument("--run-column", default="run", help="envelope/critbatch: run id column")
    ap.add_argument("--tol", type=float, default=0.0025, help="steplaw: near-optimal tolerance")
    ap.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--targets", type=float, nargs="+", help="critbatch: target losses")
    args = ap.parse_args()
    if args.kind == "critbatch" and not args.targets:
        ap.error("critbatch needs --targets")
    try:
        result = analyze(args)
    except ValueError as err:  # bad input: say what is wrong, without a traceback
        sys.exit(f"{args.kind}: {err}")
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
