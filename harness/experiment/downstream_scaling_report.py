"""The downstream_scaling report: per run its final val loss, compute and evals, then

1. Task error vs loss: Gadre et al.'s Err(L) = epsilon - k exp(-gamma L) (law `gadre-error`,
   harness/fit/laws/downstream.py) fitted with the harness's fitter on the runs of every size but
   the held-out one, and its error predicting the held-out size's runs from their observed loss.
   The error is the mean multiple-choice error over the tasks (the collected `error` column).
2. PassUntil pass rate vs compute: per generative task, the PassUntil rate of each run with its
   interval, and the law of the PassUntil paper, -log(pass rate) = a C^b (a power law fitted by
   least squares in log-log on the runs with at least one pass; runs with none give an upper bound).
3. The probability-mass view ("Why has predicting downstream capabilities ... remained elusive?"):
   accuracy vs the probability on the correct choice, normalized over the choices and raw, and the
   raw mass on the incorrect choices, against loss.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.experiment.grid_report import _save
from harness.experiment.kinds import Report
from harness.formatting import finite, short_number


def _points(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    points = []
    for row in rows:
        loss = finite(row.get("final_val_loss"))
        if row["status"] != "completed" or loss is None:
            continue
        s = row["settings"]
        points.append({**{k: v for k, v in row.items() if "/" in k or k == "error"}, "run_id": row["run_id"],
                       "size": s.get("size"), "tpp": s.get("tokens_per_param"), "loss": loss,
                       "C": finite(row.get("flops")), "N": finite(row.get("N")), "D": finite(row.get("D"))})
    return points


def fit_error_law(points: list[dict[str, Any]], held_out: str) -> dict[str, Any]:
    """Gadre's law on every size but `held_out`; its predictions for the held-out runs."""
    from harness.fit.fit_checks import check_fit
    from harness.fit.fitter import fit_law
    from harness.fit.laws.downstream import GadreErrorLaw

    usable = [p for p in points if finite(p.get("error")) is not None and p["error"] > 0]
    train = [p for p in usable if p["size"] != held_out]
    test = [p for p in usable if p["size"] == held_out]
    out: dict[str, Any] = {"held_out": held_out, "n_fit": len(train), "n_held_out": len(test)}
    if len(train) < 3 or not test:
        out["skipped"] = (f"{len(train)} run(s) with an error outside the held-out size (needs >= 3) and "
                          f"{len(test)} held-out run(s) (needs >= 1)")
        return out
    law = GadreErrorLaw()
    loss = np.array([p["loss"] for p in train])
    err = np.array([p["error"] for p in train])
    fit = fit_law(law, {"loss": loss}, err)
    pred = law.predict(fit.theta, {"loss": np.array([p["loss"] for p in test])})
    obs = np.array([p["error"] for p in test])
    problems = check_fit(law, fit.theta, fit.converged, {"held_out": pred}, err)  # observed: the fit's points
    out.update(params=fit.params, derived=fit.derived, converged=fit.converged, fit_metrics=fit.metrics,
               problems=[p.message for p in problems],
               held_out_runs=[{"run_id": p["run_id"], "loss": p["loss"], "error": p["error"], "predicted": float(q)}
                              for p, q in zip(test, pred)],
               held_out_abs_error=float(np.mean(np.abs(pred - obs))),
               held_out_rel_error=float(np.mean(np.abs(pred - obs) / obs)))
    return out


def fit_passuntil_law(points: list[dict[str, Any]], task: str) -> dict[str, Any]:
    """-log(pass rate) = a C^b over runs with a pass (0 < rate < 1)."""
    from harness.fit.powerlaw import fit_power_law

    key = f"pass_rate/{task}"
    usable = [p for p in points if finite(p.get(key)) is not None and 0 < p[key] < 1 and p["C"]]
    out: dict[str, Any] = {"task": task, "n": len(usable)}
    if len(usable) < 2:
        out["skipped"] = f"{len(usable)} run(s) with 0 < pass rate < 1 (needs >= 2)"
        return out
    try:
        law = fit_power_law({"C": np.array([p["C"] for p in usable])}, np.array([-math.log(p[key]) for p in usable]))
    except ValueError as err:
        out["skipped"] = str(err)
        return out
    out.update(a=law.coefficient, b=law.exponent,
               formula=f"-log(pass rate) = {law.coefficient:.4g} * C^{law.exponent:.4g}")
    return out


def _plots(out_dir: Path, name: str, points, error_fit, pu_fits, mc_tasks, gen_tasks) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plots = []
    sizes = sorted({p["size"] for p in points}, key=lambda s: min(q["N"] or 0 for q in points if q["size"] == s))
    color = {s: f"C{i % 10}" for i, s in enumerate(sizes)}
    # 1. error vs loss with the law
    fig, ax = plt.subplots(figsize=(6, 4.2))
    for p in points:
        if finite(p.get("error")) is not None:
            marker = "*" if p["size"] == error_fit["held_out"] else "o"
            ax.plot(p["loss"], p["error"], marker, color=color[p["size"]], markersize=9 if marker == "*" else 6)
    for s in sizes:
        ax.plot([], [], "o", color=color[s], label=s + (" (held out)" if s == error_fit["held_out"] else ""))
    if "params" in error_fit:
        from harness.fit.laws.downstream import GadreErrorLaw

        losses = [p["loss"] for p in points]
        grid = np.linspace(min(losses) - 0.1, max(losses) + 0.1, 100)
        theta = np.array([error_fit["params"][k] for k in ("epsilon", "log_k", "gamma")])
        ax.plot(grid, GadreErrorLaw().predict(theta, {"loss": grid}), "k-", alpha=0.6, label="Gadre law (fit)")
    plots.append(_finish(fig, ax, "final val loss", "mean MC error", f"{name}: task error vs loss",
                         out_dir / "error_vs_loss.png", legend_size=7))
    # 2. PassUntil vs compute
    if gen_tasks:
        fig, ax = plt.subplots(figsize=(6, 4.2))
        for i, task in enumerate(gen_tasks):
            pts = [p for p in points if finite(p.get(f"pass_rate/{task}")) is not None and p["C"]]
            for p in pts:
                rate, lo, hi = p[f"pass_rate/{task}"], p.get(f"pass_rate_lo/{task}"), p.get(f"pass_rate_hi/{task}")
                if rate > 0:
                    ax.errorbar(p["C"], rate, yerr=[[rate - lo], [hi - rate]], fmt="o", color=f"C{i}")
                else:
                    ax.plot(p["C"], hi, "v", color=f"C{i}", alpha=0.6)  # no pass: the upper bound
            ax.plot([], [], "o", color=f"C{i}", label=f"{task} (v: upper bound, no pass)")
            fit = pu_fits.get(task, {})
            if "a" in fit and pts:
                cs = np.geomspace(min(p["C"] for p in pts), max(p["C"] for p in pts), 50)
                ax.plot(cs, np.exp(-fit["a"] * cs ** fit["b"]), "-", color=f"C{i}", alpha=0.6, label=fit["formula"])
        ax.set_xscale("log")
        ax.set_yscale("log")
        plots.append(_finish(fig, ax, "training FLOPs C", "PassUntil pass rate per sample",
                             f"{name}: PassUntil vs compute", out_dir / "passuntil_vs_compute.png"))
    # 3. probability mass
    if mc_tasks:
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2))
        for i, task in enumerate(mc_tasks):
            pts = sorted((p for p in points if finite(p.get(f"acc/{task}")) is not None), key=lambda p: p["loss"])
            x = [p["loss"] for p in pts]
            axes[0].plot(x, [p[f"acc/{task}"] for p in pts], "o-", color=f"C{i}", label=f"acc {task}")
            axes[0].plot(x, [p[f"p_correct/{task}"] for p in pts], "s--", color=f"C{i}", label=f"p_correct (normalized) {task}")
            axes[1].plot(x, [p[f"p_correct_raw/{task}"] for p in pts], "o-", color=f"C{i}", label=f"raw p(correct) {task}")
            axes[1].plot(x, [p[f"p_incorrect_raw/{task}"] for p in pts], "x--", color=f"C{i}", label=f"raw p(incorrect) {task}")
        axes[0].set_xlabel("final val loss")
        axes[0].set_ylabel("accuracy / normalized probability")
        axes[1].set_xlabel("final val loss")
        axes[1].set_ylabel("raw probability mass")
        axes[1].set_yscale("log")
        for ax in axes:
            ax.invert_xaxis()
            ax.legend(fontsize=6)
        fig.suptitle(f"{name}: probability mass on the correct choice vs the others")
        plots.append(out_dir / "probability_mass.png")
        _save(fig, plots[-1])
    return plots


def _finish(fig: Any, ax: Any, xlabel: str, ylabel: str, title: str, path: Path, legend_size: int = 6) -> Path:
    """Label one plot's axes, add its legend and save it to `path` (returned)."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=legend_size)
    _save(fig, path)
    return path


def downstream_report(out_dir: Path, table, plan: dict[str, Any], params: Any) -> Report:
    name = plan["spec"]["name"]
    rows = table.to_dict("records")
    for row in rows:
        row["settings"] = json.loads(row["settings"])
    points = _points(rows)
    mc_tasks = [t for t in params.tasks if any(f"acc/{t}" in p for p in points)]
    gen_tasks = [t for t in params.tasks if any(f"pass_rate/{t}" in p for p in points)]
    without = [r for r in rows if r["status"] == "completed" and not any(
        f"eval_step/{t}" in r and finite(r.get(f"eval_step/{t}")) is not None for t in params.tasks)]
    held_out = params.held_out_size()
    warnings: list[str] = []
    if without:
        warnings.append(f"{len(without)} completed run(s) without evals ({', '.join(r['run_id'] for r in without)}): "
                        "evaluate them with `python -m harness.eval RUN_DIR --tasks " + " ".join(params.tasks) + "`")

    md = [f"# Experiment {name} (downstream_scaling)", "",
          f"{len(rows)} run(s), {len(points)} completed with a final val loss. Tasks: {', '.join(params.tasks)} "
          "(harness/eval/tasks). C = the run's training FLOPs (harness/models/flops.py).", ""]
    head = ["run", "size", "tpp", "N", "C", "val loss", "error"]
    head += [f"acc {t}" for t in mc_tasks] + [f"p_correct {t}" for t in mc_tasks]
    head += [f"pass rate {t} [interval]" for t in gen_tasks]
    md += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for p in sorted(points, key=lambda p: (p["N"] or 0, p["C"] or 0)):
        cells = [f"`{p['run_id']}`", str(p["size"]), str(p["tpp"]), short_number(p["N"]) if p["N"] else "-",
                 f"{p['C']:.3g}" if p["C"] else "-", f"{p['loss']:.4f}",
                 f"{p['error']:.3f}" if finite(p.get("error")) is not None else "-"]
        cells += [f"{p.get(f'acc/{t}', float('nan')):.3f}" for t in mc_tasks]
        cells += [f"{p.get(f'p_correct/{t}', float('nan')):.3f}" for t in mc_tasks]
        cells += [f"{p[f'pass_rate/{t}']:.3g} [{p[f'pass_rate_lo/{t}']:.2g}, {p[f'pass_rate_hi/{t}']:.2g}] "
                  f"({int(p[f'passes/{t}'])}/{int(p[f'samples/{t}'])})"
                  if finite(p.get(f"pass_rate/{t}")) is not None else "-" for t in gen_tasks]
        md.append("| " + " | ".join(cells) + " |")

    error_fit = fit_error_law(points, held_out)
    md += ["", "## Task error vs loss: Gadre et al., Err(L) = epsilon - k exp(-gamma L)", ""]
    if "skipped" in error_fit:
        md.append(f"Not fitted: {error_fit['skipped']}.")
        warnings.append(f"error law not fitted: {error_fit['skipped']}")
    else:
        d = error_fit["derived"]
        md += [f"Fitted on {error_fit['n_fit']} runs (every size but {held_out}); Huber on log error, multi-start "
               f"(harness/fit/fitter.py){'' if error_fit['converged'] else ', NOT converged'}: "
               f"epsilon = {d['epsilon']:.4g}, k = {d['k']:.4g}, gamma = {d['gamma']:.4g}; "
               f"fit R^2 {error_fit['fit_metrics'].get('r2', float('nan')):.3f}.", "",
               f"Held out ({held_out}, predicted from each run's observed loss): mean absolute error "
               f"{error_fit['held_out_abs_error']:.4f}, mean relative error {100 * error_fit['held_out_rel_error']:.2f}%.", "",
               "| held-out run | loss | error | predicted |", "|---|---|---|---|"]
        md += [f"| `{r['run_id']}` | {r['loss']:.4f} | {r['error']:.4f} | {r['predicted']:.4f} |"
               for r in error_fit["held_out_runs"]]
        if error_fit["problems"]:
            md += [""] + [f"- fit check: {p}" for p in error_fit["problems"]]
            warnings += [f"error law: {p}" for p in error_fit["problems"]]

    pu_fits = {t: fit_passuntil_law(points, t) for t in gen_tasks}
    md += ["", "## PassUntil pass rate vs compute", "",
           "Each item sampled until its first exact answer or the cap (harness/eval/passuntil.py); the rate is "
           "passes / samples with a 95% likelihood-ratio interval. Law (the PassUntil paper's form): "
           "-log(pass rate) = a C^b, least squares in log-log over runs with a pass.", ""]
    for task, fit in pu_fits.items():
        md.append(f"- {task}: " + (fit["formula"] + f" ({fit['n']} runs)" if "a" in fit else f"not fitted: {fit['skipped']}"))
    if not gen_tasks:
        md.append("No generative task was evaluated.")

    md += ["", "## Probability mass on the correct choice", "",
           "Per MC task and run: accuracy, the probability of the correct choice normalized over the choices "
           "(p_correct; p_incorrect = 1 - p_correct), and the raw mass the model puts on the correct and on the "
           "incorrect continuations (probability_mass.png).", "",
           "| run | loss | task | acc | acc_norm | p_correct | raw p(correct) | raw p(incorrect) | mean logprob correct |",
           "|---|---|---|---|---|---|---|---|---|"]
    for p in sorted(points, key=lambda p: -p["loss"]):
        for t in mc_tasks:
            if finite(p.get(f"acc/{t}")) is None:
                continue
            md.append(f"| `{p['run_id']}` | {p['loss']:.4f} | {t} | {p[f'acc/{t}']:.3f} | {p[f'acc_norm/{t}']:.3f} | "
                      f"{p[f'p_correct/{t}']:.3f} | {p[f'p_correct_raw/{t}']:.3g} | {p[f'p_incorrect_raw/{t}']:.3g} | "
                      f"{p[f'logprob_correct/{t}']:.3f} |")

    plots = _plots(out_dir, name, points, error_fit, pu_fits, mc_tasks, gen_tasks) if points else []
    if warnings:
        md += ["", "## Warnings", ""] + [f"- {w}" for w in warnings]
    md += ["", "Plots: " + ", ".join(p.name for p in plots)] if plots else []
    summary = {"runs": len(rows), "points": len(points), "error_law": error_fit, "passuntil": pu_fits,
               "warnings": warnings}
    return Report(markdown="\n".join(md) + "\n", summary=json.loads(json.dumps(summary, default=float)), plots=plots)
