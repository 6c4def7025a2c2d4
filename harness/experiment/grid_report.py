"""The grid report: a loss table, the best run overall and per axis value, and plots.

Settings given as override text (grid.runs) are read back as numbers where they are numbers, so
an LR given in `runs` and one from `axes` fall on the same axis.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.experiment.kinds import Report
from harness.files import save_figure
from harness.formatting import finite


def scalar(value: Any) -> Any:
    """'1e-3' -> 0.001, '4' -> 4, "'x'" -> 'x'; other values unchanged."""
    if not isinstance(value, str):
        return value
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value.strip("'\"")


def _json_number(x: Any) -> Any:
    """A table cell as JSON: NaN (pandas' empty cell) and infinities become null."""
    return finite(x) if isinstance(x, float) else x


def _num(x: Any) -> str:
    v = finite(x)
    return "-" if v is None else f"{v:.4f}"


def _score(row: dict[str, Any]) -> float | None:
    """What `best` means: the final val loss of a completed run (its train loss if it has no val)."""
    if row.get("status") != "completed":
        return None
    return finite(row.get("final_val_loss")) if finite(row.get("final_val_loss")) is not None \
        else finite(row.get("final_loss"))


def _save(fig, path: Path) -> None:
    save_figure(fig, path)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def edge_warnings(best: dict[str, Any] | None, best_per_axis: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One line per numeric axis (2+ values) whose best value is its smallest or largest: the optimum
    may lie outside the grid, so the best run bounds the optimum rather than locating it."""
    if best is None:
        return []
    warnings = []
    for axis, entries in best_per_axis.items():
        # The axis' range counts values whose runs failed: a diverged largest LR still brackets the optimum.
        values = sorted(e["value"] for e in entries if _is_number(e["value"]))
        finished = [e for e in entries if _is_number(e["value"]) and e["best_loss"] is not None]
        if len(values) < 2 or not finished:
            continue
        winner = min(finished, key=lambda e: e["best_loss"])["value"]
        if winner in (values[0], values[-1]):
            side = "smallest" if winner == values[0] else "largest"
            warnings.append(f"the best {axis} ({winner:g}) is the {side} value of the grid "
                            f"({values[0]:g} .. {values[-1]:g}): the optimum may lie outside it; extend the axis")
    return warnings


def grid_report(out_dir: Path, table, plan: dict[str, Any]) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.tracking.curve import read_curve

    name = plan["spec"]["name"]
    rows = table.to_dict("records")
    for row in rows:
        row["settings"] = {k: scalar(v) for k, v in json.loads(row["settings"]).items()}
        row["score"] = _score(row)
    axes: list[str] = []
    for row in rows:
        axes += [k for k in row["settings"] if k not in axes]
    scored = [r for r in rows if r["score"] is not None]
    best = min(scored, key=lambda r: r["score"]) if scored else None

    best_per_axis: dict[str, list[dict[str, Any]]] = {}
    for axis in axes:
        values = []
        for row in rows:
            v = row["settings"].get(axis)
            if v is not None and v not in values:
                values.append(v)
        entries = []
        for v in values:
            cands = [r for r in scored if r["settings"].get(axis) == v]
            top = min(cands, key=lambda r: r["score"]) if cands else None
            entries.append({"value": v, "best_run": top["run_id"] if top else None,
                            "best_loss": top["score"] if top else None,
                            "overrides": top["overrides"] if top else None,
                            "completed": len(cands), "runs": sum(1 for r in rows if r["settings"].get(axis) == v)})
        best_per_axis[axis] = entries

    edges = edge_warnings(best, best_per_axis)

    plots: list[Path] = []
    for axis in axes:
        points = [(r["settings"].get(axis), r["score"]) for r in scored]
        points = [(float(v), s) for v, s in points if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len({v for v, _ in points}) < 2:
            continue
        fig, ax = plt.subplots(figsize=(5.5, 4))
        ax.scatter([v for v, _ in points], [s for _, s in points], alpha=0.6, label="each run")
        line = sorted((float(e["value"]), e["best_loss"]) for e in best_per_axis[axis] if e["best_loss"] is not None
                      and isinstance(e["value"], (int, float)))
        ax.plot([v for v, _ in line], [s for _, s in line], "o-", color="C1", label="best at each value")
        xs = [v for v, _ in points]
        if min(xs) > 0 and max(xs) / min(xs) > 10:
            ax.set_xscale("log")
            ax.minorticks_off()
        ticks = sorted(set(xs))  # a grid has few values: label each one
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.set_xlabel(axis)
        ax.set_ylabel("final val loss")
        ax.set_title(f"{name}: final val loss vs {axis}")
        ax.legend()
        path = out_dir / f"loss_vs_{axis.replace('/', '_')}.png"
        _save(fig, path)
        plots.append(path)

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    drawn = 0
    for row in rows:
        curve = row.get("curve")
        if not isinstance(curve, str) or not Path(curve).is_file():
            continue
        pts = [(r["step"], finite(r.get("val_loss"))) for r in read_curve(Path(curve))]
        pts = [(s, v) for s, v in pts if v is not None]
        if pts:
            ax.plot([s for s, _ in pts], [v for _, v in pts], marker=".", label=row["overrides"] or row["run_id"])
            drawn += 1
    if drawn:
        ax.set_xlabel("step")
        ax.set_ylabel("val loss")
        ax.set_title(f"{name}: val loss of every run")
        ax.legend(fontsize=7)
        path = out_dir / "val_curves.png"
        _save(fig, path)
        plots.append(path)
    else:
        plt.close(fig)

    states: dict[str, int] = {}
    for row in rows:
        states[row["status"]] = states.get(row["status"], 0) + 1
    md = [f"# Experiment {name} (grid)", "",
          f"{len(rows)} run(s): " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())) + ".", ""]
    if best:
        md += [f"Best run: `{best['run_id']}` ({best['overrides']}), final val loss {best['score']:.4f}.", ""]
    md += [f"**Warning:** {w}" for w in edges] + ([""] if edges else [])
    md += ["| # | run | overrides | status | step | final loss | final val loss | min val loss |",
           "|---|---|---|---|---|---|---|---|"]
    for row in rows:
        status = row["status"]
        if status in ("failed", "preempted") and isinstance(row.get("reason"), str):
            status += f" ({row['reason'].splitlines()[0][:120]})"
        md.append(f"| {row['index']} | `{row['run_id']}` | {row['overrides']} | {status} | "
                  f"{'-' if finite(row.get('step')) is None else int(row['step'])} | {_num(row.get('final_loss'))} | "
                  f"{_num(row.get('final_val_loss'))} | {_num(row.get('min_val_loss'))} |")
    for axis, entries in best_per_axis.items():
        md += ["", f"## Best run per value of `{axis}`", "", "| value | best run | final val loss | completed / runs |",
               "|---|---|---|---|"]
        for e in entries:
            md.append(f"| {e['value']} | {('`' + e['best_run'] + '` ' + e['overrides']) if e['best_run'] else '-'} | "
                      f"{_num(e['best_loss'])} | {e['completed']} / {e['runs']} |")
    if plots:
        md += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    md.append("")

    summary = {
        "name": name, "kind": "grid", "counts": states,
        "best": ({"run_id": best["run_id"], "overrides": best["overrides"], "final_val_loss": best["score"]}
                 if best else None),
        "best_per_axis": best_per_axis,
        "warnings": edges,
        "runs": [{"index": r["index"], "run_id": r["run_id"], "overrides": r["overrides"], "settings": r["settings"],
                  "status": r["status"], "step": None if finite(r.get("step")) is None else int(r["step"]),
                  "final_loss": _json_number(r.get("final_loss")), "final_val_loss": _json_number(r.get("final_val_loss")),
                  "min_val_loss": _json_number(r.get("min_val_loss")),
                  "reason": r.get("reason") if isinstance(r.get("reason"), str) else None} for r in rows],
        "plots": [p.name for p in plots],
    }
    return Report(markdown="\n".join(md), summary=summary, plots=plots)
