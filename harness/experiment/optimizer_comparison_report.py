"""The optimizer comparison's report: per (variant, size, multiple) the best config found by
coordinate descent and its seeds, the speedup over the baseline (speedup.py) at matched data and
FLOPs and in wall-clock time, hyperparameter transfer across sizes, sensitivity curves and plots.

The walks are replayed from the runs on disk (the same code that planned them: the kind's
`state`), so the report and the plan agree on which run is which cell's best.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional

import numpy as np

from harness.experiment.coordinate_descent import CONVERGED, MAX_ROUNDS
from harness.experiment.kinds import Report
from harness.experiment.results import RunResults
from harness.experiment.speedup import Cell, pooled_noise, power_law_in_N, speedup
from harness.files import save_figure
from harness.formatting import finite


def run_throughput(run_dir: Path) -> tuple[Optional[float], Optional[float]]:
    """(median tokens/s over the run's steps after the first 10%, FLOPs per token including the
    optimizer's own work when the curve has an `optimizer_flops` column, else None)."""
    from harness.tracking.curve import read_curve

    rows = read_curve(Path(run_dir) / "curve.jsonl")
    if not rows:
        return None, None
    tps = [finite(r.get("tokens_per_s")) for r in rows[len(rows) // 10:]]
    tps = [t for t in tps if t is not None]
    last = rows[-1]
    fpt = None
    if "optimizer_flops" in last and finite(last.get("tokens")):
        fpt = (float(last.get("flops") or 0.0) + float(last.get("optimizer_flops") or 0.0)) / float(last["tokens"])
    return (float(np.median(tps)) if tps else None), fpt


def _save(fig, path: Path) -> Path:
    return save_figure(fig, path)


def _ci(x: Optional[tuple[float, float]]) -> Optional[list[Optional[float]]]:
    return None if x is None else [None if not math.isfinite(v) else float(v) for v in x]


def _num(x: Any, fmt: str = ".4f") -> str:
    if x is None:
        return "-"
    if isinstance(x, float) and math.isinf(x):
        return "inf"
    return format(x, fmt)


def comparison_report(kind, out_dir: Path, table, plan: dict[str, Any]) -> Report:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.experiment.spec import typed_spec

    spec = typed_spec(dict(plan["spec"]), source="plan.json")
    params = spec.params
    results = RunResults(spec.base, out_dir)
    state = kind.state(spec, lambda r: results.of(r).loss)
    name = spec.name
    warnings: list[str] = []
    notes: list[str] = []

    # ---- each cell's best config and its seeds
    cells: dict[Any, dict[str, Any]] = {}
    for cell, walk in state.walks.items():
        seeds = state.seed_runs.get(cell, [])
        res = [results.of(r) for r in seeds]
        done = [x for x in res if x.loss is not None]
        losses = [x.loss for x in done if math.isfinite(x.loss)]
        through = [run_throughput(x.run_dir) for x in done if math.isfinite(x.loss)]
        first = seeds[0].settings if seeds else None
        N = first["N_non_embedding"] if first else None
        D = first["D"] if first else None
        cells[cell] = {"walk": walk, "losses": losses, "complete": bool(seeds) and len(done) == len(seeds),
                       "tps": [t for t, _ in through], "fpt": next((f for _, f in through if f), None),
                       "N": N, "D": D, "n_runs": len(walk.points) + max(0, len(seeds) - 1),
                       "seeds": [r.settings["seed"] for r in seeds]}
        where = f"{cell.variant} at {cell.size} x {cell.tokens_per_param:g}"
        if walk.state == MAX_ROUNDS:
            warnings.append(f"{where}: max_rounds ({params.max_rounds}) hit before coordinate descent converged; "
                            "its best config is the best found, not an optimum (raise max_rounds)")
        elif walk.state != CONVERGED:
            warnings.append(f"{where}: coordinate descent not finished (runs missing); run the experiment again")
        for axis in walk.edges:
            warnings.append(f"{where}: the best {axis} ({dict(walk.best)[axis]:g}) is an end of its grid that cannot "
                            "be extended (a 0 bound or a non-numeric value): the optimum may lie beyond it")
        for axis, added in walk.extended.items():
            notes.append(f"{where}: the {axis} grid was extended by {', '.join(f'{v:g}' for v in added)} "
                         "(the walk reached its end)")
        if seeds and len(done) == len(seeds) and len(losses) < len(seeds):
            warnings.append(f"{where}: {len(seeds) - len(losses)} seed(s) of the best config diverged")
    for size, noise in state.noise.items():
        if noise is not None and noise > params.epsilon:
            notes.append(f"{size}: measured seed noise (std {noise:.4f}) exceeds epsilon ({params.epsilon:g}): "
                         "coordinate descent there stopped at improvements <= the noise")
    if not any(c["fpt"] for c in cells.values()):
        notes.append("matched FLOPs: the curves have no optimizer_flops column, so the optimizers' own work is not "
                     "counted; the FLOPs speedup equals the data speedup (same model, same tokens)")

    # ---- speedups, per size against the baseline's law
    records = []
    b_notes: set[str] = set()
    # The seed-to-seed noise of each size, pooled over every cell's seeds (all variants, multiples).
    pooled = {size: pooled_noise([Cell(D=1.0, losses=c["losses"]) for k, c in cells.items()
                                  if k.size == size and c["complete"]]) for size in {k.size for k in cells}}
    for cell, c in cells.items():
        base_cells = {}
        for t in params.tokens_per_param:
            bc = cells.get(type(cell)(params.baseline, cell.size, float(t)))
            if bc and bc["complete"] and bc["losses"]:
                base_cells[float(bc["D"])] = Cell(D=float(bc["D"]), losses=bc["losses"],
                                                  tokens_per_s=bc["tps"] if len(bc["tps"]) == len(bc["losses"]) else (),
                                                  flops_per_token=bc["fpt"])
        sp = None
        if c["complete"] and c["losses"] and len(base_cells) >= 2:
            sp = speedup(base_cells, Cell(D=float(c["D"]), losses=c["losses"],
                                          tokens_per_s=c["tps"] if len(c["tps"]) == len(c["losses"]) else (),
                                          flops_per_token=c["fpt"]),
                         b=params.b, b_prior=tuple(params.b_prior), n_boot=params.n_boot, level=params.level,
                         noise=pooled[cell.size] if pooled[cell.size][0] is not None else None)
            b_notes.update(sp.notes)
        walk = c["walk"]
        records.append({
            "variant": cell.variant, "optimizer": params.variants[cell.variant].optimizer, "size": cell.size,
            "N": c["N"], "multiple": cell.tokens_per_param, "D": c["D"],
            "best_loss": float(np.mean(c["losses"])) if c["losses"] else None,
            "best_loss_std": float(np.std(c["losses"], ddof=1)) if len(c["losses"]) > 1 else None,
            "best_hparams": dict(walk.best) if walk.best else {}, "n_runs": c["n_runs"], "seeds": c["seeds"],
            "descent": walk.state, "moves": walk.moves,
            "speedup": None if sp is None else (None if not math.isfinite(sp.speedup) else sp.speedup),
            "speedup_ci": None if sp is None else _ci(sp.interval),
            "speedup_called": None if sp is None else sp.called,
            "flops_speedup": None if sp is None or sp.flops is None else sp.flops,
            "flops_speedup_ci": None if sp is None else _ci(sp.flops_interval),
            "wallclock_speedup": None if sp is None or sp.wallclock is None or not math.isfinite(sp.wallclock) else sp.wallclock,
            "wallclock_speedup_ci": None if sp is None else _ci(sp.wallclock_interval),
            "tokens_per_s": float(np.mean(c["tps"])) if c["tps"] else None,
            "law": None if sp is None or sp.law is None else {"a": sp.law.a, "b": sp.law.b, "c": sp.law.c,
                                                             "b_identified": sp.law.identified},
        })
    identified = all(r["law"]["b_identified"] for r in records if r["law"])
    if records and any(r["law"] for r in records) and not identified:
        warnings.append("the baseline law L(D) = a D^-b + c is not identified with "
                        f"{len(params.tokens_per_param)} data multiples: " + "; ".join(sorted(b_notes)))

    # ---- speedup vs size: flag a variant whose speedup shrinks with size (the paper's headline)
    for variant in params.variants:
        if variant == params.baseline:
            continue
        by_size = [(r["N"], r["speedup"]) for r in records if r["variant"] == variant and r["speedup"] is not None
                   and r["multiple"] == max(params.tokens_per_param)]
        by_size.sort()
        if len(by_size) >= 2 and by_size[-1][1] < by_size[0][1]:
            notes.append(f"{variant}: the speedup shrinks with size ({by_size[0][1]:.2f}x at N={by_size[0][0]:.3g} -> "
                         f"{by_size[-1][1]:.2f}x at N={by_size[-1][0]:.3g}, largest multiple)")

    transfer = hparam_transfer(records, params)
    sensitivity = sensitivity_curves(state, results)
    variant_laws = variant_scaling_laws(records, params)

    # ---- plots
    plots: list[Path] = []
    sizes = [str(s) for s in params.sizes]
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4.2), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, variant in enumerate(params.variants):
            pts = [r for r in records if r["variant"] == variant and r["size"] == size and r["best_loss"] is not None]
            if pts:
                ax.errorbar([r["D"] for r in pts], [r["best_loss"] for r in pts],
                            yerr=[r["best_loss_std"] or 0 for r in pts], fmt="o", color=f"C{i}", label=variant, capsize=3)
        law = next((r["law"] for r in records if r["size"] == size and r["law"]), None)
        ds = [r["D"] for r in records if r["size"] == size and r["D"]]
        if law and ds:
            grid = np.geomspace(min(ds) / 1.5, max(ds) * 2, 50)
            ax.plot(grid, law["a"] * grid ** -law["b"] + law["c"], "-", color="C0", alpha=0.6,
                    label=f"{params.baseline} law (b={law['b']:.2f}{'' if law['b_identified'] else ', fixed'})")
        ax.set_xscale("log")
        ax.set_xlabel("D (tokens)")
        ax.set_ylabel("final val loss (best config, mean over seeds)")
        ax.set_title(f"{size}")
        ax.legend(fontsize=7)
    fig.suptitle(f"{name}: loss vs D per variant, with the baseline's law")
    plots.append(_save(fig, out_dir / "loss_vs_D.png"))

    others = [v for v in params.variants if v != params.baseline]
    if others:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for i, variant in enumerate(others):
            for j, t in enumerate(params.tokens_per_param):
                pts = sorted((r["N"], r["speedup"], r["speedup_ci"]) for r in records
                             if r["variant"] == variant and r["multiple"] == t and r["speedup"] is not None)
                if not pts:
                    continue
                xs = [p[0] * (1 + 0.03 * j) for p in pts]
                ys = [p[1] for p in pts]
                lo = [p[1] - (p[2][0] if p[2] and p[2][0] is not None else p[1]) for p in pts]
                hi = [(p[2][1] if p[2] and p[2][1] is not None else p[1]) - p[1] for p in pts]
                ax.errorbar(xs, ys, yerr=[lo, hi], fmt="o-", color=f"C{i + 1}", capsize=3,
                            alpha=0.5 + 0.5 * (j + 1) / len(params.tokens_per_param), label=f"{variant} x{t:g}")
        ax.axhline(1.0, color="gray", linestyle=":")
        ax.set_xscale("log")
        ax.set_xlabel("N (non-embedding parameters)")
        ax.set_ylabel(f"speedup over {params.baseline} (D_eff / D)")
        ax.set_title(f"{name}: speedup vs size ({params.level:.0%} intervals)")
        ax.legend(fontsize=7)
        plots.append(_save(fig, out_dir / "speedup_vs_size.png"))

    for variant in params.variants:
        curves = {k: v for k, v in sensitivity.items() if k[0] == variant}
        axes_names = sorted({k[3] for k in curves})
        if not axes_names:
            continue
        fig, axs = plt.subplots(1, len(axes_names), figsize=(5 * len(axes_names), 3.8), squeeze=False)
        for ax, axis in zip(axs[0], axes_names):
            for i, ((v, size, t, a), pts) in enumerate(sorted((k, p) for k, p in curves.items() if k[3] == axis)):
                pts = [(x, y) for x, y in pts if math.isfinite(y)]
                if pts:
                    ax.plot([x for x, _ in pts], [y for _, y in pts], "o-", color=f"C{i}", label=f"{size} x{t:g}")
            if all(isinstance(x, (int, float)) and x > 0 for k, p in curves.items() if k[3] == axis for x, _ in p):
                ax.set_xscale("log")
            ax.set_xlabel(axis)
            ax.set_ylabel("final val loss")
            ax.legend(fontsize=7)
        fig.suptitle(f"{name}: {variant} sensitivity around the best config (other axes at their best)")
        plots.append(_save(fig, out_dir / f"sensitivity_{variant}.png"))

    md = _markdown(name, params, records, transfer, warnings, notes, plots, state) + _laws_markdown(variant_laws)
    summary = {"name": name, "kind": "optimizer_comparison", "baseline": params.baseline,
               "records": records, "hparam_transfer": transfer, "variant_laws": variant_laws,
               "sensitivity": {f"{v}|{s}|{t:g}|{a}": [[x, (y if math.isfinite(y) else None)] for x, y in p]
                               for (v, s, t, a), p in sensitivity.items()},
               "seed_noise": state.noise,
               "pooled_seed_noise": {s: {"std": v[0], "df": v[1]} for s, v in pooled.items()}, "law_identified": identified,
               "matched_flops": "optimizer FLOPs counted (curve optimizer_flops)" if any(c["fpt"] for c in cells.values())
               else "optimizer FLOPs not counted (no optimizer_flops column): FLOPs speedup = data speedup",
               "warnings": warnings, "notes": notes, "plots": [p.name for p in plots]}
    return Report(markdown=md, summary=summary, plots=plots)


def variant_scaling_laws(records: list[dict[str, Any]], params) -> dict[str, dict[str, Any]]:
    """Each variant's own L(N, D) = E + A/N^alpha + B/D^beta (Approach 3, harness/experiment/scaling_fit.py)
    over its cells' best losses, for extrapolating it beyond the sizes tuned; only where the cells
    can identify it (>= MIN_POINTS cells on >= 2 sizes and >= 2 token counts), else the reason."""
    from harness.experiment.scaling_fit import MIN_POINTS, fit_approach3

    out: dict[str, dict[str, Any]] = {}
    for variant in params.variants:
        pts = [r for r in records if r["variant"] == variant and r["best_loss"] is not None and r["N"] and r["D"]]
        sizes, ds = {r["N"] for r in pts}, {r["D"] for r in pts}
        if len(pts) < MIN_POINTS or len(sizes) < 2 or len(ds) < 2:
            out[variant] = {"fitted": False, "reason": f"{len(pts)} cell(s) on {len(sizes)} size(s) and {len(ds)} "
                            f"token count(s); Approach 3 needs >= {MIN_POINTS} cells on >= 2 sizes and >= 2 token counts"}
            continue
        fit = fit_approach3([r["N"] for r in pts], [r["D"] for r in pts], [r["best_loss"] for r in pts],
                            n_boot=min(params.n_boot, 200), level=params.level)
        out[variant] = {"fitted": True, **fit.to_json()}
    return out


def _laws_markdown(laws: dict[str, dict[str, Any]]) -> str:
    lines = ["", "## Each variant's own L(N, D) (Approach 3, for extrapolation)", ""]
    for variant, law in laws.items():
        if not law["fitted"]:
            lines.append(f"- {variant}: not fitted: {law['reason']}.")
            continue
        p, iv = law["params"], law["intervals"]
        shown = ", ".join(f"{k} {p[k]:.3g}" + (f" [{iv[k][0]:.3g}, {iv[k][1]:.3g}]" if k in iv else "")
                          for k in ("E", "A", "alpha", "B", "beta"))
        lines.append(f"- {variant}: {shown}" + ("; " + "; ".join(law["warnings"]) if law["warnings"] else ""))
    return "\n".join(lines) + "\n"


def hparam_transfer(records: list[dict[str, Any]], params) -> list[dict[str, Any]]:
    """Per (variant, multiple, axis): the best value at each size; `stable` when equal at every size,
    else a power law in N and the next size's predicted optimum (N x the last size ratio)."""
    out = []
    for variant in params.variants:
        for t in params.tokens_per_param:
            rows = sorted((r for r in records if r["variant"] == variant and r["multiple"] == t
                           and r["best_hparams"] and r["N"]), key=lambda r: r["N"])
            if not rows:
                continue
            for axis in rows[0]["best_hparams"]:
                values = [r["best_hparams"][axis] for r in rows]
                Ns = [r["N"] for r in rows]
                entry = {"variant": variant, "multiple": t, "axis": axis, "N": Ns, "best": values,
                         "stable": (len(set(values)) == 1) if len(values) > 1 else None}
                law = None if entry["stable"] is not False else power_law_in_N(Ns, values) if all(
                    isinstance(v, (int, float)) for v in values) else None
                if law and len(Ns) >= 2:
                    next_N = Ns[-1] * Ns[-1] / Ns[-2]
                    entry.update({"power_law": {"k": law[0], "exponent": law[1]}, "next_N": next_N,
                                  "predicted": law[0] * next_N ** law[1]})
                out.append(entry)
    return out


def sensitivity_curves(state, results: RunResults) -> dict[tuple, list[tuple[Any, float]]]:
    """(variant, size, multiple, axis) -> [(value, loss)] of the walk's runs on that axis through
    the best config (the other axes at their best), sorted by value."""
    out = {}
    for cell, walk in state.walks.items():
        if walk.best is None:
            continue
        best = dict(walk.best)
        seed0 = state.seed_runs.get(cell)
        for axis in best:
            pts = []
            for p in walk.points:
                d = dict(p)
                if all(d[a] == best[a] for a in best if a != axis):
                    req = [r for _, r in state.requests if r.settings.get("variant") == cell.variant
                           and r.settings.get("size") == cell.size and r.settings.get("tokens_per_param") == cell.tokens_per_param
                           and r.settings.get("role") == "descent" and all(r.settings.get(a) == d[a] for a in d)]
                    loss = results.of(req[0]).loss if req else None
                    if loss is not None:
                        pts.append((d[axis], loss))
            if len(pts) >= 2 or seed0:
                out[(cell.variant, cell.size, cell.tokens_per_param, axis)] = sorted(pts, key=lambda x: x[0])
    return out


def _markdown(name, params, records, transfer, warnings, notes, plots, state) -> str:
    md = [f"# Experiment {name} (optimizer_comparison)", "",
          f"Baseline **{params.baseline}**. Each (variant, size, multiple) is tuned by coordinate descent "
          f"(epsilon {params.epsilon:g} or the measured seed noise, at most {params.max_rounds} moves), then its best "
          f"config is trained with {params.seeds} seed(s). Losses: final val loss after the full schedule.", "",
          "**Speedup** = D_eff / D: the data the baseline needs (its law L(D) = a D^-b + c at the same size) to "
          f"reach the variant's loss, with a {params.level:.0%} bootstrap interval over seeds and the law fit; "
          "called (**bold**) only when the interval excludes 1. **Matched FLOPs**: the FLOPs speedup counts each "
          "optimizer's own FLOPs per token where the curves report them. **Matched time**: the wall-clock speedup "
          "uses each run's measured tokens/s (optimizer overhead included).", ""]
    md += [f"**Warning:** {w}" for w in warnings] + ([""] if warnings else [])
    md += ["| variant | optimizer | size | N | multiple | D | best loss (mean ± std) | best hparams | runs | seeds | "
           "speedup (CI) | FLOPs speedup (CI) | wall-clock speedup (CI) | tokens/s |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]

    def ci(v, c, called=None):
        if v is None:
            return "-"
        text = f"{_num(v, '.3f')} ({_num(c[0] if c and c[0] is not None else math.inf, '.3f')}–" \
               f"{_num(c[1] if c and c[1] is not None else math.inf, '.3f')})" if c else _num(v, '.3f')
        return f"**{text}**" if called else text

    for r in records:
        loss = "-" if r["best_loss"] is None else f"{r['best_loss']:.4f}" + \
            (f" ± {r['best_loss_std']:.4f}" if r["best_loss_std"] is not None else "")
        hp = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" for k, v in r["best_hparams"].items())
        md.append(f"| {r['variant']} | {r['optimizer']} | {r['size']} | {_num(r['N'], '.3g')} | {r['multiple']:g} | "
                  f"{_num(r['D'], '.3g')} | {loss} | {hp} ({r['descent']}) | {r['n_runs']} | {len(r['seeds'])} | "
                  f"{ci(r['speedup'], r['speedup_ci'], r['speedup_called'])} | {ci(r['flops_speedup'], r['flops_speedup_ci'])} | "
                  f"{ci(r['wallclock_speedup'], r['wallclock_speedup_ci'])} | {_num(r['tokens_per_s'], '.0f')} |")
    md += ["", "Seed noise (std of the baseline's start config over seeds, per size): " +
           ", ".join(f"{s}: {_num(n)}" for s, n in state.noise.items()), ""]
    if transfer:
        md += ["## Hyperparameter transfer across sizes", "",
               "| variant | multiple | axis | best per size (small → large) | stable | power law in N | next size's optimum |",
               "|---|---|---|---|---|---|---|"]
        for e in transfer:
            law = e.get("power_law")
            law_text = "-" if not law else f"{law['k']:.3g} N^{law['exponent']:.3f}"
            next_text = "-" if "predicted" not in e else f"{e['predicted']:.3g} at N={e['next_N']:.3g}"
            md.append(f"| {e['variant']} | {e['multiple']:g} | {e['axis']} | {', '.join(str(v) for v in e['best'])} | "
                      f"{ {True: 'yes', False: 'no', None: 'one size'}[e['stable']]} | {law_text} | {next_text} |")
        md.append("")
    if notes:
        md += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    if plots:
        md += ["## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots] + [""]
    return "\n".join(md)
