"""The `power_scheduler` report: each (beta, n) cell's best WSD peak LR, eta_opt = a * beta * n^b
fitted with bootstrap intervals (harness/fit/power_scheduler.py), and the fitted Power scheduler.

Points: the completed runs with a final loss (`loss`: the final val loss, as harness.collect
writes it), beta = the run's train.batch_size (sequences, from the plan's settings), n = its D
(tokens trained), lr its peak LR. Writes:

* power_scheduler_fit.json: the fit's summary, the JSON `python -m harness.fit powersched` writes
  (a, b, intervals, batch_unit "sequences", tokens_unit "tokens"): `python -m harness.ladder
  dry-run --power-scheduler-json DIR/power_scheduler_fit.json` plans with it;
* schedule_power_fitted.yaml: a conf/schedule file (name: power, the fitted power_a / power_b, the
  paper's final 10% decay); the same as overrides: `schedule=power schedule.power_a=A
  schedule.power_b=B` (report.json `schedule_overrides`). Only when b < 0: with b >= 0 the best LR
  does not fall with the tokens and the schedule would never decay, so none is written;
* lr_sweeps.png: loss vs peak LR per cell, the vertex marked; lr_opt_vs_tokens.png: lr_opt / beta
  vs n with the fitted line.

A grid that cannot locate an optimum (a cell with < 3 completed runs, or its best LR on the sweep's
edge) refuses the fit unless the spec sets `allow_edge: true`: the report says which cell and
writes no schedule (`fit` is null in report.json).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.experiment.kinds import Report
from harness.files import atomic_write_json, atomic_write_text, save_figure
from harness.formatting import finite

FIT_JSON = "power_scheduler_fit.json"
SCHEDULE_YAML = "schedule_power_fitted.yaml"


def sweep_points(table: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """(D, B in sequences, lr, loss) of the completed runs with a final loss, and how many planned
    runs lack one."""
    rows, missing = [], 0
    for _, r in table.iterrows():
        s = json.loads(r["settings"]) if isinstance(r.get("settings"), str) else dict(r.get("settings") or {})
        loss = finite(r.get("loss"))
        if r.get("status") != "completed" or loss is None:
            missing += 1
            continue
        rows.append({"D": float(r["D"]), "B": float(s["batch_size"]), "lr": float(s["lr"]), "loss": loss})
    return pd.DataFrame(rows, columns=["D", "B", "lr", "loss"]), missing


def schedule_yaml(a: float, b: float, warmup_fraction: float) -> str:
    return (f"# Power scheduler fitted by the power_scheduler experiment: lr = min(optim.lr, a * batch_size * "
            f"tokens^b)\n# (batch_size in sequences, tokens seen), then the paper's final 10% decay.\n"
            f"name: power\nwarmup_fraction: {warmup_fraction!r}\npower_a: {a!r}\npower_b: {b!r}\n"
            f"power_decay_fraction: 0.1\ncooldown: exp\nmin_lr_ratio: 0.1\n")


def power_scheduler_report(out_dir: Path, table: pd.DataFrame, plan: dict[str, Any]) -> Report:
    from harness.fit.hyperparams import GridError
    from harness.fit.power_scheduler import fit_power_scheduler

    section = plan["spec"]["power_scheduler"]
    out_dir = Path(out_dir)
    points, missing = sweep_points(table)
    warnings = [f"{missing} of {len(table)} planned run(s) have no final loss (not completed); the fit uses "
                "the others"] if missing else []
    summary: dict[str, Any] = {"n_runs": len(points), "missing": missing, "fit": None}
    fit = None
    try:
        fit = fit_power_scheduler(points, batch_unit="sequences", n_bootstrap=int(section.get("n_boot", 200)),
                                  ci=float(section.get("level", 0.95)), allow_edge=bool(section.get("allow_edge")))
    except (GridError, ValueError) as e:
        summary["refused"] = str(e)
    if fit is not None:
        fit_json = {**fit.summary(), "cells": fit.cells.to_dict(orient="records")}
        warnings += list(fit.warnings)
        atomic_write_json(out_dir / FIT_JSON, fit_json)
        summary.update({"fit": fit_json, "fit_json": FIT_JSON, "schedule_overrides": None})
        if fit.b < 0:
            warmup = float(section.get("warmup_fraction", 0.1))
            atomic_write_text(out_dir / SCHEDULE_YAML, schedule_yaml(fit.a, fit.b, warmup))
            summary.update({"schedule_overrides": fit.schedule_overrides(), "schedule_yaml": SCHEDULE_YAML})
    summary["warnings"] = warnings
    plots = _plots(out_dir, points, fit) if len(points) else []
    return Report(markdown=_markdown(plan, summary, fit), summary=summary, plots=plots)


def _markdown(plan: dict[str, Any], summary: dict[str, Any], fit) -> str:
    spec = plan["spec"]
    lines = [f"# {spec['name']}: Power Scheduler fit", "",
             f"{summary['n_runs']} completed WSD run(s); the law eta_opt = a * beta * n^b (beta sequences per step, "
             "n tokens), b shared across batch sizes, a from eta_opt / beta (Shen et al. 2024).", ""]
    if fit is None:
        lines += ["**Fit refused:**", "", "```", summary.get("refused", "no fit"), "```", "",
                  "No schedule written. Fix the grid (extend the LR sweep past the edge optimum) or set "
                  "`power_scheduler.allow_edge: true`.", ""]
    else:
        s = fit.summary()
        ci = lambda v: f"[{v[0]:.4g}, {v[1]:.4g}]" if v else "-"  # noqa: E731
        lines += ["| parameter | value | interval |", "|---|---|---|",
                  f"| a | {fit.a:.4g} | {ci(s['a_ci'])} |", f"| b | {fit.b:.4g} | {ci(s['b_ci'])} |", ""]
        if fit.free is not None:
            lines += [f"Free fit (check of the linear batch term): eta_opt ∝ beta^{fit.free.exponents[0]:.3g} "
                      f"n^{fit.free.exponents[1]:.3g}.", ""]
        lines += ["| beta (seq) | n (tokens) | runs | best LR swept | lr_opt (vertex) | law | best loss |",
                  "|---|---|---|---|---|---|---|"]
        for r in fit.cells.itertuples():
            lines.append(f"| {r.B:g} | {r.D:g} | {r.n_runs} | {r.best_lr_swept:.4g} | {r.lr_opt:.4g} | "
                         f"{float(fit.optimal_lr(r.B, r.D)):.4g} | {r.loss:.4f} |")
        if summary["schedule_overrides"]:
            lines += ["", "Train with the fitted Power scheduler (optim.lr is the cap lr_max):", "",
                      "    python -m harness.train " + " ".join(fit.schedule_overrides()), "",
                      f"or copy `{SCHEDULE_YAML}` to conf/schedule/ and select it; the ladder: "
                      f"`python -m harness.ladder dry-run --power-scheduler-json {FIT_JSON}`.", ""]
        else:
            lines += ["", f"**No schedule written:** b = {fit.b:.3g} >= 0, so the best LR does not fall with the "
                      "tokens in this sweep and a Power scheduler with it would never decay. The fit is in "
                      f"`{FIT_JSON}` for inspection.", ""]
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    return "\n".join(lines)


def _plots(out_dir: Path, points: pd.DataFrame, fit) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    for (beta, n), g in points.groupby(["B", "D"]):
        g = g.sort_values("lr")
        ax.plot(g["lr"], g["loss"], marker="o", label=f"beta={beta:g}, n={n:.3g}")
    if fit is not None:
        for r in fit.cells.itertuples():
            ax.axvline(r.lr_opt, color="grey", lw=0.5, ls=":")
    ax.set(xscale="log", xlabel="peak LR (WSD)", ylabel="final loss", title="LR sweeps per (beta, n) cell")
    ax.legend(fontsize=6)
    fig.tight_layout()
    paths.append(save_figure(fig, out_dir / "lr_sweeps.png", dpi=120, tight=False))
    if fit is not None:
        fig, ax = plt.subplots(figsize=(5, 4))
        c = fit.cells
        ax.scatter(c["D"], c["lr_opt"] / c["B"], label="lr_opt / beta per cell")
        n = np.geomspace(c["D"].min(), c["D"].max(), 50)
        ax.plot(n, fit.law(n), label=f"{fit.a:.3g} n^{fit.b:.3g}")
        ax.set(xscale="log", yscale="log", xlabel="tokens n", ylabel="lr_opt / beta", title="Power Scheduler fit")
        ax.legend(fontsize=7)
        fig.tight_layout()
        paths.append(save_figure(fig, out_dir / "lr_opt_vs_tokens.png", dpi=120, tight=False))
    return paths
