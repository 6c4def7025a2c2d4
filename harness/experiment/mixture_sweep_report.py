"""The `mixture_sweep` report: per-domain losses against the domain ratio and the continued tokens,
the fitted CMR surfaces (harness/fit/laws/cmr.py) and the critical mixture ratio with its interval.

Points: each continued run's `val_loss/<general>` and `val_loss/<domain>` at the step of each T
(its curve rows; they are eval steps), T = (step) x tokens per step; the base run's final values are
L_g0 and L_d0. A continued run that has not completed gives the points it has reached (its LR is
constant, so a point does not depend on the run's length), with a warning naming it. When the sweep does not determine the CMR (fit not converged, no forgetting seen, no
feasible ratio) the report says why, loudly, and gives the measured table anyway.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.kinds import Report
from harness.formatting import finite


def _settings(table) -> list[dict[str, Any]]:
    return [json.loads(s) if isinstance(s, str) else dict(s or {}) for s in table["settings"]]


def sweep_points(table, general: str, domain: str, tokens_per_step: int) -> dict[str, Any]:
    """The base's final per-source losses and the (ratio, T, general, domain) points of the continued runs."""
    from harness.tracking.curve import read_curve

    g_key, d_key = f"val_loss/{general}", f"val_loss/{domain}"
    base, points, missing = None, [], []
    for s, (_, row) in zip(_settings(table), table.iterrows()):
        curve = row.get("curve")
        done = row.get("status") == "completed" and isinstance(curve, str) and Path(curve).is_file()
        if s.get("role") == "base":
            if done:
                last = [r for r in read_curve(Path(curve)) if g_key in r]
                base = {"general": last[-1][g_key], "domain": last[-1][d_key], "steps": last[-1]["step"]} if last else None
            continue
        if s.get("role") != "continued":
            continue
        if not (isinstance(curve, str) and Path(curve).is_file()):
            missing.append((s.get("ratio"), 0))
            continue
        by_step = {r["step"]: r for r in read_curve(Path(curve)) if g_key in r}
        if not done:  # a run still going (or stopped) gives the points it reached: its LR is constant
            missing.append((s.get("ratio"), max(by_step, default=0)))
        for step in s.get("token_steps", []):
            r = by_step.get(step)
            if r is not None and finite(r[g_key]) is not None and finite(r[d_key]) is not None:
                points.append({"ratio": float(s["ratio"]), "T": step * tokens_per_step, "step": step,
                               "general": float(r[g_key]), "domain": float(r[d_key])})
    return {"base": base, "points": points, "missing": missing}


def mixture_report(out_dir: Path, table, plan: dict[str, Any]) -> Report:
    from harness.fit.laws.cmr import CMRError, fit_cmr, holdout_check

    p = plan["spec"]["mixture_sweep"]
    general, domain = p.get("general", "general"), p.get("domain", "code")
    tokens_per_step = int(p.get("batch_size", 16)) * int(p.get("seq_len", 128))
    found = sweep_points(table, general, domain, tokens_per_step)
    warnings = [f"continued run at ratio {r} has not completed (evaluated up to step {step}): only its points up "
                f"to there are used" for r, step in found["missing"]]
    base, pts = found["base"], found["points"]
    result, refused = None, None
    if base is None:
        refused = "the base run did not complete (or has no per-source val loss): nothing to continue from"
    else:
        try:
            result = fit_cmr([q["ratio"] for q in pts], [q["T"] for q in pts], [q["general"] for q in pts],
                             base["general"], [q["domain"] for q in pts], base["domain"],
                             tolerance=float(p.get("tolerance", 0.0)), n_boot=int(p.get("n_boot", 200)),
                             level=float(p.get("level", 0.95)))
            warnings += result.warnings
        except CMRError as err:
            refused = str(err)
    if refused:
        warnings.append(f"CMR NOT REPORTED: {refused}")
    holdout = []
    if base is not None and pts:
        for source, key in ((general, "general"), (domain, "domain")):
            check = holdout_check(source, [q["ratio"] for q in pts], [q["T"] for q in pts], [q[key] for q in pts],
                                  base[key])
            if check is not None:
                holdout.append(check.to_json())
                if not check.mean_rel_error < check.persistence_mean_rel_error:
                    warnings.append(f"WARNING: held-out check: the {source} surface fitted below T = {check.tokens:,.0f} "
                                    f"predicts that budget worse ({100 * check.mean_rel_error:.2f}%) than carrying each "
                                    f"ratio's last loss forward ({100 * check.persistence_mean_rel_error:.2f}%): the "
                                    "assumed surface does not extrapolate in T on this sweep; sample more token budgets")
    summary = {"kind": "mixture_sweep", "general": general, "domain": domain, "tokens_per_step": tokens_per_step,
               "base": base, "points": pts, "cmr": result.to_json() if result else None, "refused": refused,
               "holdout": holdout, "warnings": warnings}
    plots = _plot(out_dir, summary, result) if pts and base else []
    return Report(markdown=_markdown(plan, summary), summary=summary, plots=plots)


def _grid(pts: list[dict[str, Any]], key: str) -> tuple[list[float], list[float], dict[tuple[float, float], float]]:
    ratios = sorted({q["ratio"] for q in pts})
    tokens = sorted({q["T"] for q in pts})
    return ratios, tokens, {(q["ratio"], q["T"]): q[key] for q in pts}


def _markdown(plan: dict[str, Any], s: dict[str, Any]) -> str:
    lines = [f"# {plan['spec'].get('name', 'mixture_sweep')}: critical mixture ratio", ""]
    for w in s["warnings"]:
        lines.append(f"> **{w}**")
    if s["warnings"]:
        lines.append("")
    base = s["base"]
    if base:
        lines += [f"Base proxy after {base['steps']} steps: val loss {s['general']} {base['general']:.4f}, "
                  f"{s['domain']} {base['domain']:.4f}.", ""]
    for key, title in (("general", f"{s['general']} (general) val loss"), ("domain", f"{s['domain']} (domain) val loss")):
        if not s["points"]:
            break
        ratios, tokens, cell = _grid(s["points"], key)
        lines += [f"## {title} by domain ratio r (rows) and continued tokens T (columns)", "",
                  "| r | " + " | ".join(f"T={t:,.0f}" for t in tokens) + " |",
                  "|---|" + "---|" * len(tokens)]
        for r in ratios:
            lines.append(f"| {r:g} | " + " | ".join(f"{cell[(r, t)]:.4f}" if (r, t) in cell else "" for t in tokens) + " |")
        lines.append("")
    cmr = s["cmr"]
    if cmr:
        g = cmr["general"]["params"]
        lines += ["## Fitted law and CMR", "",
                  "L_s(r, T) = L_s0 + (T / T_ref)^p (a + b r^q) per source (assumed surface, harness/fit/laws/cmr.py); "
                  f"T_ref = {cmr['t_ref']:,.0f} tokens.", "",
                  "| source | p | q | a | b | R² |", "|---|---|---|---|---|---|",
                  f"| {s['general']} | {g['p']:.3g} | {g['q']:.3g} | {g['a']:.3g} | {g['b']:.3g} | "
                  f"{cmr['general']['metrics'].get('r2', float('nan')):.3f} |"]
        if cmr["domain"]:
            d = cmr["domain"]["params"]
            lines.append(f"| {s['domain']} | {d['p']:.3g} | {d['q']:.3g} | {d['a']:.3g} | {d['b']:.3g} | "
                         f"{cmr['domain']['metrics'].get('r2', float('nan')):.3f} |")
        lo, hi = cmr["interval"]
        lines += ["", f"**CMR at T = {cmr['tokens']:,.0f} tokens (tolerance {cmr['tolerance']:g}): r = {cmr['cmr']:.3f}** "
                      f"({100 * cmr['level']:.0f}% bootstrap interval [{lo:.3f}, {hi:.3f}], {cmr['n_boot_ok']} refits); "
                      f"sampled ratios {cmr['sampled_ratios'][0]:g}..{cmr['sampled_ratios'][1]:g}.", "",
                  "CMR by budget: " + ", ".join(f"T={float(t):,.0f}: {v:.3f}" for t, v in cmr["cmr_by_tokens"].items()), ""]
    elif s["refused"]:
        lines += ["## CMR", "", f"Not reported: {s['refused']}", ""]
    if s.get("holdout"):
        lines += ["## Held-out check of the surface (forward in time)", "",
                  "Each source's surface refitted on the points below the largest T and asked for the largest T's "
                  "points; the baseline carries each ratio's loss at the last fitted T forward unchanged.", "",
                  "| source | predicted T | fit / held points | mean rel. error | max rel. error | baseline mean | converged |",
                  "|---|---|---|---|---|---|---|"]
        for h in s["holdout"]:
            lines.append(f"| {h['source']} | {h['tokens']:,.0f} | {h['n_fit']} / {h['n_held']} | "
                         f"{100 * h['mean_rel_error']:.2f}% | {100 * h['max_rel_error']:.2f}% | "
                         f"{100 * h['persistence_mean_rel_error']:.2f}% | {h['converged']} |")
        lines.append("")
    return "\n".join(lines) + "\n"


def _plot(out_dir: Path, s: dict[str, Any], result: Any) -> list[Path]:
    """mixture.png: general and domain val loss against r, one line per T, the fitted surface dashed,
    the base's loss dotted, the CMR and its interval shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.files import save_figure
    from harness.fit.laws.cmr import CMRLossLaw

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, key in zip(axes, ("general", "domain")):
        ratios, tokens, cell = _grid(s["points"], key)
        fit = result and (result.general if key == "general" else result.domain)
        for i, t in enumerate(tokens):
            color = plt.cm.viridis(i / max(len(tokens) - 1, 1))
            xs = [r for r in ratios if (r, t) in cell]
            ax.plot(xs, [cell[(r, t)] for r in xs], "o-", color=color, label=f"T={t:,.0f}")
            if fit:
                law = CMRLossLaw(t_ref=result.t_ref)
                grid = np.linspace(min(ratios), max(ratios), 50)
                data = law.prepare({"ratio": grid, "T": np.full_like(grid, t), "L0": np.full_like(grid, s["base"][key])})
                ax.plot(grid, law.predict(np.array(list(fit["params"].values())), data), "--", color=color, lw=1)
        ax.axhline(s["base"][key], color="0.4", ls=":", label="base")
        if result is not None:
            ax.axvline(result.cmr, color="crimson", lw=1.2, label=f"CMR {result.cmr:.2f}")
            if np.all(np.isfinite(result.interval)):
                ax.axvspan(*result.interval, color="crimson", alpha=0.1)
        ax.set_xlabel(f"domain ratio r ({s['domain']} share)")
        ax.set_ylabel(f"val loss/{s[key]}")
        ax.set_title(f"{s[key]} ({key}) loss vs ratio")
        ax.legend(fontsize=7)
    path = out_dir / "mixture.png"
    save_figure(fig, path)
    plt.close(fig)
    return [path]
