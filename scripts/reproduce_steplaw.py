"""Step Law on its released dense grid: fit on the small models, predict (lr, B) for the large ones.

Data: step-law/steplaw `data/dense_lr_bs_loss.csv` (public, not part of this repository):
DIR/li2025_steplaw/data/dense_lr_bs_loss.csv (DIR from --data, else $HARNESS_DATA, else
../shared/data). Columns used: N (non-embedding), D (tokens), lr, bs (sequences of 2,048 tokens,
converted to tokens as the official code does), `smooth loss`.

Split (issue 13): fit on the 12 cells with N <= 429M; predict lr_opt and B_opt for the 5 cells at
537M and 1.07B. Metric: the loss of the grid run nearest the prediction (in log lr, log B) relative
to the cell's best run, averaged over the 5 cells. Anchor: the official procedure refitted, 0.114%.

Methods:
  * step-law: harness.fit.hyperparams.fit_step_law -- the official procedure (near-optimal runs
    within 0.25% of their cell's best, OLS of log lr on log N, log D and of log B on log D), plus
    grid validation.
  * landscape (experimental): all runs within `window` of their cell's best fitted at once as
    log L = log L*_cell + a dl^2 + b dB^2 + c dl dB, with dl = log lr - log lr_opt(N, D) and
    dB = log B - log B_opt(N, D) (Step Law's convex landscape), the window chosen by validation
    inside the fit cells (fit N <= 268M, validate on 429M).
  * vertex (chosen by validation; harness/fit/steplaw_landscape.py, `python -m harness.fit steplaw
    --method vertex`): per cell, the vertex of a quadratic in (log lr, log B) fitted to the runs
    within `window` of the cell's best; OLS of the vertices' log lr and log B on log N, log D. The
    window is chosen by leave-one-size-out validation over the fit cells (each of 214M, 268M, 429M
    predicted from the other two). The method itself was chosen the same way among the candidates
    of scripts/reproduce_steplaw_candidates.py, before it was scored on the held-out cells.

    python scripts/reproduce_steplaw.py [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fit.data_dir import dataset, exit_if_missing  # noqa: E402
from harness.fit.hyperparams import fit_step_law  # noqa: E402
from harness.fit.steplaw_landscape import as_predictor, fit_step_law_vertex, leave_one_size_out, nearest_run_gap  # noqa: E402

DATASET = "li2025_steplaw"
SEQ_LEN = 2048
FIT_MAX_N = 4.3e8
INNER_MAX_N = 2.7e8
ANCHOR = 0.00114
WINDOWS = (0.005, 0.01, 0.02, 0.03, 0.05)
Predictor = Callable[[float, float], tuple[float, float]]


def load_runs(data: Path | str | None = None) -> pd.DataFrame:
    raw = pd.read_csv(dataset(DATASET, data) / "data" / "dense_lr_bs_loss.csv")
    return pd.DataFrame({"N": raw["N"].astype(float), "D": raw["D"].astype(float), "lr": raw["lr"].astype(float),
                         "B": raw["bs"].astype(float) * SEQ_LEN, "loss": raw["smooth loss"].astype(float)})


def step_law_predictor(runs: pd.DataFrame) -> Predictor:
    fit = fit_step_law(runs, n_bootstrap=0)
    return lambda n, d: (float(fit.lr(N=n, D=d)), float(fit.batch(D=d)))


def landscape_predictor(runs: pd.DataFrame, window: float) -> Predictor:
    """The experimental whole-landscape fit (module docstring), started from the Step Law fit."""
    best = runs.groupby(["N", "D"])["loss"].transform("min")
    near = runs[runs["loss"] <= best * (1 + window)]
    cell = near.groupby(["N", "D"]).ngroup().to_numpy()
    log_n, log_d, log_lr, log_b, log_l = (np.log(near[k].to_numpy()) for k in ("N", "D", "lr", "B", "loss"))

    def residual(p: np.ndarray) -> np.ndarray:
        k0, k1, k2, m0, m1, m2, a, b, c = p[:9]
        dl = log_lr - (k0 + k1 * log_n + k2 * log_d)
        db = log_b - (m0 + m1 * log_d + m2 * log_n)
        return 1e3 * (p[9:][cell] + a * dl * dl + b * db * db + c * dl * db - log_l)

    start = fit_step_law(runs, n_bootstrap=0)
    p0 = np.r_[np.log(start.lr.coefficient), start.lr.exponents, np.log(start.batch.coefficient),
               start.batch.exponents[0], 0.0, 0.01, 0.01, 0.0,
               np.log(near.groupby(["N", "D"])["loss"].min().to_numpy())]
    k0, k1, k2, m0, m1, m2 = least_squares(residual, p0, loss="soft_l1").x[:6]
    return lambda n, d: (float(np.exp(k0 + k1 * np.log(n) + k2 * np.log(d))),
                         float(np.exp(m0 + m1 * np.log(d) + m2 * np.log(n))))


def reproduce(data: Path | str | None = None) -> dict[str, object]:
    runs = load_runs(data)
    fit, test = runs[runs["N"] <= FIT_MAX_N], runs[runs["N"] > FIT_MAX_N]
    inner, val = fit[fit["N"] <= INNER_MAX_N], fit[fit["N"] > INNER_MAX_N]
    step = nearest_run_gap(test, step_law_predictor(fit))
    val_gap = {w: float(np.mean(nearest_run_gap(val, landscape_predictor(inner, w)))) for w in WINDOWS}
    window = min(WINDOWS, key=lambda w: val_gap[w])
    land = nearest_run_gap(test, landscape_predictor(fit, window))
    vertex_fit, choice = fit_step_law_vertex(fit)   # the window chosen inside the fit cells
    vertex = nearest_run_gap(test, as_predictor(vertex_fit))
    return {"n_fit_cells": fit.groupby(["N", "D"]).ngroups, "n_test_cells": test.groupby(["N", "D"]).ngroups,
            "anchor": ANCHOR, "step_law_gap": float(np.mean(step)), "step_law_cells": step,
            "landscape_window": window, "landscape_validation": val_gap,
            "landscape_gap": float(np.mean(land)), "landscape_cells": land,
            "step_law_validation": float(np.mean(leave_one_size_out(fit, step_law_predictor))),
            "vertex_window": choice.window, "vertex_validation": choice.validation,
            "vertex_gap": float(np.mean(vertex)), "vertex_cells": vertex,
            "vertex_lr": vertex_fit.lr.formula("lr_opt"), "vertex_batch": vertex_fit.batch.formula("B_opt")}


def report(r: dict[str, object]) -> str:
    return "\n".join([
        f"Step Law grid: fit {r['n_fit_cells']} cells (N <= 429M), predict {r['n_test_cells']} (537M, 1.07B); "
        f"loss gap of the nearest run to the cell's best (mean; anchor {100 * r['anchor']:.3f}%, goal <= 0.08%)",
        f"  step-law (official procedure)   {100 * r['step_law_gap']:.4f}%  "
        f"per cell {[round(100 * g, 4) for g in r['step_law_cells']]}",
        f"  landscape, window {r['landscape_window']:g} (validated) {100 * r['landscape_gap']:.4f}%  "
        f"per cell {[round(100 * g, 4) for g in r['landscape_cells']]}",
        f"  landscape validation gaps by window: "
        f"{ {w: round(100 * g, 4) for w, g in r['landscape_validation'].items()} }",
        f"  vertex, window {r['vertex_window']:g} (validated)  {100 * r['vertex_gap']:.4f}%  "
        f"per cell {[round(100 * g, 4) for g in r['vertex_cells']]}",
        f"    {r['vertex_lr']};  {r['vertex_batch']}",
        f"  leave-one-size-out validation over the fit cells (mean gap): step-law "
        f"{100 * r['step_law_validation']:.4f}%; vertex by window "
        f"{ {w: round(100 * g, 4) for w, g in r['vertex_validation'].items()} }",
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=None)
    args = ap.parse_args()
    result = exit_if_missing(lambda: reproduce(args.data))
    print(report(result))


if __name__ == "__main__":
    main()
