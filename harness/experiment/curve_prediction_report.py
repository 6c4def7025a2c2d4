"""The `curve_prediction` report: every registered curve law fitted on three curves, predicting
every other curve of the study; then the optimized schedule against cosine and WSD over seeds.

Curves: each run's val_loss (dense evals) with its per-step LR (curve.jsonl); a shorter constant
curve is the first steps of the longest constant run (curve_prediction.py). Points at or before the
warmup's end are neither fitted nor scored (the protocol of issue 12).

Prediction (first `default`: what `python -m harness.fit curve` does without --law, i.e. DEFAULT_CURVE_LAW
and, for curves at another peak LR, DEFAULT_PEAK_LR_LAW; then each law of harness.fit.registry.CURVE_LAWS,
DEFAULT_CURVE_LAW first; the report applies no fit checks, so the CLI's fallback when the peak-LR law's fit
fails one is not reproduced here): fit_law on the
fit curves (`fit_schedules` at the fit horizon and fit peak LR), then each other curve is predicted
from its own LR schedule and scored by PredE (mean |pred - obs| / obs over its points). Groups
(each curve in exactly one):
* `horizon`:   a fit schedule at another horizon (2x), the fit peak LR;
* `peak_lr`:   any schedule at another peak LR (either horizon);
* `schedules`: another schedule at the fit peak LR (either horizon);
* `optimized`: the round-2 optimized schedule (seed 0), never seen by the fit.
With `curve_seeds` > 1 each round-0 curve is the mean of its seeds (fit curves and targets), and the
seeds' spread around that mean is reported per group (`curve_seeds` in report.json).
The table gives each law's mean PredE per group (mean over the group's curves). Files:
predictions.csv (law, curve, group, prede, worste, n), overlay_<law>.png (observed dots vs predicted
lines; panels: horizon x peak LR).

Schedule optimization (round 2): the optimized schedule (optimized_schedule.yaml, a runnable
conf/schedule file; optimized_schedule_lr.csv its LR per step), its predicted final loss and the
references', and the measured final val loss of every seed. Differences optimized - compare are
paired by seed (same data order and init) and given with a Student-t interval over seeds.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.experiment.curve_prediction_curves import (OPT_FILE, OPTIMIZED, SECTION, TARGET, CurveKey, curve_label,
                                                         load_curve, run_lrs, seed_mean, settings_key, truncated)
from harness.experiment.kinds import Report
from harness.files import atomic_write_text, save_figure
from harness.formatting import finite

GROUPS = ("horizon", "peak_lr", "schedules", "optimized")
GROUP_TITLES = {"horizon": "same schedules, other horizon", "peak_lr": "other peak LRs",
                "schedules": "other schedules", "optimized": "optimized schedule (round 2)"}


def group_of(key: CurveKey, params) -> Optional[str]:
    """The prediction group of a curve; "fit" for a fit curve; None: not a prediction target."""
    if key.seed_index:
        return None
    if key.schedule == OPTIMIZED:
        return "optimized"
    same_lr = math.isclose(key.peak_lr, params.fit_peak_lr, rel_tol=1e-12)
    if not same_lr:
        return "peak_lr"
    if key.schedule in params.fit_schedules:
        return "fit" if key.horizon == params.fit_horizon else "horizon"
    return "schedules"


@dataclass
class LawResult:
    name: str
    fit: Optional[dict[str, Any]]          # FitResult.to_json(), None when the fit failed
    error: Optional[str]
    rows: list[dict[str, Any]]             # per curve: curve, group, prede, worste, n
    predictions: dict[str, np.ndarray]     # curve label -> predicted loss at its eval rows

    def group_mean(self, group: str) -> Optional[float]:
        values = [r["prede"] for r in self.rows if r["group"] == group and finite(r["prede"]) is not None]
        return float(np.mean(values)) if values else None


def curve_prediction_report(out_dir: Path, table, plan: dict[str, Any]) -> Report:
    from harness.experiment.spec import typed_spec

    spec = typed_spec(dict(plan["spec"]), source="plan.json")
    params = spec.params
    warnings: list[str] = []
    curves = _curves(table, plan, params, warnings)
    spread = _average_seeds(curves, params, warnings) if params.curve_seeds > 1 else None
    fit_keys = [CurveKey(n, params.fit_horizon, params.fit_peak_lr) for n in params.fit_schedules]
    missing = [curve_label(k) for k in fit_keys if k not in curves]
    laws: list[LawResult] = []
    if missing:
        warnings.append(f"fit curves not available ({', '.join(missing)}): no law fitted")
    else:
        laws = [_law_result(name, [curves[k] for k in fit_keys], curves, params) for name in law_order()]
        default = _default_result(laws)
        laws = ([default] if default is not None else []) + laws
        warnings += [f"{r.name}: the fit failed: {r.error}" for r in laws if r.error]
        warnings += [f"{r.name}: the fit did not converge (fit.converged is false)" for r in laws
                     if r.fit and not r.fit["converged"]]
    plots = [_overlay(out_dir, r, curves, params) for r in laws if r.fit]
    opt = _optimization(out_dir, table, plan, params, warnings)
    if opt and opt.get("lr_plot"):
        plots.append(Path(opt.pop("lr_plot")))
    if laws:
        rows = [{"law": r.name, **row} for r in laws for row in r.rows]
        atomic_write_text(Path(out_dir) / "predictions.csv", _csv(rows, ["law", "curve", "group", "prede", "worste", "n"]))
    summary = {
        "kind": SECTION, "target": TARGET,
        "fit": {"curves": [curve_label(k) for k in fit_keys], "horizon": params.fit_horizon,
                "peak_lr": params.fit_peak_lr, "after_step": params.warmup_steps},
        "laws": {r.name: {"fit": r.fit, "error": r.error, "groups": {g: r.group_mean(g) for g in GROUPS},
                          "curves": r.rows} for r in laws},
        "law_order": [r.name for r in laws],
        "optimization": opt, "warnings": warnings,
        "curves": sorted(curve_label(k) for k in curves),
        "curve_seeds": {"n": params.curve_seeds, "spread": spread} if spread is not None else None,
    }
    return Report(markdown=_markdown(spec, summary, laws), summary=summary, plots=plots)


def law_order() -> list[str]:
    from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW

    return [DEFAULT_CURVE_LAW] + [n for n in CURVE_LAWS if n != DEFAULT_CURVE_LAW]


# The report's row for the CLI's default: DEFAULT_CURVE_LAW, and DEFAULT_PEAK_LR_LAW at other peak LRs.
DEFAULT_ROW = "default"


def _default_result(laws: list[LawResult]) -> Optional[LawResult]:
    """The `default` row from the two laws' own rows (harness/fit/law_fit.py routes the same way), or None
    when either law's fit failed."""
    from harness.fit.registry import DEFAULT_CURVE_LAW, DEFAULT_PEAK_LR_LAW

    by_name = {r.name: r for r in laws}
    main, peak = by_name.get(DEFAULT_CURVE_LAW), by_name.get(DEFAULT_PEAK_LR_LAW)
    if main is None or peak is None or main.fit is None or peak.fit is None:
        return None
    routed = {r["curve"]: r for r in peak.rows if r["group"] == "peak_lr"}
    rows = [routed.get(r["curve"], r) for r in main.rows]
    predictions = {c: peak.predictions[c] if c in routed else p for c, p in main.predictions.items()}
    fit = {**main.fit, "wall_s": main.fit["wall_s"] + peak.fit["wall_s"],
           "laws": {"main": main.name, "peak_lr": peak.name}}
    return LawResult(DEFAULT_ROW, fit, None, rows, predictions)


def _curves(table, plan: dict[str, Any], params, warnings: list[str]) -> dict[CurveKey, Any]:
    """Every completed run's curve by key, the shorter constant curves cut from the longest."""
    status = {str(r["run_id"]): r.get("status") for _, r in table.iterrows()}
    out: dict[CurveKey, Any] = {}
    not_done = []
    for run in plan["runs"]:
        key = settings_key(run["settings"])
        if status.get(run["run_id"]) != "completed":
            not_done.append(curve_label(key))
            continue
        if key in out:
            # Round 2's seed-0 run of a compare schedule is the same curve as round 0's (a branch
            # equals the independent run): the round-0 run stays the prediction target.
            continue
        curve = load_curve(Path(run["run_dir"]) / "curve.jsonl", key, params.warmup_steps)
        out[key] = curve
        if run["settings"]["role"] == "parent":
            for h in params.horizons:
                if int(h) < key.horizon:
                    short = replace(key, horizon=int(h))  # the same seed's shorter constant curve
                    out[short] = replace(truncated(curve, int(h)), name=curve_label(short))
    if not_done:
        warnings.append(f"{len(not_done)} run(s) not completed, left out: {', '.join(not_done[:8])}"
                        + (" ..." if len(not_done) > 8 else ""))
    return out


def _average_seeds(curves: dict[CurveKey, Any], params, warnings: list[str]) -> dict[str, Optional[float]]:
    """With `curve_seeds` = n: every round-0 curve becomes the mean of its seeds 0..n-1 (under its seed-0 key;
    a curve with fewer seeds done is averaged over those, with a warning). Returns the seeds' spread (seed_mean)
    per prediction group and over all curves. Round 2's own seeds (the optimized schedule, compare seeds >= n)
    are left as they are."""
    spreads: dict[str, list[float]] = {}
    short = []
    for key in [k for k in curves if k.seed_index == 0 and k.schedule in params.schedules]:
        seeds = [curves[k] for i in range(params.curve_seeds) if (k := replace(key, seed_index=i)) in curves]
        if len(seeds) < params.curve_seeds:
            short.append(f"{curve_label(key)} ({len(seeds)} of {params.curve_seeds})")
        try:
            curves[key], spread = seed_mean(seeds, curve_label(key))
        except ValueError as err:
            warnings.append(f"{err}: its seed 0 is used alone")
            continue
        if len(seeds) > 1:
            spreads.setdefault(group_of(key, params), []).append(spread)
    if short:
        warnings.append(f"{len(short)} curve(s) averaged over fewer seeds than curve_seeds: {', '.join(short[:6])}"
                        + (" ..." if len(short) > 6 else ""))
    out = {g: float(np.mean(v)) for g, v in spreads.items()}
    every = [x for v in spreads.values() for x in v]
    out["all"] = float(np.mean(every)) if every else None
    return out


def _law_result(name: str, fit_curves: list, curves: dict[CurveKey, Any], params) -> LawResult:
    from harness.fit.fitter import fit_law, metrics
    from harness.fit.registry import CURVE_LAWS

    law = CURVE_LAWS[name]()
    try:
        y = np.concatenate([c.loss[c.eval_index()] for c in fit_curves])
        fit = fit_law(law, law.prepare(fit_curves), y)
    except (ValueError, RuntimeError, FloatingPointError) as err:
        return LawResult(name, None, str(err), [], {})
    rows, predictions = [], {}
    for key, curve in sorted(curves.items(), key=lambda kv: curve_label(kv[0])):
        group = group_of(key, params)
        if group is None:
            continue
        idx = curve.eval_index()
        with np.errstate(all="ignore"):
            pred = np.asarray(law.predict(fit.theta, law.prepare([curve])), dtype=float)
        obs = curve.loss[idx]
        ok = np.isfinite(obs)
        predictions[curve.name] = pred
        m = metrics(obs[ok], pred[ok]) if ok.any() else {"prede": float("nan"), "worste": float("nan"), "n": 0}
        rows.append({"curve": curve.name, "group": group, "prede": m["prede"], "worste": m["worste"], "n": m["n"]})
    return LawResult(name, fit.to_json(), None, rows, predictions)


# ---------------------------------------------------------------------------------- round 2


def _optimization(out_dir: Path, table, plan: dict[str, Any], params, warnings: list[str]) -> Optional[dict[str, Any]]:
    """The optimized schedule's files, its predicted and measured final losses, paired differences."""
    if not params.optimize.enabled:
        return None
    path = Path(out_dir) / OPT_FILE
    if not path.is_file():
        warnings.append("schedule optimization: not done yet (the fit curves are not complete); run again")
        return None
    record = json.loads(path.read_text())
    from harness.fit.schedule_opt import piecewise, piecewise_yaml, schedule_lrs

    sched = record["schedule"]
    cfg = piecewise(sched["knot_fractions"], sched["knot_multipliers"], sched["warmup_steps"])
    comment = (f"The schedule {record['law']} predicts to end lowest at {record['total_steps']} steps, peak LR "
               f"{record['peak_lr']:g} (harness/fit/schedule_opt.py).\nRun it: copy to conf/schedule/optimized.yaml "
               f"and pass schedule=optimized, or pass: {' '.join(record['overrides'])}")
    atomic_write_text(Path(out_dir) / "optimized_schedule.yaml", piecewise_yaml(cfg, comment))
    lrs = schedule_lrs(cfg, total_steps=record["total_steps"], peak_lr=record["peak_lr"])
    atomic_write_text(Path(out_dir) / "optimized_schedule_lr.csv",
                      "step,lr\n" + "".join(f"{t},{float(lr)!r}\n" for t, lr in enumerate(lrs, start=1)))
    final = _final_losses(table, plan)
    opt_losses = {k.seed_index: v for k, v in final.items() if k.schedule == OPTIMIZED}
    level = params.optimize.level
    comparisons = {}
    for name in params.optimize.compare:
        other = {k.seed_index: v for k, v in final.items()
                 if k.schedule == name and k.horizon == record["total_steps"]
                 and math.isclose(k.peak_lr, record["peak_lr"], rel_tol=1e-12)}
        seeds = sorted(set(opt_losses) & set(other))
        diffs = np.array([opt_losses[s] - other[s] for s in seeds])
        comparisons[name] = {"seeds": seeds, "optimized": [opt_losses[s] for s in seeds],
                             "compare": [other[s] for s in seeds], **paired_interval(diffs, level),
                             "predicted_difference": record["predicted_final"] - record["references"].get(name, math.nan)}
        if len(seeds) < params.optimize.seeds:
            warnings.append(f"schedule optimization vs {name}: {len(seeds)} of {params.optimize.seeds} seed pair(s) done")
    return {"schedule": sched, "law": record["law"], "total_steps": record["total_steps"], "peak_lr": record["peak_lr"],
            "predicted_final": record["predicted_final"], "predicted_references": record["references"],
            "overrides": record["overrides"], "measured_optimized": [opt_losses[s] for s in sorted(opt_losses)],
            "comparisons": comparisons, "level": level,
            "lr_plot": str(_lr_plot(out_dir, record, params, lrs, tuple(plan["spec"]["base"])))}


def paired_interval(diffs: np.ndarray, level: float) -> dict[str, Any]:
    """Mean of paired differences with a Student-t interval (None without 2+ pairs)."""
    n = int(diffs.size)
    if n == 0:
        return {"mean": None, "interval": None, "n": 0}
    mean = float(diffs.mean())
    if n < 2:
        return {"mean": mean, "interval": None, "n": n}
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, n - 1) * diffs.std(ddof=1) / math.sqrt(n))
    return {"mean": mean, "interval": [mean - half, mean + half], "n": n}


def _final_losses(table, plan: dict[str, Any]) -> dict[CurveKey, float]:
    by_id = {r["run_id"]: r for r in plan["runs"]}
    out = {}
    for _, row in table.iterrows():
        run = by_id.get(row["run_id"])
        value = finite(row.get("final_val_loss"))
        if run is None or row.get("status") != "completed" or value is None:
            continue
        if run["settings"].get("role") == "parent":
            continue  # its shorter horizons are not final losses
        key = settings_key(run["settings"])
        if key not in out or run["settings"].get("round") == 2:
            out[key] = value  # round 2's own run of a key wins (trained from scratch like its seeds)
    return out


# ---------------------------------------------------------------------------------- plots and text


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path, dpi=100)


def _overlay(out_dir: Path, result: LawResult, curves: dict[CurveKey, Any], params) -> Path:
    """Observed val loss (dots) vs the law's prediction (lines), panels horizon x peak LR."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    horizons, lrs = [int(h) for h in params.horizons], sorted(float(x) for x in params.peak_lrs)
    names = list(params.schedules) + [OPTIMIZED]
    colors = {n: plt.cm.tab10(i % 10) for i, n in enumerate(names)}
    fig, axes = plt.subplots(len(horizons), len(lrs), figsize=(4.2 * len(lrs), 3.4 * len(horizons)),
                             squeeze=False, sharey=True)
    for key, curve in curves.items():
        if key.seed_index or curve.name not in result.predictions:
            continue
        if key.horizon not in horizons or key.peak_lr not in lrs:
            continue
        ax = axes[horizons.index(key.horizon)][lrs.index(key.peak_lr)]
        idx = curve.eval_index()
        ax.plot(curve.step[idx], curve.loss[idx], "o", ms=2.5, color=colors[key.schedule], alpha=0.6)
        if curve.name in result.predictions:
            ax.plot(curve.step[idx], result.predictions[curve.name], "-", lw=1.2 if group_of(key, params) != "fit"
                    else 2.4, color=colors[key.schedule], label=key.schedule)
    for i, h in enumerate(horizons):
        for j, lr in enumerate(lrs):
            ax = axes[i][j]
            fit_panel = h == params.fit_horizon and math.isclose(lr, params.fit_peak_lr)
            ax.set_title(f"{h} steps, peak LR {lr:g}" + (" (fit: thick)" if fit_panel else ""), fontsize=9)
            ax.set_xlabel("step")
            if j == 0:
                ax.set_ylabel(TARGET)
    handles = {}
    for ax in axes.ravel():
        for line, label in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(label, line)
    fig.suptitle(f"{result.name}: observed (dots) vs predicted (lines)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    if handles:
        fig.legend(handles.values(), handles.keys(), loc="upper center", ncol=min(len(handles), 6), fontsize=8,
                   bbox_to_anchor=(0.5, 0.955), frameon=False)
    obs = np.concatenate([c.loss[c.eval_index()] for c in curves.values()])
    obs = obs[np.isfinite(obs)]
    if obs.size:
        lo, hi = np.percentile(obs, [0, 97])
        axes[0][0].set_ylim(lo - 0.05 * (hi - lo), hi + 0.05 * (hi - lo))
    return _save(fig, Path(out_dir) / f"overlay_{result.name}.png")


def _lr_plot(out_dir: Path, record: dict[str, Any], params, lrs: np.ndarray, base: tuple[str, ...]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    steps = np.arange(1, lrs.size + 1)
    ax.plot(steps, lrs, lw=2, label=f"optimized ({record['predicted_final']:.4f})")
    for name in params.optimize.compare:
        other = run_lrs(base, tuple(params.schedules[name]), params.warmup_steps, record["total_steps"], record["peak_lr"])
        ax.plot(steps, other, lw=1, label=f"{name} ({record['references'].get(name, math.nan):.4f})")
    ax.set_xlabel("step")
    ax.set_ylabel("LR")
    ax.set_title(f"schedules (predicted final {TARGET} by {record['law']})", fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, Path(out_dir) / "optimized_schedule.png")


def _pct(x: Optional[float]) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{100 * x:.2f}%"


def _markdown(spec, summary: dict[str, Any], laws: list[LawResult]) -> str:
    p = spec.params
    fit = summary["fit"]
    lines = [f"# {spec.name}: loss-curve prediction", "",
             f"Fit: {', '.join(fit['curves'])} ({TARGET}, points after step {fit['after_step']}); every other "
             "curve predicted from its own LR schedule. Mean relative error (PredE) per group, mean over the "
             "group's curves. First `default`, what `python -m harness.fit curve` does without --law: "
             + _default_words(laws) + "; then every law, the default law first.", ""]
    groups = [g for g in GROUPS if any(r.group_mean(g) is not None for r in laws)]
    if laws:
        lines += ["| law | fit PredE | converged | fit s | " + " | ".join(GROUP_TITLES[g] for g in groups) + " |",
                  "|---|---|---|---|" + "---|" * len(groups)]
        for r in laws:
            if r.fit is None:
                lines.append(f"| {r.name} | failed | — | — | " + " | ".join("—" for _ in groups) + " |")
                continue
            counts = {g: sum(1 for row in r.rows if row["group"] == g) for g in groups}
            lines.append(f"| {r.name} | {_pct(r.fit['metrics']['prede'])} | {'yes' if r.fit['converged'] else '**no**'} | "
                         f"{r.fit['wall_s']:.1f} | " + " | ".join(f"{_pct(r.group_mean(g))} ({counts[g]})" for g in groups) + " |")
        lines += ["", "(n) = curves in the group. Per curve: predictions.csv; plots: overlay_<law>.png.", ""]
    seeds = summary.get("curve_seeds")
    if seeds:
        spread = seeds["spread"]
        lines += [f"Every curve is the mean of its {seeds['n']} seeds (fit curves and targets alike). One seed's curve "
                  f"differs from that mean by {_pct(spread.get('all'))} on average ("
                  + ", ".join(f"{GROUP_TITLES.get(g, g)}: {_pct(v)}" for g, v in spread.items() if g != "all")
                  + f"); the mean itself keeps roughly 1/sqrt({seeds['n']}) of one seed's offset, so errors near "
                  "that level are seed noise, not the law.", ""]
    opt = summary.get("optimization")
    if opt:
        s = opt["schedule"]
        lines += ["## Schedule optimization", "",
                  f"{opt['law']} fitted on the fit curves; its final loss minimized at {opt['total_steps']} steps, "
                  f"peak LR {opt['peak_lr']:g}, over stable-then-monotone-decay schedules (harness/fit/schedule_opt.py). "
                  f"Knots (fraction of post-warmup steps: multiplier): "
                  + ", ".join(f"{f:g}: {m:g}" for f, m in zip(s["knot_fractions"], s["knot_multipliers"])) + ".",
                  f"Runnable: optimized_schedule.yaml, or `{' '.join(opt['overrides'])}`.", "",
                  f"| schedule | predicted final | measured final (mean over seeds) | optimized - it (paired, "
                  f"{100 * opt['level']:.0f}% t-interval) | predicted difference |", "|---|---|---|---|---|"]
        meas = opt["measured_optimized"]
        lines.append(f"| optimized | {opt['predicted_final']:.4f} | "
                     f"{np.mean(meas):.4f} ({len(meas)})" if meas else f"| optimized | {opt['predicted_final']:.4f} | — ")
        lines[-1] += " | | |"
        for name, c in opt["comparisons"].items():
            measured = f"{np.mean(c['compare']):.4f} ({len(c['compare'])})" if c["compare"] else "—"
            diff = "—" if c["mean"] is None else f"{c['mean']:+.4f}" + (
                f" [{c['interval'][0]:+.4f}, {c['interval'][1]:+.4f}]" if c["interval"] else "")
            lines.append(f"| {name} | {opt['predicted_references'].get(name, math.nan):.4f} | {measured} | {diff} | "
                         f"{c['predicted_difference']:+.4f} |")
        lines.append("")
    if summary["warnings"]:
        lines += ["## Warnings", ""] + [f"- {w}" for w in summary["warnings"]] + [""]
    return "\n".join(lines)


def _default_words(laws: list[LawResult]) -> str:
    row = next((r for r in laws if r.name == DEFAULT_ROW), None)
    if row is None:
        return "not available (a fit failed)"
    names = row.fit["laws"]
    return f"`{names['main']}`, and `{names['peak_lr']}` for the curves at other peak LRs"


def _csv(rows: list[dict[str, Any]], columns: list[str]) -> str:
    out = [",".join(columns)]
    for r in rows:
        out.append(",".join("" if r.get(c) is None else (f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]))
                            for c in columns))
    return "\n".join(out) + "\n"
