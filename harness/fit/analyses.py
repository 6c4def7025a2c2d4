"""Compute-optimal and hyperparameter analyses of a table of runs: CSV in, JSON out.

The CLI's `isoflop`, `envelope`, `steplaw`, `powerlines` and `critbatch` subcommands. Each reads
one CSV, runs one analysis of harness/fit/isoflop.py or harness/fit/hyperparams.py, prints the
result as JSON and, with `--out FILE`, also writes it there (atomically, only after the analysis
succeeded). A missing or unreadable file, a missing column or a table the analysis cannot use
raises `InputError` naming the file; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.files import atomic_write_text
from harness.fit.hyperparams import critical_batch_scan, fit_power_lines, fit_step_law
from harness.fit.io import InputError
from harness.fit.isoflop import envelope_minimum, isoflop_profiles


def read_table(path: Path) -> pd.DataFrame:
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found. Fix: check the path.")
    try:
        return pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot parse as CSV ({e}). Fix: write a comma-separated file with a "
                         "header row.") from None


def isoflop(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = isoflop_profiles(table, rel_tol=args.rel_tol, budgets=args.budgets)
    return {**result.summary(), "optima": result.optima.to_dict(orient="records")}


def envelope(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = envelope_minimum(table, run_column=args.run_column)
    return {**result.summary(), "optima": result.optima.to_dict(orient="records")}


def steplaw(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    return fit_step_law(table, tol=args.tol, n_bootstrap=args.n_boot, seed=args.seed).summary()


def powerlines(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = fit_power_lines(table, n_bootstrap=args.n_boot, seed=args.seed)
    return {**result.summary(), "cells": result.cells.to_dict(orient="records")}


def critbatch(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    scan = critical_batch_scan(table, args.targets, run=args.run_column)
    return {"per_target": scan.per_target.to_dict(orient="records"),
            "B_crit_vs_D": scan.vs_data.as_dict(), "B_crit_vs_loss": scan.vs_loss.as_dict()}


ANALYSES: dict[str, Callable[[pd.DataFrame, argparse.Namespace], dict[str, Any]]] = {
    "isoflop": isoflop, "envelope": envelope, "steplaw": steplaw, "powerlines": powerlines,
    "critbatch": critbatch,
}


def run(args: argparse.Namespace) -> int:
    """Run the analysis `args.mode` on `args.table`; print (and with --out, write) its JSON."""
    table = read_table(args.table)
    try:
        result = ANALYSES[args.mode](table, args)
    except ValueError as e:  # the analyses raise ValueError on a table they cannot use
        raise InputError(f"{args.table}: {e}") from None
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return 0
