"""Independent checks of the batch and step laws on Step Law's released grid (held-out model sizes).

Data: step-law/steplaw `data/dense_lr_bs_loss.csv` (public, not part of this repository), read as
scripts/reproduce_steplaw.py reads it: B in tokens (bs sequences x 2,048), D in tokens, the
smoothed final loss. --data DIR, else $HARNESS_DATA, else ../shared/data; exit 2 when absent.

Split, fixed before anything is scored (issue 13, as reproduce_steplaw.py): fit on the 12 cells
with N <= 429M (214M, 268M, 429M); score on the 5 cells at 537M and 1.07B.

The grid sweeps (lr, B) at 3-4 token budgets D per model size, with one weight decay. Each check
uses the best-lr run of every (N, D, B) ("rows") unless it says otherwise; K = D / B steps.

1. `three-term` L(N, M, K) (harness/fit/laws/three_term.py) and `kaplan-steps` L(N, S, B)
   (harness/fit/laws/critical_batch.py): fitted on the fit rows, the loss of every held-out row
   (mean / max |relative error|); baseline `chinchilla` over (N, D), blind to B, on the same rows.
   Per held-out cell: the best loss over its batches as the law predicts it, against the cell's
   best run (baseline: `chinchilla` fitted on the fit cells' best runs). And the batch each law
   picks for a held-out (N, D) (three-term: M*(D); Step Law: B_opt(D); Power Lines: B_opt(D)):
   the best-lr run at the grid batch nearest it, its loss over the cell's best, minus 1.
2. `critbatch` (harness/fit/hyperparams.py `critical_batch_from_runs`, McCandlish's
   S = S_min + E_min / B): per model size and target loss, the tokens each batch needs to reach
   the target, interpolated in log D between the 3-4 token budgets of that size, as steps D / B.
   * coarseness of that interpolation: drop an interior budget, read its own loss back from the
     others; the relative error of the tokens found (the error of steps-to-target itself);
   * leave-one-batch-out: the hyperbola fitted on the other batches predicts the left-out batch's
     steps (baseline: perfect scaling S = E / B, one parameter);
   * B_crit's trend to held-out sizes: B_crit(L) = c L^m (Kaplan's form) and B_crit(D_min) = c D^m
     (Power Lines' form) fitted on the fit sizes' points, and the `kaplan-steps` law's
     B_crit(L) = B* / L^(1/alpha_B) fitted on the fit rows, each against B_crit measured at the
     held-out sizes (from their own runs);
   * steps to the held-out sizes' targets at each batch, from `three-term` and `kaplan-steps`
     fitted on the fit rows (the law solved for its steps), against the steps read from the runs.
3. `powerlines` (harness/fit/hyperparams.py `fit_power_lines`): tau_opt(D/N) and B_opt(D) fitted on
   the fit cells; for a held-out cell B = B_opt(D) and lr = B / (lambda D tau_opt(D/N)); the loss gap
   of the run nearest (lr, B) in (log lr, log B): Step Law's metric, anchor 0.114% (the official
   Step Law refit). The grid's weight decay is one value, so lambda cancels out of lr (any constant
   gives the same lr) and lambda_opt cannot be checked: only tau_opt read as an lr law at fixed
   lambda, and B_opt. The paper finds tau_opt independent of B by sweeping lambda at a fixed lr
   (lambda_opt ∝ B); at a fixed lambda that would mean lr_opt ∝ B, so tau_opt's slope in log B
   inside a cell is reported. Below the table, a post-hoc diagnostic (not a candidate method): tau_opt fitted
   only at each fit cell's B_opt.

    python scripts/check_batch_laws.py [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.fit.data_dir import exit_if_missing  # noqa: E402
from harness.fit.fit_checks import check_fit  # noqa: E402
from harness.fit.fitter import fit_law  # noqa: E402
from harness.fit.hyperparams import (critical_batch_from_runs, fit_critical_batch, fit_power_lines,  # noqa: E402
                                     fit_step_law, tokens_to_reach)
from harness.fit.laws.base import Law  # noqa: E402
from harness.fit.laws.critical_batch import KaplanStepsLaw  # noqa: E402
from harness.fit.laws.final_loss import ChinchillaLaw  # noqa: E402
from harness.fit.laws.three_term import ThreeTermLaw  # noqa: E402
from harness.fit.powerlaw import fit_power_law  # noqa: E402
from harness.fit.steplaw_landscape import nearest_run_gap  # noqa: E402

FIT_MAX_N = 4.3e8            # fit on N <= 429M, score 537M and 1.07B (as reproduce_steplaw.py)
STEP_LAW_ANCHOR = 0.00114    # the official Step Law procedure refitted on the same split
# Step Law trains with one AdamW weight decay. Its value does not matter here: tau = B / (lr wd D),
# so the lr that Power Lines predicts, B / (wd D tau_opt), has wd cancel out.
WEIGHT_DECAY = 0.1


# ---- the rows the laws see ----------------------------------------------------------------------


def best_lr_rows(runs: pd.DataFrame) -> pd.DataFrame:
    """The best-lr run of every (N, D, B), with its steps K = D / B (column `step`)."""
    rows = runs.loc[runs.groupby(["N", "D", "B"])["loss"].idxmin()]
    return rows.assign(step=rows["D"] / rows["B"]).reset_index(drop=True)


def split(table: pd.DataFrame, fit_max_n: float = FIT_MAX_N) -> tuple[pd.DataFrame, pd.DataFrame]:
    return table[table["N"] <= fit_max_n], table[table["N"] > fit_max_n]


def relative_errors(predicted: np.ndarray, observed: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(predicted, float) / np.asarray(observed, float) - 1.0)


@dataclass(frozen=True)
class HeldOut:
    """A law fitted on the fit rows, scored on the held-out rows."""

    law: str
    mean: float                   # mean |relative error| on the held-out rows
    max: float
    fit_mean: float               # the same on the fit rows (the fit's own residuals)
    problems: tuple[str, ...]     # harness.fit.fit_checks findings (the CLI would refuse on these)
    theta: np.ndarray


def fit_and_score(law: Law, fit: pd.DataFrame, held: pd.DataFrame) -> HeldOut:
    """`law` fitted (the harness's usual Huber multi-start) on `fit`, its loss predicted on `held`."""
    data = law.prepare(fit)
    result = fit_law(law, data, fit["loss"].to_numpy())
    predicted = np.asarray(law.predict(result.theta, law.prepare(held)), float)
    errors = relative_errors(predicted, held["loss"].to_numpy())
    problems = check_fit(law, result.theta, result.converged, {"held-out": predicted}, fit["loss"].to_numpy(), data)
    return HeldOut(law.name, float(errors.mean()), float(errors.max()), float(result.metrics["prede"]),
                   tuple(p.kind for p in problems), result.theta)


def batch_pick_gap(held_runs: pd.DataFrame, pick: Callable[[float, float], float]) -> list[float]:
    """Per held-out (N, D) cell: the best-lr run at the grid batch nearest `pick(N, D)` (in log B),
    its loss over the cell's best run, minus 1. The lr is the grid's best at that batch (an oracle):
    the laws that pick only a batch are scored on the batch alone."""
    gaps = []
    for (n, d), cell in held_runs.groupby(["N", "D"]):
        per_b = cell.groupby("B")["loss"].min()
        b = per_b.index.to_numpy(float)
        nearest = b[np.argmin(np.abs(np.log(b) - np.log(pick(float(n), float(d)))))]
        gaps.append(float(per_b[nearest] / cell["loss"].min() - 1.0))
    return gaps


# ---- 1. three-term, kaplan-steps, chinchilla on held-out losses -----------------------------------


@dataclass(frozen=True)
class LossChecks:
    rows: dict[str, HeldOut]              # law name -> held-out (N, D, B) rows
    cell_best: dict[str, np.ndarray]      # law name -> |rel. error| of each held-out cell's best loss
    batch_gaps: dict[str, list[float]]    # method -> per held-out cell gap of its batch (oracle lr)
    m_opt: tuple[float, float]            # three-term's M*(D) = coefficient D^exponent (tokens)
    n_fit_rows: int
    n_held_rows: int


def loss_checks(runs: pd.DataFrame, fit_max_n: float = FIT_MAX_N) -> LossChecks:
    rows = best_lr_rows(runs)
    fit_rows, held_rows = split(rows, fit_max_n)
    fit_runs, held_runs = split(runs, fit_max_n)
    three, chin, kap = ThreeTermLaw(), ChinchillaLaw(), KaplanStepsLaw()
    scored = {law.name: fit_and_score(law, fit_rows, held_rows) for law in (three, chin, kap)}

    # Each held-out cell's best loss: the law's least loss over the cell's batches, vs the best run.
    # Chinchilla sees one point per cell, the cell's best run (it has no batch to minimize over).
    fit_best = fit_rows.loc[fit_rows.groupby(["N", "D"])["loss"].idxmin()]
    held_best = held_rows.groupby(["N", "D"])["loss"].min()
    held_cells = held_best.reset_index()
    scored["chinchilla (cell best runs)"] = fit_and_score(ChinchillaLaw(), fit_best, held_cells)
    errors = {"chinchilla": relative_errors(
        chin.predict(scored["chinchilla (cell best runs)"].theta, chin.prepare(held_cells)), held_best.to_numpy())}
    for law in (three, kap):
        predicted = pd.Series(np.asarray(law.predict(scored[law.name].theta, law.prepare(held_rows)), float),
                              index=held_rows.index)
        least = predicted.groupby([held_rows["N"], held_rows["D"]]).min()
        errors[law.name] = relative_errors(least.loc[held_best.index].to_numpy(), held_best.to_numpy())

    derived = three.derived(scored["three-term"].theta)
    coef, exponent = float(derived["M_opt_coefficient"]), float(derived["M_opt_exponent"])
    step = fit_step_law(fit_runs, n_bootstrap=0, allow_edge=True)
    lines = fit_power_lines(fit_runs.assign(wd=WEIGHT_DECAY), n_bootstrap=0, allow_edge=True)
    gaps = {"three-term M*(D)": batch_pick_gap(held_runs, lambda n, d: coef * d ** exponent),
            "steplaw B_opt(D)": batch_pick_gap(held_runs, lambda n, d: float(step.batch(D=d))),
            "powerlines B_opt(D)": batch_pick_gap(held_runs, lambda n, d: float(lines.batch_opt(d)))}
    return LossChecks(rows=scored, cell_best=errors, batch_gaps=gaps, m_opt=(coef, exponent),
                      n_fit_rows=len(fit_rows), n_held_rows=len(held_rows))


# ---- 2. critbatch: steps to a target loss at each batch size ------------------------------------


def steps_by_batch(runs_n: pd.DataFrame, target: float) -> pd.DataFrame:
    """For one model size: the steps D / B each batch needs to reach `target`, D interpolated in
    log D over the token budgets swept at that batch (`tokens_to_reach`, best run over lr).
    Columns B, steps; batches whose budgets do not bracket the target are left out."""
    best = runs_n.groupby(["B", "D"])["loss"].min().reset_index()
    out = []
    for b, s in best.groupby("B"):
        if s["D"].nunique() < 2:
            continue
        d = tokens_to_reach(s["D"].to_numpy(), s["loss"].to_numpy(), float(target))
        if d is not None:
            out.append({"B": float(b), "steps": d / float(b)})
    return pd.DataFrame(out, columns=["B", "steps"])


def interpolation_errors(runs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """How coarse steps-to-target is on this grid: for every (N, B) series swept over >= 3 token
    budgets, drop an interior budget and find the tokens that reach its own loss from the others.
    Returns (|relative error| of those tokens, ratio of neighbouring budgets). Dropping a budget
    doubles the spacing, so this overstates the error of the full series somewhat."""
    errors, ratios = [], []
    best = runs.groupby(["N", "B", "D"])["loss"].min().reset_index()
    for _, s in best.groupby(["N", "B"]):
        d, loss = s["D"].to_numpy(float), s["loss"].to_numpy(float)
        ratios += list(d[1:] / d[:-1])
        for i in range(1, len(d) - 1):
            keep = np.arange(len(d)) != i
            found = tokens_to_reach(d[keep], loss[keep], float(loss[i]))
            if found is not None:
                errors.append(abs(found / d[i] - 1.0))
    return np.asarray(errors), np.asarray(ratios)


def law_steps_to_target(law: Law, theta: np.ndarray, n: float, batch: np.ndarray, target: float) -> np.ndarray:
    """The steps S at which `law` (fitted L(N, step, B), falling in S) reaches `target` at each batch,
    by bisection in log S over [1, 1e9]; NaN where the law never gets there (its floor is above)."""
    batch = np.asarray(batch, float)
    lo, hi = np.zeros_like(batch), np.full_like(batch, np.log(1e9))

    def loss_at(log_s: np.ndarray) -> np.ndarray:
        table = {"N": np.full_like(batch, n), "B": batch, "step": np.exp(log_s)}
        return np.asarray(law.predict(theta, law.prepare(table)), float)

    reachable = loss_at(hi) <= target
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        above = loss_at(mid) > target
        lo, hi = np.where(above, mid, lo), np.where(above, hi, mid)
    return np.where(reachable, np.exp(0.5 * (lo + hi)), np.nan)


def law_steps_errors(runs: pd.DataFrame, points: pd.DataFrame, laws: dict[str, tuple[Law, np.ndarray]],
                     fit_max_n: float) -> dict[str, np.ndarray]:
    """Steps to each held-out size's target losses at each of its batches: the laws fitted on the fit
    sizes (`laws`: name -> (law, theta)) against the steps read from the held-out runs; |rel. error|.
    A target the law cannot reach counts as an error of 1 (100%)."""
    out: dict[str, list[float]] = {name: [] for name in laws}
    for _, p in points[points["N"] > fit_max_n].iterrows():
        table = steps_by_batch(runs[runs["N"] == p["N"]], p["target_loss"])
        for name, (law, theta) in laws.items():
            predicted = law_steps_to_target(law, theta, float(p["N"]), table["B"].to_numpy(), float(p["target_loss"]))
            errors = relative_errors(predicted, table["steps"].to_numpy())
            out[name] += list(np.where(np.isfinite(errors), errors, 1.0))
    return {name: np.asarray(v) for name, v in out.items()}


@dataclass(frozen=True)
class CritBatchChecks:
    points: pd.DataFrame                   # per (N, target): S_min, D_min, B_crit (critical_batch_from_runs)
    interpolation: np.ndarray              # |rel. error| of tokens-to-target, one budget dropped
    budget_ratios: np.ndarray              # ratio of neighbouring token budgets
    lobo: pd.DataFrame                     # leave-one-batch-out: N, held_out_size, B, edge, error, scaling_error
    trend: dict[str, np.ndarray]           # form -> |rel. error| of B_crit at the held-out sizes' points
    law_steps: dict[str, np.ndarray]       # law -> |rel. error| of steps to the held-out sizes' targets
    largest_batch: float                   # the largest batch swept (tokens)


def leave_one_batch_out(runs: pd.DataFrame, points: pd.DataFrame, fit_max_n: float) -> pd.DataFrame:
    rows = []
    for _, p in points.iterrows():
        table = steps_by_batch(runs[runs["N"] == p["N"]], p["target_loss"])
        b, s = table["B"].to_numpy(), table["steps"].to_numpy()
        for i in range(len(table)):
            keep = np.arange(len(table)) != i
            if np.unique(b[keep]).size < 3:
                continue
            hyperbola = fit_critical_batch(table[keep])
            scaling = np.exp(np.mean(np.log(s[keep] * b[keep]))) / b[i]     # S = E / B, E fitted in log
            rows.append({"N": p["N"], "target_loss": p["target_loss"], "held_out_size": p["N"] > fit_max_n,
                         "B": b[i], "edge": b[i] in (b.min(), b.max()),
                         "error": abs(float(hyperbola.steps(b[i])) / s[i] - 1.0),
                         "scaling_error": abs(scaling / s[i] - 1.0)})
    return pd.DataFrame(rows)


def critbatch_checks(runs: pd.DataFrame, fit_max_n: float = FIT_MAX_N,
                     fitted: dict[str, HeldOut] | None = None) -> CritBatchChecks:
    """`fitted`: LossChecks.rows (the `three-term` and `kaplan-steps` fits on the fit rows), for
    kaplan-steps' B_crit(L) and both laws' steps to the held-out targets."""
    points = critical_batch_from_runs(runs)
    fit_pts, held_pts = points[points["N"] <= fit_max_n], points[points["N"] > fit_max_n]
    measured = held_pts["B_crit"].to_numpy()
    trend = {}
    by_loss = fit_power_law({"L": fit_pts["target_loss"].to_numpy()}, fit_pts["B_crit"].to_numpy())
    trend["B_crit(L) = c L^m"] = relative_errors(by_loss(held_pts["target_loss"].to_numpy()), measured)
    by_data = fit_power_law({"D": fit_pts["D_min"].to_numpy()}, fit_pts["B_crit"].to_numpy())
    trend["B_crit(D_min) = c D_min^m"] = relative_errors(by_data(held_pts["D_min"].to_numpy()), measured)
    laws: dict[str, tuple[Law, np.ndarray]] = {}
    if fitted is not None:
        kaplan = KaplanStepsLaw().critical_batch(fitted["kaplan-steps"].theta, held_pts["target_loss"].to_numpy())
        trend["kaplan-steps B*/L^(1/alpha_B)"] = relative_errors(kaplan, measured)
        laws = {"three-term": (ThreeTermLaw(), fitted["three-term"].theta),
                "kaplan-steps": (KaplanStepsLaw(), fitted["kaplan-steps"].theta)}
    interp, ratios = interpolation_errors(runs)
    return CritBatchChecks(points=points, interpolation=interp, budget_ratios=ratios,
                           lobo=leave_one_batch_out(runs, points, fit_max_n), trend=trend,
                           law_steps=law_steps_errors(runs, points, laws, fit_max_n),
                           largest_batch=float(runs["B"].max()))


# ---- 3. powerlines: the (lr, B) it predicts for a held-out cell ---------------------------------


@dataclass(frozen=True)
class PowerLinesCheck:
    gaps: list[float]                     # nearest-run gap per held-out cell
    step_law_gaps: list[float]            # the official Step Law refit, same split and metric
    tau_formula: str
    batch_formula: str
    n_edge_warnings: int                  # fit cells whose best tau or B sits on the sweep's edge
    tau_batch_slope: float                # d log tau_opt / d log B within an (N, D) cell (Power Lines: 0)
    # Post-hoc diagnostic (found after the gaps above were seen; not a candidate method): tau_opt fitted
    # only at the batch nearest each fit cell's B_opt, same B, same metric.
    tau_at_b_opt_gaps: list[float]
    tau_at_b_opt_formula: str


def powerlines_check(runs: pd.DataFrame, fit_max_n: float = FIT_MAX_N) -> PowerLinesCheck:
    fit_runs, held_runs = split(runs, fit_max_n)
    lines = fit_power_lines(fit_runs.assign(wd=WEIGHT_DECAY), n_bootstrap=0, allow_edge=True)

    def predict(n: float, d: float) -> tuple[float, float]:
        b = float(lines.batch_opt(d))
        return b / (WEIGHT_DECAY * d * float(lines.tau_opt(d / n))), b

    cells = lines.cells.dropna(subset=["B", "tau_opt"])
    at_b_opt = cells.loc[np.abs(np.log(cells["B"] / cells["B_opt"])).groupby([cells["N"], cells["D"]]).idxmin()]
    tau_b_opt = fit_power_law({"D/N": (at_b_opt["D"] / at_b_opt["N"]).to_numpy()}, at_b_opt["tau_opt"].to_numpy())

    def predict_b_opt(n: float, d: float) -> tuple[float, float]:
        b = float(lines.batch_opt(d))
        return b / (WEIGHT_DECAY * d * float(tau_b_opt(d / n))), b

    step = fit_step_law(fit_runs, n_bootstrap=0, allow_edge=True)
    return PowerLinesCheck(gaps=nearest_run_gap(held_runs, predict),
                           tau_at_b_opt_gaps=nearest_run_gap(held_runs, predict_b_opt),
                           tau_at_b_opt_formula=tau_b_opt.formula("tau_opt"),
                           step_law_gaps=nearest_run_gap(held_runs, lambda n, d: (float(step.lr(N=n, D=d)),
                                                                                  float(step.batch(D=d)))),
                           tau_formula=lines.tau_opt.formula("tau_opt"),
                           batch_formula=lines.batch_opt.formula("B_opt"), n_edge_warnings=len(lines.warnings),
                           tau_batch_slope=lines.tau_batch_slope)


# ---- the table ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableRow:
    law: str
    check: str
    ours: str
    baseline: str


def pct(x: float) -> str:
    return f"{100 * x:.3f}%"


def held_out(h: HeldOut) -> str:
    return f"{pct(h.mean)} / {pct(h.max)}"


def mean_max(errors: Sequence[float] | np.ndarray) -> str:
    errors = np.asarray(errors, float)
    return f"{pct(errors.mean())} / {pct(errors.max())}" if errors.size else "n/a (no points)"


def build_table(loss: LossChecks, crit: CritBatchChecks, lines: PowerLinesCheck) -> list[TableRow]:
    r = loss.rows
    rows = [TableRow("three-term", f"loss of the {loss.n_held_rows} held-out (N, D, B) rows, mean / max relative error",
                     held_out(r["three-term"]), f"chinchilla, blind to B: {held_out(r['chinchilla'])}"),
            TableRow("kaplan-steps", "same rows, mean / max", held_out(r["kaplan-steps"]),
                     "(three-term above)"),
            TableRow("three-term", "each held-out cell's best loss (least over its batches), mean / max",
                     mean_max(loss.cell_best["three-term"]),
                     f"chinchilla on the fit cells' best runs: {mean_max(loss.cell_best['chinchilla'])}"),
            TableRow("kaplan-steps", "same, mean / max", mean_max(loss.cell_best["kaplan-steps"]), ""),
            TableRow("three-term", f"batch it picks, M* = {loss.m_opt[0]:.3g} D^{loss.m_opt[1]:.3f}: gap of the "
                     "best-lr run at the nearest grid batch to the cell's best, mean / max",
                     mean_max(loss.batch_gaps["three-term M*(D)"]),
                     f"steplaw B_opt(D): {mean_max(loss.batch_gaps['steplaw B_opt(D)'])}"),
            TableRow("powerlines", f"batch it picks, {lines.batch_formula}: same gap, mean / max",
                     mean_max(loss.batch_gaps["powerlines B_opt(D)"]), "(steplaw above)"),
            TableRow("powerlines", f"(lr, B) it picks, lr = B / (wd D tau_opt), {lines.tau_formula}: gap of the "
                     "nearest run (Step Law's metric), mean / max", mean_max(lines.gaps),
                     f"steplaw refit: {mean_max(lines.step_law_gaps)} (anchor {pct(STEP_LAW_ANCHOR)})"),
            TableRow("powerlines", "tau_opt's slope in log B inside a fit cell, lr swept at one weight decay "
                     "(0: tau_opt independent of B, as the paper finds sweeping weight decay)", f"{lines.tau_batch_slope:.3f}", "1 = lr_opt independent of B")]
    lobo = crit.lobo
    for size, label in ((False, "fit sizes"), (True, "held-out sizes")):
        part = lobo[lobo["held_out_size"] == size] if len(lobo) else lobo
        inner = part[~part["edge"]] if len(part) else part
        rows.append(TableRow("critbatch", f"leave-one-batch-out steps to target ({label}, {len(part)} points; "
                             "interior batches only), mean / max",
                             f"{mean_max(part['error'])}; interior {mean_max(inner['error'])}" if len(part) else "n/a",
                             f"perfect scaling S = E/B: {mean_max(part['scaling_error'])}; interior "
                             f"{mean_max(inner['scaling_error'])}" if len(part) else "n/a"))
    for form, errors in crit.trend.items():
        rows.append(TableRow("critbatch" if "kaplan" not in form else "kaplan-steps",
                             f"B_crit at the held-out sizes from {form} fitted on the fit sizes, mean / max",
                             mean_max(errors), ""))
    for name, errors in crit.law_steps.items():
        rows.append(TableRow(name, f"steps to the held-out sizes' target losses at each batch ({len(errors)} "
                             "points), the law fitted on the fit rows, mean / max", mean_max(errors),
                             "measured steps are themselves interpolated (coarseness row)"))
    rows.append(TableRow("critbatch", "coarseness: tokens-to-target with one interior budget dropped, mean / max",
                         mean_max(crit.interpolation),
                         f"neighbouring budgets {crit.budget_ratios.min():.2f}x-{crit.budget_ratios.max():.2f}x apart"))
    return rows


def format_table(rows: Sequence[TableRow]) -> str:
    out = ["| law | check (fitted on the fit sizes, scored on the held-out sizes) | ours | baseline |", "|---|---|---|---|"]
    out += [f"| `{r.law}` | {r.check} | {r.ours} | {r.baseline} |" for r in rows]
    return "\n".join(out)


def run_checks(runs: pd.DataFrame, fit_max_n: float = FIT_MAX_N) -> dict[str, object]:
    loss = loss_checks(runs, fit_max_n)
    crit = critbatch_checks(runs, fit_max_n, fitted=loss.rows)
    lines = powerlines_check(runs, fit_max_n)
    return {"loss": loss, "crit": crit, "lines": lines, "table": build_table(loss, crit, lines)}


def details(result: dict[str, object]) -> str:
    loss, crit = result["loss"], result["crit"]
    problems = {name: h.problems for name, h in loss.rows.items() if h.problems}
    bcrit = crit.points.assign(B_crit_over_largest=crit.points["B_crit"] / crit.largest_batch)
    return "\n".join([
        f"fit rows {loss.n_fit_rows}, held-out rows {loss.n_held_rows}; fit residuals (mean |rel. err.|): "
        + ", ".join(f"{n} {pct(h.fit_mean)}" for n, h in loss.rows.items()),
        f"fit-check problems (the CLI would refuse these fits): {problems or 'none'}",
        "batch-pick gaps per held-out cell: " + "; ".join(f"{k} {[round(100 * g, 3) for g in v]}"
                                                         for k, v in loss.batch_gaps.items()),
        f"powerlines (lr, B) gaps per cell {[round(100 * g, 3) for g in result['lines'].gaps]}; "
        f"{result['lines'].n_edge_warnings} fit cells with the best tau or B at the sweep's edge",
        f"post-hoc diagnostic (not a candidate): tau_opt fitted only at each fit cell's B_opt, "
        f"{result['lines'].tau_at_b_opt_formula}: (lr, B) gap {mean_max(result['lines'].tau_at_b_opt_gaps)}",
        "critbatch points (B_crit in tokens; largest batch swept "
        f"{crit.largest_batch:.3g}):",
        bcrit.to_string(index=False, float_format=lambda v: f"{v:.4g}"),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    from reproduce_steplaw import load_runs

    runs = exit_if_missing(lambda: load_runs(args.data))
    result = run_checks(runs)
    print("Step Law's grid: fit on 214M, 268M, 429M; held out 537M and 1.07B (details below the table)")
    print(format_table(result["table"]))
    print()
    print(details(result))


if __name__ == "__main__":
    main()
