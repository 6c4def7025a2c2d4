"""The `cooldown_branches` report: Approach 3 fitted on branch ends vs on independent runs.

Points: every completed branch (its end: N, D = its tokens, loss = its final val loss) and every
completed independent run. Each set gets its own Chinchilla Approach-3 fit with bootstrap intervals
(harness/experiment/scaling_fit.py; N as the recipe counts it, non-embedding by default). The
report sets them side by side:

* parameters with intervals, and whether each branch-fit value lies inside the independent fit's
  interval;
* the compute-optimal prediction at 10x the largest grid point's compute (C = 6ND), from each fit,
  and the branch fit's loss at the independent fit's optimum (same N, D) against the independent
  interval there: an extrapolation, flagged as such;
* the compute each set spent (measured FLOPs of harness/models/flops.py): parents in full plus
  each branch's own steps, against the independent runs in full;
* point by point, the branch end's loss against the independent run's at the same (N, D).

The goal of issue 10 is met when every parameter and the 10x prediction of the branch fit lie in
the independent fit's intervals, at <= 40% of the compute. `goal_met` says whether it was.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.kinds import Report
from harness.formatting import finite, short_number

COMPUTE_GOAL = 0.40
PREDICT_AT = 10.0  # x the largest grid point's compute


def _settings(table) -> list[dict[str, Any]]:
    return [json.loads(s) if isinstance(s, str) else dict(s or {}) for s in table["settings"]]


def points(table, role: str, n_column: str) -> dict[str, np.ndarray]:
    """N, D, loss and size of the completed runs of `role` that have a final val loss."""
    rows = [(s, r) for s, (_, r) in zip(_settings(table), table.iterrows()) if s.get("role") == role]
    keep = [(s, r) for s, r in rows if r.get("status") == "completed" and finite(r.get("final_val_loss")) is not None]
    return {"N": np.array([float(s[n_column]) for s, _ in keep]),
            "D": np.array([float(r["D"]) for _, r in keep]),
            "loss": np.array([float(r["final_val_loss"]) for _, r in keep]),
            "size": np.array([s["size"] for s, _ in keep], dtype=object),
            "missing": len(rows) - len(keep), "planned": len(rows)}


def spent_flops(plan: dict[str, Any], role: str) -> float:
    """FLOPs the runs of `role` spend: a branch only its own steps (it starts at start_step)."""
    total = 0.0
    for run in plan["runs"]:
        if run["settings"].get("role") == role:
            total += run["flops"] * (1 - run.get("start_step", 0) / run["steps"])
    return total


def cooldown_report(out_dir: Path, table, plan: dict[str, Any]) -> Report:
    from harness.experiment.scaling_fit import MIN_POINTS, compute, fit_approach3

    section = plan["spec"]["cooldown_branches"]
    n_column = _n_column(section.get("recipe", "default"))
    n_boot, level = int(section.get("n_boot", 200)), float(section.get("level", 0.95))
    sets = {"branches": points(table, "branch", n_column), "independent": points(table, "independent", n_column)}
    warnings: list[str] = []
    fits = {}
    for name, pts in sets.items():
        if pts["missing"]:
            warnings.append(f"{name}: {pts['missing']} of {pts['planned']} run(s) have no final val loss "
                            "(not completed); the fit uses the others")
        if pts["planned"] and len(pts["loss"]) >= MIN_POINTS:
            fits[name] = fit_approach3(pts["N"], pts["D"], pts["loss"], n_boot=n_boot, level=level)
            warnings += [f"{name} fit: {w}" for w in fits[name].warnings]
        elif pts["planned"]:
            warnings.append(f"{name}: {len(pts['loss'])} completed point(s); Approach 3 needs at least "
                            f"{MIN_POINTS}: no fit")
    compute_used = {"branches": spent_flops(plan, "parent") + spent_flops(plan, "branch"),
                    "independent": spent_flops(plan, "independent")}
    ratio = compute_used["branches"] / compute_used["independent"] if compute_used["independent"] else None
    all_pts = [p for p in sets.values() if len(p["loss"])]
    c_max = max(float(compute(p["N"], p["D"]).max()) for p in all_pts) if all_pts else None
    comparison = _compare(fits, PREDICT_AT * c_max, level) if c_max and len(fits) == 2 else None
    pointwise = _pointwise(sets)
    goal = None
    if comparison is not None and ratio is not None:
        goal = bool(comparison["all_params_within"] and comparison["prediction_within"] and ratio <= COMPUTE_GOAL)
        if not goal:
            warnings.append(f"goal not met: branch-fit parameters within the independent intervals: "
                            f"{comparison['all_params_within']}; 10x prediction within: "
                            f"{comparison['prediction_within']}; compute ratio {ratio:.2f} (goal <= {COMPUTE_GOAL})")
    summary = {"kind": "cooldown_branches", "n_column": n_column, "level": level,
               "fits": {k: f.to_json() for k, f in fits.items()},
               "compute": {**compute_used, "ratio": ratio, "goal": COMPUTE_GOAL},
               "comparison": comparison, "pointwise": pointwise, "goal_met": goal, "warnings": warnings,
               "points": {k: {c: [float(x) if c != "size" else x for x in v[c]] for c in ("N", "D", "loss", "size")}
                          for k, v in sets.items()}}
    plots = _plots(out_dir, table, sets, fits)
    return Report(markdown=_markdown(plan, summary, fits, sets), summary=summary, plots=plots)


def _n_column(recipe_name: str) -> str:
    from harness.ladder import RECIPES

    return "N" if RECIPES[recipe_name].param_count == "total" else "N_non_embedding"


def _compare(fits: dict[str, Any], C: float, level: float) -> dict[str, Any]:
    """Branch-fit parameters and 10x prediction against the independent fit's intervals."""
    ref, br = fits["independent"], fits["branches"]
    params = {}
    for name in ref.params:
        lo, hi = ref.intervals.get(name, (np.nan, np.nan))
        value = br.params[name]
        params[name] = {"branches": value, "branches_interval": list(br.intervals.get(name, (np.nan, np.nan))),
                        "independent": ref.params[name], "independent_interval": [lo, hi],
                        "within": bool(lo <= value <= hi)}
    opt_ref, opt_br = ref.optimum(C), br.optimum(C)
    same_point = None
    prediction_within = False
    if opt_ref.get("N_opt"):
        n, d = opt_ref["N_opt"], opt_ref["D_opt"]
        lo, hi = ref.predict_interval(n, d)
        br_loss = float(br.predict(n, d))
        prediction_within = bool(float(lo) <= br_loss <= float(hi))
        same_point = {"N": n, "D": d, "independent": float(ref.predict(n, d)), "independent_interval": [float(lo), float(hi)],
                      "branches": br_loss, "branches_interval": [float(x) for x in br.predict_interval(n, d)]}
    core = ("E", "A", "alpha", "B", "beta")
    return {"C": C, "params": params, "all_params_within": all(params[k]["within"] for k in core if k in params),
            "optimum": {"independent": opt_ref, "branches": opt_br}, "at_independent_optimum": same_point,
            "prediction_within": prediction_within}


def _pointwise(sets: dict[str, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Branch-end loss vs independent loss at the same (N, D): the mean and largest relative gap."""
    ind = {(n, round(d)): loss for n, d, loss in zip(sets["independent"]["N"], sets["independent"]["D"],
                                                    sets["independent"]["loss"])}
    matched = [(d, (b_loss - ind[(n, round(d))]) / ind[(n, round(d))])
               for n, d, b_loss in zip(sets["branches"]["N"], sets["branches"]["D"], sets["branches"]["loss"])
               if (n, round(d)) in ind]
    if not matched:
        return {"matched": 0}
    gaps = [g for _, g in matched]
    # The gap by D (mean over sizes): a gap that changes with D tilts the fitted D exponent.
    by_D = {float(d): float(np.mean([g for dd, g in matched if dd == d])) for d in sorted({d for d, _ in matched})}
    return {"matched": len(gaps), "mean_rel_gap": float(np.mean(gaps)), "max_abs_rel_gap": float(np.max(np.abs(gaps))),
            "mean_rel_gap_by_D": by_D}


def _fmt(x: Any) -> str:
    v = finite(x)
    if v is None:
        return "-"
    return f"{v:.4g}" if abs(v) < 1e4 else short_number(v)


def _markdown(plan: dict[str, Any], summary: dict[str, Any], fits: dict[str, Any], sets: dict[str, Any]) -> str:
    spec = plan["spec"]
    section = spec["cooldown_branches"]
    lines = [f"# {spec['name']}: cooldown branches vs independent runs", "",
             spec.get("description") or "", "",
             f"Sizes {', '.join(map(str, section['sizes']))}; branches cool down over {section['cooldown_fraction']:g} x "
             f"the branch step ({section['cooldown']}); independent runs: {section['independent']} schedules. "
             f"N = {summary['n_column']}; loss = final val loss; intervals: {summary['level']:.0%} bootstrap over runs.", ""]
    comp = summary["compute"]
    ratio = "-" if comp["ratio"] is None else f"{comp['ratio']:.1%}"
    lines += ["## Compute", "", "| set | FLOPs |", "|---|---|",
              f"| branches (parents in full + each branch's cooldown) | {short_number(comp['branches'])} |",
              f"| independent runs | {short_number(comp['independent'])} |",
              f"| ratio | {ratio} (goal <= {COMPUTE_GOAL:.0%}) |", ""]
    comparison = summary["comparison"]
    if comparison:
        lines += ["## Approach 3: parameters", "",
                  "| param | branches | interval | independent | interval | branch value within |",
                  "|---|---|---|---|---|---|"]
        for name, p in comparison["params"].items():
            lines.append(f"| {name} | {_fmt(p['branches'])} | [{_fmt(p['branches_interval'][0])}, {_fmt(p['branches_interval'][1])}] "
                         f"| {_fmt(p['independent'])} | [{_fmt(p['independent_interval'][0])}, {_fmt(p['independent_interval'][1])}] "
                         f"| {'yes' if p['within'] else 'NO'} |")
        lines += ["", f"## Prediction at {PREDICT_AT:g}x the largest grid compute (C = {short_number(comparison['C'])}, "
                  "an extrapolation)", "", "| fit | N_opt | D_opt | loss | interval |", "|---|---|---|---|---|"]
        for name, opt in comparison["optimum"].items():
            interval = opt.get("intervals", {}).get("loss")
            lines.append(f"| {name} | {_fmt(opt.get('N_opt'))} | {_fmt(opt.get('D_opt'))} | {_fmt(opt.get('loss'))} | "
                         f"{'-' if not interval else f'[{_fmt(interval[0])}, {_fmt(interval[1])}]'} |")
        for name, opt in comparison["optimum"].items():
            lines += [f"\n**{name} fit, not usable: {note}.**" for note in opt.get("warnings", [])]
        same = comparison["at_independent_optimum"]
        if same:
            lines += ["", f"At the independent fit's optimum (N {_fmt(same['N'])}, D {_fmt(same['D'])}): branch fit "
                      f"{_fmt(same['branches'])}, independent fit {_fmt(same['independent'])} "
                      f"[{_fmt(same['independent_interval'][0])}, {_fmt(same['independent_interval'][1])}]: "
                      f"{'within' if comparison['prediction_within'] else 'OUTSIDE'} the independent interval."]
    pw = summary["pointwise"]
    if pw.get("matched"):
        lines += ["", f"Point by point ({pw['matched']} matched (N, D)): branch-end loss - independent loss = "
                  f"{pw['mean_rel_gap']:+.2%} on average (largest {pw['max_abs_rel_gap']:.2%}); by D (mean over sizes): "
                  + ", ".join(f"{short_number(d)} {g:+.2%}" for d, g in pw["mean_rel_gap_by_D"].items()) + "."]
    goal = summary["goal_met"]
    lines += ["", f"**Goal (branch fit within the independent intervals at <= {COMPUTE_GOAL:.0%} of the compute): "
              f"{'met' if goal else 'not met' if goal is not None else 'not evaluated'}.**"]
    lines += ["", "## Points", "", "| set | size | N | D | final val loss |", "|---|---|---|---|---|"]
    for name, pts in sets.items():
        for size, n, d, loss in zip(pts["size"], pts["N"], pts["D"], pts["loss"]):
            lines.append(f"| {name} | {size} | {short_number(n)} | {short_number(d)} | {loss:.4f} |")
    if summary["warnings"]:
        lines += ["", "## Warnings", ""] + [f"- {w}" for w in summary["warnings"]]
    return "\n".join(lines) + "\n"


def _plots(out_dir: Path, table, sets: dict[str, Any], fits: dict[str, Any]) -> list[Path]:
    """cooldown.png: the curves of the largest size (parent, branches, independent runs) and the final
    losses of both sets against D with each fit."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.experiment.grid_report import _save
    from harness.experiment.scaling_fit import plot_fit
    from harness.tracking.curve import read_curve

    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    settings = _settings(table)
    sizes = [s.get("size") for s in settings if s.get("role") == "parent"]
    largest = sizes[-1] if sizes else None
    styles = {"parent": dict(color="0.3", lw=1.6), "branch": dict(lw=1.2), "independent": dict(lw=1.0, ls="--")}
    grid_D = np.concatenate([sets["branches"]["D"], sets["independent"]["D"]])
    x_min = float(grid_D.min()) / 3 if grid_D.size else 0.0
    for s, (_, row) in zip(settings, table.iterrows()):
        curve = row.get("curve")
        if s.get("size") != largest or not isinstance(curve, str) or not Path(curve).is_file():
            continue
        # From a third of the smallest grid D on: the region where the branches leave the parent.
        rows = [r for r in read_curve(Path(curve)) if r.get("val_loss") is not None and r["tokens"] >= x_min]
        if rows:
            left.plot([r["tokens"] for r in rows], [r["val_loss"] for r in rows], label=s["role"] if s["role"] == "parent" else None,
                      **styles.get(s["role"], {}))
    left.set_xscale("log")
    left.set_xlabel("tokens")
    left.set_ylabel("val loss")
    left.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    left.set_title(f"{largest}: parent, branches, independent (dashed)")
    if largest:
        left.legend(fontsize=8)
    branches, independent = sets["branches"], sets["independent"]
    if len(branches["loss"]) or len(independent["loss"]):
        shown = branches if len(branches["loss"]) else independent
        plot_fit(right, shown, fits, size_column="size",
                 title="final val loss: branch ends (dots), independent (x)")
        if len(independent["loss"]) and shown is branches:
            right.scatter(independent["D"], independent["loss"], marker="x", color="k", s=28, label="independent runs")
            right.legend(fontsize=7)
    path = Path(out_dir) / "cooldown.png"
    _save(fig, path)
    return [path]
