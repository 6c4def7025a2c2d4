"""The ladder report: a table of runs, the Approach-3 fit with bootstrap intervals (scaling_fit.py),
the compute-optimal prediction at 10x the largest compute of the runs (an extrapolation), isoFLOP
profiles and the power laws through their optima where budgets were planned, warnings, and plots.

Points of the fit are the completed runs with a final val loss; N is the collected non-embedding
(or total: the spec's param_count) parameter count of the run as trained (the tokenizer's real
vocabulary), D the tokens it trained on; C = 6 N D with that N. Too few completed runs: the report
is still written and says which runs are missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.grid_report import _save
from harness.experiment.kinds import Report
from harness.experiment.scaling_fit import MIN_POINTS, ScalingFit, compute, fit_approach3, plot_fit
from harness.formatting import finite, short_number

# An extrapolation to this multiple of the largest compute of the runs (the "10x").
EXTRAPOLATE = 10.0


def _n_column(param_count: str) -> str:
    return "N" if param_count == "total" else "N_non_embedding"


def _row_n(row: dict[str, Any], column: str) -> float | None:
    """The parameter count of a collected row: there N is non-embedding and N_total all parameters
    (harness/collect.py), while the plan's settings call all parameters N."""
    return finite(row.get("N_total" if column == "N" else column))


def _points(rows: list[dict[str, Any]], param_count: str) -> list[dict[str, Any]]:
    """One fit point per completed run with a final val loss: size, N, D, C, loss (+ budget)."""
    column = _n_column(param_count)
    points = []
    for row in rows:
        loss = finite(row.get("final_val_loss"))
        if row["status"] != "completed" or loss is None or loss <= 0:
            continue
        settings = row["settings"]
        N = _row_n(row, column) or finite(settings.get(column))
        D = finite(row.get("D")) or finite(settings.get("D"))
        if not N or not D:
            continue
        points.append({"run_id": row["run_id"], "size": settings.get("size"), "N": N, "D": D,
                       "C": float(compute(N, D)), "loss": loss, "budget": settings.get("budget"),
                       "tokens_per_param": settings.get("tokens_per_param")})
    return points


def _fmt_interval(fit: ScalingFit, name: str) -> str:
    if name not in fit.intervals:
        return "-"
    lo, hi = fit.intervals[name]
    return f"{lo:.4g} .. {hi:.4g}"


def _isoflop(points: list[dict[str, Any]], budgets: list[float], name: str, out_dir: Path
             ) -> tuple[dict[str, Any], list[str], list[str], list[Path]]:
    """isoFLOP profiles of the budget runs: (summary, markdown lines, warnings, plots)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from harness.fit.isoflop import isoflop_profiles

    runs = [p for p in points if p["budget"] is not None]
    warnings: list[str] = []
    md = ["", "## isoFLOP profiles (Chinchilla Approach 2)", "",
          "Loss against N at each FLOP budget (the harness's FLOPs per token x D); a parabola in log N per "
          "budget, its vertex N_opt(C); then N_opt ~ C^a and D_opt = C / (6 N_opt) ~ C^b.", ""]
    summary: dict[str, Any] = {"budgets": [], "fit": None}
    for budget in budgets:
        group = sorted((p for p in runs if p["budget"] == budget), key=lambda p: p["N"])
        entry: dict[str, Any] = {"C": budget, "completed": len(group), "best_size": None, "best_N": None}
        if group:
            best = min(group, key=lambda p: p["loss"])
            entry.update(best_size=best["size"], best_N=best["N"], best_loss=best["loss"])
            if len(group) >= 2 and (best is group[0] or best is group[-1]):
                side = "smallest" if best is group[0] else "largest"
                warnings.append(f"isoFLOP C={budget:.3g}: the lowest loss is at the {side} size ({best['size']}, "
                                f"N={best['N']:.3g}): the optimum may lie outside the sizes; extend ladder.sizes")
        summary["budgets"].append(entry)
    table = pd.DataFrame([{"N": p["N"], "D": p["D"], "loss": p["loss"], "C": p["budget"]} for p in runs])
    result = None
    if len(table):
        try:
            result = isoflop_profiles(table, budgets=budgets, min_points=3)
        except ValueError as err:
            md.append(f"No power law through the optima: {err} (needs >= 2 budgets with >= 3 completed sizes "
                      "and a valley each).")
    if result is not None:
        optima = result.optima
        summary["fit"] = {**result.summary(), "optima": json.loads(optima.to_json(orient="records"))}
        md += ["| C | N_opt (vertex) | D_opt | loss at vertex | runs | vertex inside the sizes |",
               "|---|---|---|---|---|---|"]
        for r in optima.to_dict("records"):
            md.append(f"| {r['C']:.3g} | {r['N_opt']:.3g} | {r['D_opt']:.3g} | {r['loss_opt']:.4f} | {r['n_runs']} | "
                      f"{'yes' if r['interior'] else '**no** (extrapolated)'} |")
            if not r["interior"]:
                warnings.append(f"isoFLOP C={r['C']:.3g}: the parabola's vertex (N={r['N_opt']:.3g}) lies outside "
                                "the sizes trained at that budget: an extrapolation; extend ladder.sizes")
        md += ["", f"N_opt = {result.N_opt.coefficient:.3g} C^{result.N_opt.exponent:.3f}, "
               f"D_opt = {result.D_opt.coefficient:.3g} C^{result.D_opt.exponent:.3f}."]
    md += [""] + [f"- C={e['C']:.3g}: {e['completed']} completed; lowest loss at "
           f"{e['best_size'] or '-'}" for e in summary["budgets"]]

    plots: list[Path] = []
    if runs:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for i, budget in enumerate(budgets):
            group = sorted((p for p in runs if p["budget"] == budget), key=lambda p: p["N"])
            if not group:
                continue
            ns = np.array([p["N"] for p in group])
            ax.plot(ns, [p["loss"] for p in group], "o", color=f"C{i % 10}", label=f"C={budget:.2g}")
            if len(group) >= 3:
                x = np.log(ns)
                c2, c1, c0 = np.polyfit(x - x.mean(), [p["loss"] for p in group], 2)
                grid = np.linspace(x.min() - 0.3, x.max() + 0.3, 50)
                ax.plot(np.exp(grid), np.polyval([c2, c1, c0], grid - x.mean()), "-", color=f"C{i % 10}", alpha=0.6)
        if result is not None:
            ax.plot(result.optima["N_opt"], result.optima["loss_opt"], "k*", markersize=10, label="vertex")
        ax.set_xscale("log")
        ax.set_xlabel("N")
        ax.set_ylabel("final val loss")
        ax.set_title(f"{name}: isoFLOP profiles")
        ax.legend(fontsize=7)
        path = out_dir / "isoflop_profiles.png"
        _save(fig, path)
        plots.append(path)
    return summary, md, warnings, plots


def ladder_report(out_dir: Path, table, plan: dict[str, Any], params: Any) -> Report:
    name = plan["spec"]["name"]
    param_count = params.fit_param_count
    rows = table.to_dict("records")
    for row in rows:
        row["settings"] = json.loads(row["settings"])
    points = _points(rows, param_count)
    states: dict[str, int] = {}
    for row in rows:
        states[row["status"]] = states.get(row["status"], 0) + 1
    missing = [r for r in rows if r["run_id"] not in {p["run_id"] for p in points}]
    warnings: list[str] = []
    plots: list[Path] = []

    md = [f"# Experiment {name} (ladder)", "",
          f"{len(rows)} run(s): " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) +
          f"; {len(points)} with a final val loss are the fit's points.", "",
          f"N below is the {'total' if param_count == 'total' else 'non-embedding'} parameter count of each run "
          "as trained; C = 6 N D.", "",
          "| # | run | size | tokens/param | budget | N | D | C = 6ND | status | final val loss |",
          "|---|---|---|---|---|---|---|---|---|---|"]
    by_id = {p["run_id"]: p for p in points}
    column = _n_column(param_count)
    for row in rows:
        s = row["settings"]
        N = _row_n(row, column) or finite(s.get(column))
        D = finite(row.get("D")) or finite(s.get("D"))
        status = row["status"]
        if status in ("failed", "preempted") and isinstance(row.get("reason"), str):
            status += f" ({row['reason'].splitlines()[0][:120]})"
        loss = by_id[row["run_id"]]["loss"] if row["run_id"] in by_id else finite(row.get("final_val_loss"))
        md.append(f"| {row['index']} | `{row['run_id']}` | {s.get('size', '-')} | {s.get('tokens_per_param', '-')} | "
                  f"{'-' if s.get('budget') is None else format(s['budget'], '.3g')} | "
                  f"{'-' if N is None else short_number(N)} | {'-' if D is None else short_number(D)} | "
                  f"{'-' if not (N and D) else short_number(float(compute(N, D)))} | {status} | "
                  f"{'-' if loss is None else format(loss, '.4f')} |")

    fit_json: dict[str, Any] | None = None
    optimum: dict[str, Any] | None = None
    md += ["", "## Chinchilla Approach 3: L = E + A/N^alpha + B/D^beta", ""]
    fit = None
    try:
        fit = fit_approach3([p["N"] for p in points], [p["D"] for p in points], [p["loss"] for p in points],
                            n_boot=params.n_boot, level=params.level)
    except ValueError as err:
        waiting = ", ".join(f"#{r['index']} {r['settings'].get('size')} ({r['status']})" for r in missing) or "none"
        reason = (f"not fitted: {len(points)} completed run(s) with a final val loss; the fit needs at least "
                  f"{MIN_POINTS} ({err}). Runs without a point: {waiting}. Finish them (`python -m harness.experiment "
                  "run` resumes) and report again.")
        md.append(f"**Fit {reason}**")
        warnings.append(f"fit {reason}")
    if fit is not None:
        fit_json = fit.to_json()
        warnings += fit.warnings
        md += [f"{fit.n_points} points, {fit.n_boot} bootstrap refits over runs; {fit.level:.0%} percentile "
               f"intervals. Fit: R^2 {fit.metrics.get('r2', float('nan')):.4f}, mean relative error "
               f"{100 * fit.metrics.get('prede', float('nan')):.2f}%{'' if fit.converged else ', NOT converged'}.", "",
               "| parameter | value | interval |", "|---|---|---|"]
        meaning = {"a": " (N_opt ~ C^a)", "b": " (D_opt ~ C^b)"}
        md += [f"| {k}{meaning.get(k, '')} | {v:.4g} | {_fmt_interval(fit, k)} |" for k, v in fit.params.items()]
        if missing:
            md += ["", f"Not in the fit ({len(missing)}): " +
                   ", ".join(f"#{r['index']} {r['settings'].get('size')} ({r['status']})" for r in missing) + "."]
        c_max = max(p["C"] for p in points)
        optimum = {**fit.optimum(EXTRAPOLATE * c_max), "extrapolation": True,
                   "largest_C_of_runs": c_max}
        md += ["", f"### Compute-optimal at C = {EXTRAPOLATE:g}x the largest compute of the runs "
               f"({optimum['C']:.3g} FLOPs, 6ND) — an EXTRAPOLATION", ""]
        if optimum["N_opt"] is None:
            md.append(optimum["note"])
        else:
            iv = optimum["intervals"]
            md += ["| | value | interval |", "|---|---|---|"]
            for key in ("N_opt", "D_opt", "loss"):
                lo_hi = iv.get(key)
                md.append(f"| {key} | {optimum[key]:.4g} | {'-' if lo_hi is None else f'{lo_hi[0]:.4g} .. {lo_hi[1]:.4g}'} |")
            md.append(f"| tokens per parameter | {optimum['tokens_per_param']:.3g} | |")
            for note in optimum["warnings"]:
                md.append(f"\n**Not usable: {note}.**")
                warnings.append(f"compute-optimal prediction: {note}")
        optimum["intervals"] = {k: list(v) for k, v in optimum["intervals"].items()}
        fit_points = {k: [p[k] for p in points] for k in ("N", "D", "loss", "size")}
        plots.append(plot_fit(out_dir / "loss_vs_D.png", fit_points, {"Approach 3": fit},
                              title=f"{name}: final val loss vs D per size, with the fit"))

    isoflop_summary = None
    if params.budgets:
        isoflop_summary, iso_md, iso_warnings, iso_plots = _isoflop(points, list(params.budgets), name, out_dir)
        md += iso_md
        warnings += iso_warnings
        plots += iso_plots

    if warnings:
        md += ["", "## Warnings", ""] + [f"- **Warning:** {w}" for w in warnings]
    if plots:
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md.append("")

    summary = {
        "name": name, "kind": "ladder", "counts": states, "param_count": param_count,
        "points": points, "fit": fit_json, "optimum_10x": optimum, "isoflop": isoflop_summary,
        "warnings": warnings,
        "runs": [{"index": r["index"], "run_id": r["run_id"], "overrides": r["overrides"], "settings": r["settings"],
                  "status": r["status"], "final_val_loss": finite(r.get("final_val_loss")),
                  "reason": r.get("reason") if isinstance(r.get("reason"), str) else None} for r in rows],
        "plots": [p.name for p in plots],
    }
    return Report(markdown="\n".join(md), summary=summary, plots=plots)
