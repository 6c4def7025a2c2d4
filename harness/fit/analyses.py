"""Compute-optimal and hyperparameter analyses of a table of runs: CSV in, JSON out.

The CLI's `isoflop`, `envelope`, `steplaw`, `powerlines`, `critbatch` and `powersched` subcommands. Each reads
one CSV, runs one analysis of harness/fit/isoflop.py or harness/fit/hyperparams.py, prints the
result as JSON and, with `--out FILE`, also writes it there (atomically, only after the analysis
succeeded). A missing or unreadable file, a missing column or a table the analysis cannot use
raises `InputError` naming the file; nothing is written then.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.files import atomic_write_text
from harness.fit.hyperparams import (ChinchillaLoss, critical_batch_scan, fit_power_lines, fit_step_law, pareto_at_compute,
                                    pareto_choice)
from harness.fit.io import InputError
from harness.fit.isoflop import envelope_minimum, isoflop_profiles


def read_table(path: Path, need_loss: bool = True) -> pd.DataFrame:
    """The CSV; rows without a final `loss` (runs still running or failed, as `python -m
    harness.collect` lists them) are skipped with a note, as the scaling fits do."""
    if not Path(path).is_file():
        raise InputError(f"{path}: file not found. Fix: check the path.")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot parse as CSV ({e}). Fix: write a comma-separated file with a "
                         "header row.") from None
    if need_loss and "loss" in table.columns:
        keep = pd.to_numeric(table["loss"], errors="coerce").notna()
        if not keep.all():
            states = table.loc[~keep, "status"].value_counts().to_dict() if "status" in table.columns else {}
            detail = f" ({', '.join(f'{k} {v}' for k, v in sorted(states.items()))})" if states else ""
            print(f"note: {path}: skipped {int((~keep).sum())} row(s) without a final 'loss'{detail}; "
                  f"analysing {int(keep.sum())}", file=sys.stderr)
            table = table[keep].reset_index(drop=True)
    return table


def isoflop(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = isoflop_profiles(table, rel_tol=args.rel_tol, budgets=args.budgets)
    return {**result.summary(), "optima": result.optima.to_dict(orient="records")}


def envelope(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = envelope_minimum(table, run_column=args.run_column)
    return {**result.summary(), "optima": result.optima.to_dict(orient="records")}


def _warn(warnings: list[str]) -> None:
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)


def steplaw(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "method", "official") == "vertex":
        from harness.fit.steplaw_landscape import fit_step_law_vertex
        vertex, choice = fit_step_law_vertex(table, n_bootstrap=args.n_boot, seed=args.seed, allow_edge=args.allow_edge,
                                             batch_unit=args.batch_unit, seq_len=args.seq_len)
        _warn(list(vertex.warnings))
        return {**vertex.summary(), "method": "vertex", "window": choice.window,
                "window_validation": {str(w): g for w, g in choice.validation.items()}}
    result = fit_step_law(table, tol=args.tol, n_bootstrap=args.n_boot, seed=args.seed, allow_edge=args.allow_edge,
                          batch_unit=args.batch_unit, seq_len=args.seq_len)
    _warn(list(result.warnings))
    return result.summary()


def powerlines(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    result = fit_power_lines(table, n_bootstrap=args.n_boot, seed=args.seed, allow_edge=args.allow_edge,
                             batch_unit=args.batch_unit, seq_len=args.seq_len)
    _warn(list(result.warnings))
    out = {**result.summary(), "cells": result.cells.to_dict(orient="records")}
    if result.crit_points is not None:
        out["batch_crit_points"] = result.crit_points.to_dict(orient="records")
    target_loss, compute = getattr(args, "target_loss", None), getattr(args, "compute", None)
    if target_loss is not None and compute is not None:
        raise ValueError("--target-loss and --compute are two questions; give one of them")
    if target_loss is not None or compute is not None:
        out["pareto"] = _pareto(result, args)
    elif getattr(args, "max_steps", None) is not None or getattr(args, "loss_law", None) is not None:
        raise ValueError("--max-steps / --loss-law choose (N, D, B) for a --target-loss or a --compute budget; "
                         "give one of them too")
    return out


def _loss_law(spec: str) -> ChinchillaLoss:
    """--loss-law: a params.json path (chinchilla) or inline E=..,A=..,alpha=..,B=..,beta=.."""
    if "=" in spec:
        try:
            params = {k.strip(): float(v) for k, v in (item.split("=", 1) for item in spec.split(","))}
        except ValueError:
            raise ValueError(f"--loss-law {spec!r}: write E=1.8,A=400,alpha=0.34,B=400,beta=0.28 or a params.json "
                             "path") from None
        return ChinchillaLoss.from_params(params)
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--loss-law {spec}: no such file; give `harness.fit scaling --law chinchilla`'s params.json "
                         "or E=..,A=..,alpha=..,B=..,beta=..")
    return ChinchillaLoss.from_params(json.loads(path.read_text()))


def _pareto(result, args: argparse.Namespace) -> dict[str, Any]:
    flag = "--target-loss" if args.target_loss is not None else "--compute"
    if args.loss_law is None:
        raise ValueError(f"{flag} needs --loss-law (the L(N, D) the choice is read on)")
    if result.batch_crit is None:
        raise ValueError(f"{flag} needs B_crit(D), which this table cannot give: {result.batch_crit_note}")
    if args.target_loss is not None:
        return pareto_choice(_loss_law(args.loss_law), result.batch_crit, args.target_loss, args.max_steps).summary()
    if args.max_steps is None:
        raise ValueError("--compute needs --max-steps (without a time budget the choice is the loss law's own "
                         "compute optimum: `harness.fit scaling`)")
    return pareto_at_compute(_loss_law(args.loss_law), result.batch_crit, args.compute, args.max_steps).summary()


def powersched(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    from harness.fit.power_scheduler import fit_power_scheduler

    result = fit_power_scheduler(table, batch_unit=args.batch_unit, seq_len=args.seq_len, n_bootstrap=args.n_boot,
                                 seed=args.seed, allow_edge=args.allow_edge)
    _warn(list(result.warnings))
    return {**result.summary(), "cells": result.cells.to_dict(orient="records")}


def critbatch(table: pd.DataFrame, args: argparse.Namespace) -> dict[str, Any]:
    scan = critical_batch_scan(table, args.targets, run=args.run_column)
    return {"per_target": scan.per_target.to_dict(orient="records"),
            "B_crit_vs_D": scan.vs_data.as_dict(), "B_crit_vs_loss": scan.vs_loss.as_dict()}


ANALYSES: dict[str, Callable[[pd.DataFrame, argparse.Namespace], dict[str, Any]]] = {
    "isoflop": isoflop, "envelope": envelope, "steplaw": steplaw, "powerlines": powerlines,
    "critbatch": critbatch, "powersched": powersched,
}


def _table_path(args: argparse.Namespace) -> Path:
    """The table, given positionally or as --fit (the form of the law fits)."""
    given = [p for p in (args.table, getattr(args, "fit", None)) if p is not None]
    if len(given) != 1:
        raise InputError(f"{args.mode}: give the table once, as TABLE or --fit TABLE (got {len(given)})")
    return given[0]


def run(args: argparse.Namespace) -> int:
    """Run the analysis `args.mode` on `args.table`; print (and with --out, write) its JSON."""
    path = _table_path(args)
    table = read_table(path, need_loss=args.mode != "envelope" and args.mode != "critbatch")
    try:
        result = ANALYSES[args.mode](table, args)
    except ValueError as e:  # the analyses raise ValueError on a table they cannot use
        raise InputError(f"{path}: {e}") from None
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.out is not None:
        atomic_write_text(args.out, text + "\n")
    return 0
