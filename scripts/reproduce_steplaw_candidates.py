"""How the Step Law method was chosen: every candidate scored by validation inside the fit cells only.

Data and metric as scripts/reproduce_steplaw.py. The held-out cells (537M, 1.07B) are dropped on
load and never seen here. Two validations over the 12 fit cells (N <= 429M):
  * leave-one-size-out (the criterion): each of 214M, 268M, 429M predicted from the other two;
    mean nearest-run gap over the 12 cells;
  * forward (reported only): fit 214M + 268M, predict the 4 cells at 429M.
Decision rule, fixed before scoring the held-out cells: the candidate with the lowest
leave-one-size-out mean; its window the same way (ties to the larger window). Result (docs/STEPLAW.md):
`vertex, B(N, D)` at window 0.01, which scripts/reproduce_steplaw.py then scores once on the held-out cells.

Candidates (dl = log lr - log lr_opt(N, D), dB = log B - log B_opt):
  * official: Step Law's OLS on the runs within `tol` of their cell's best (tol 0.25% is Step Law's).
  * landscape: all runs within `window` fitted at once, log L = log L*_cell + a dl^2 + b dB^2 + c dl dB,
    soft-L1 loss; `asym` adds e dl^3 (a loss that rises faster on one side of the optimum lr).
  * shared curvature: a free optimum per cell with one (a, b, c) for all cells, then OLS of the optima.
  * vertex: a full quadratic per cell, its vertex the optimum, then OLS (harness/fit/steplaw_landscape.py);
    `B(D)` regresses log B_opt on log D alone (Step Law's form), `B(N, D)` on both.
  * average: the geometric mean of two candidates' predictions (model averaging).

    python scripts/reproduce_steplaw_candidates.py [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from scipy.optimize import least_squares, minimize

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.fit.data_dir import exit_if_missing  # noqa: E402
from harness.fit.hyperparams import fit_step_law  # noqa: E402
from harness.fit.powerlaw import fit_power_law  # noqa: E402
from harness.fit.steplaw_landscape import (as_predictor, cell_optimum, fit_vertex_law, leave_one_size_out,  # noqa: E402
                                           nearest_run_gap)
from reproduce_steplaw import FIT_MAX_N, load_runs  # noqa: E402

Predictor = Callable[[float, float], tuple[float, float]]
Maker = Callable[[pd.DataFrame], Predictor]


def official(tol: float) -> Maker:
    def make(runs: pd.DataFrame) -> Predictor:
        fit = fit_step_law(runs, tol=tol, n_bootstrap=0)
        return lambda n, d: (float(fit.lr(N=n, D=d)), float(fit.batch(D=d)))
    return make


def landscape(window: float, asym: bool = False) -> Maker:
    def make(runs: pd.DataFrame) -> Predictor:
        best = runs.groupby(["N", "D"])["loss"].transform("min")
        near = runs[runs["loss"] <= best * (1 + window)]
        cell = near.groupby(["N", "D"]).ngroup().to_numpy()
        ln, ld, llr, lb, ll = (np.log(near[k].to_numpy()) for k in ("N", "D", "lr", "B", "loss"))

        def residual(p: np.ndarray) -> np.ndarray:
            k0, k1, k2, m0, m1, m2, a, b, c, e = p[:10]
            dl, db = llr - (k0 + k1 * ln + k2 * ld), lb - (m0 + m1 * ld + m2 * ln)
            return 1e3 * (p[10:][cell] + a * dl * dl + b * db * db + c * dl * db + (e * dl**3 if asym else 0) - ll)

        s = fit_step_law(runs, n_bootstrap=0)
        p0 = np.r_[np.log(s.lr.coefficient), s.lr.exponents, np.log(s.batch.coefficient), s.batch.exponents[0], 0.0,
                   0.01, 0.01, 0.0, 0.0, np.log(near.groupby(["N", "D"])["loss"].min().to_numpy())]
        x = least_squares(residual, p0, loss="soft_l1").x
        k0, k1, k2, m0, m1, m2 = x[:6]
        if asym:  # the optimum of the cubic-corrected valley, near dl = dB = 0
            a, b, c, e = x[6:10]
            shift = minimize(lambda z: a * z[0] ** 2 + b * z[1] ** 2 + c * z[0] * z[1] + e * z[0] ** 3, [0.0, 0.0]).x
            k0, m0 = k0 + shift[0], m0 + shift[1]
        return lambda n, d: (float(np.exp(k0 + k1 * np.log(n) + k2 * np.log(d))),
                             float(np.exp(m0 + m1 * np.log(d) + m2 * np.log(n))))
    return make


def shared_curvature(window: float) -> Maker:
    def make(runs: pd.DataFrame) -> Predictor:
        best = runs.groupby(["N", "D"])["loss"].transform("min")
        near = runs[runs["loss"] <= best * (1 + window)]
        cells = near.groupby(["N", "D"])
        key, nc = cells.ngroup().to_numpy(), cells.ngroups
        x, y, L = (np.log(near[k].to_numpy()) for k in ("lr", "B", "loss"))
        top = near.loc[cells["loss"].idxmin()]

        def residual(p: np.ndarray) -> np.ndarray:
            a, b, c = p[:3]
            dx, dy = x - p[3:3 + nc][key], y - p[3 + nc:3 + 2 * nc][key]
            return 1e3 * (p[3 + 2 * nc:][key] + a * dx * dx + b * dy * dy + c * dx * dy - L)

        p0 = np.r_[0.01, 0.01, 0.0, np.log(top["lr"]), np.log(top["B"]), np.log(top["loss"])]
        p = least_squares(residual, p0, loss="soft_l1").x
        inputs = {"N": top["N"].to_numpy(float), "D": top["D"].to_numpy(float)}
        lr = fit_power_law(inputs, np.exp(p[3:3 + nc]))
        batch = fit_power_law(inputs, np.exp(p[3 + nc:3 + 2 * nc]))
        return lambda n, d: (float(lr(N=n, D=d)), float(batch(N=n, D=d)))
    return make


def vertex(window: float, batch_on_n: bool = True) -> Maker:
    def make(runs: pd.DataFrame) -> Predictor:
        fit = fit_vertex_law(runs, window)
        if batch_on_n:
            return as_predictor(fit)
        # Step Law's form B_opt(D): the same vertices, log B_opt regressed on log D alone.
        optima = [cell_optimum(g, window) for _, g in runs.groupby(["N", "D"])]
        batch = fit_power_law({"D": np.array([o.D for o in optima])}, np.array([o.B_opt for o in optima]))
        return lambda n, d: (float(fit.lr(N=n, D=d)), float(batch(D=d)))
    return make


def average(*makers: Maker) -> Maker:
    def make(runs: pd.DataFrame) -> Predictor:
        preds = [m(runs) for m in makers]
        return lambda n, d: tuple(float(v) for v in np.exp(np.mean(np.log([p(n, d) for p in preds]), axis=0)))
    return make


def candidates() -> dict[str, Maker]:
    out: dict[str, Maker] = {f"official, tol {t:g}": official(t) for t in (0.001, 0.0025, 0.005, 0.01)}
    for w in (0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05):
        out[f"landscape, window {w:g}"] = landscape(w)
        out[f"landscape asym, window {w:g}"] = landscape(w, asym=True)
        out[f"shared curvature, window {w:g}"] = shared_curvature(w)
        out[f"vertex B(N, D), window {w:g}"] = vertex(w)
        out[f"vertex B(D), window {w:g}"] = vertex(w, batch_on_n=False)
    out["average official + landscape 0.01"] = average(official(0.0025), landscape(0.01))
    out["average vertex B(N, D) 0.01 + landscape asym 0.01"] = average(vertex(0.01), landscape(0.01, asym=True))
    return out


def validate(fit_runs: pd.DataFrame) -> pd.DataFrame:
    sizes = sorted(fit_runs["N"].unique())
    rows = []
    for name, make in candidates().items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loso = leave_one_size_out(fit_runs, make)
            forward = nearest_run_gap(fit_runs[fit_runs["N"] == sizes[-1]], make(fit_runs[fit_runs["N"] < sizes[-1]]))
        rows.append({"candidate": name, "leave_one_size_out": float(np.mean(loso)), "forward_429M": float(np.mean(forward))})
    return pd.DataFrame(rows).sort_values(["leave_one_size_out", "forward_429M"], kind="stable").reset_index(drop=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    runs = exit_if_missing(lambda: load_runs(args.data))
    table = validate(runs[runs["N"] <= FIT_MAX_N])   # the held-out cells are never passed on
    with pd.option_context("display.width", 140, "display.float_format", lambda v: f"{100 * v:.4f}%"):
        print(table.to_string(index=False))


if __name__ == "__main__":
    main()
