"""Step Law from each cell's loss landscape: the vertex of a quadratic, not the near-optimal runs.

The official procedure (harness/fit/hyperparams.py `fit_step_law`) regresses the runs within
0.25% of their cell's best; on Step Law's grid that is 1-3 runs a cell, so the fitted optimum
moves with the grid's spacing and one noisy run. Step Law itself reports that the loss landscape
in (log lr, log B) is convex near the optimum. This module uses that:

1. per (N, D) cell, fit log L = q(log lr, log B), a full quadratic (with the cross term), to the
   runs within `window` (relative loss) of the cell's best; the vertex is the cell's optimum.
   A cell with too few runs for the quadratic, or whose quadratic is not convex, uses its best
   run instead (named in the warnings). A vertex outside the kept runs' range is clipped into it;
2. regress log lr_opt and log B_opt on (log N, log D) by OLS, one point per cell. B_opt gets an
   N exponent too: on Step Law's grid B_opt(D) alone validated far worse (docs/STEPLAW.md).

`window` is chosen by leave-one-size-out validation inside the runs given (each model size
predicted from the others; the score is the loss gap of the run nearest the prediction), so a
fit never looks at the cells it will be asked about. How this method was chosen over the others
tried (whole-landscape fit, shared curvature, model averaging) and its held-out result:
docs/STEPLAW.md, `scripts/reproduce_steplaw.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import pandas as pd

from harness.fit.hyperparams import StepLawResult, batch_in_tokens, require_columns, validate_grid
from harness.fit.powerlaw import fit_power_law

# Windows tried by the validation (relative loss above the cell's best). Below 0.5% a cell keeps
# too few runs for a 6-coefficient quadratic; above ~2% the valley is no longer quadratic.
WINDOWS = (0.005, 0.0075, 0.01, 0.015, 0.02)
# A quadratic in two variables has 6 coefficients; fewer than 8 runs leave it unchecked.
MIN_RUNS_FOR_VERTEX = 8
Predictor = Callable[[float, float], tuple[float, float]]


@dataclass(frozen=True)
class CellOptimum:
    N: float
    D: float
    lr_opt: float
    B_opt: float
    n_runs: int                   # runs inside the window
    source: str                   # "vertex" or "best run" (too few runs, or not convex)


def cell_optimum(cell: pd.DataFrame, window: float) -> CellOptimum:
    """The vertex of the quadratic in (log lr, log B) fitted to log loss of the cell's runs within `window`."""
    near = cell[cell["loss"] <= cell["loss"].min() * (1.0 + window)]
    best = near.loc[near["loss"].idxmin()]
    n, d = float(cell["N"].iloc[0]), float(cell["D"].iloc[0])
    fallback = CellOptimum(n, d, float(best["lr"]), float(best["B"]), len(near), "best run")
    if len(near) < MIN_RUNS_FOR_VERTEX:
        return fallback
    x, y = np.log(near["lr"].to_numpy(float)), np.log(near["B"].to_numpy(float))
    design = np.column_stack([np.ones_like(x), x, y, x * x, y * y, x * y])
    if np.linalg.matrix_rank(design) < design.shape[1]:
        return fallback            # e.g. every kept run at one batch size: no valley in B
    c = np.linalg.lstsq(design, np.log(near["loss"].to_numpy(float)), rcond=None)[0]
    hessian = np.array([[2 * c[3], c[5]], [c[5], 2 * c[4]]])
    if np.any(np.linalg.eigvalsh(hessian) <= 0):
        return fallback
    vx, vy = np.linalg.solve(hessian, -c[1:3])
    # Clip into the range of the runs it was fitted on: beyond them the quadratic is an extrapolation.
    vx, vy = float(np.clip(vx, x.min(), x.max())), float(np.clip(vy, y.min(), y.max()))
    return CellOptimum(n, d, float(np.exp(vx)), float(np.exp(vy)), len(near), "vertex")


def fit_vertex_law(runs: pd.DataFrame, window: float, n_bootstrap: int = 0, ci: float = 0.95,
                   seed: int = 0) -> StepLawResult:
    """lr_opt = c N^a D^b and B_opt = c N^a D^b by OLS on the per-cell vertices (module docstring)."""
    optima = [cell_optimum(g, window) for _, g in runs.groupby(["N", "D"])]
    if len({o.N for o in optima}) < 2 or len(optima) < 4:
        raise ValueError(f"Step Law vertex fit needs cells at >= 2 model sizes and >= 4 cells; got {len(optima)} "
                         f"cell(s) at {len({o.N for o in optima})} size(s)")
    inputs = {"N": np.array([o.N for o in optima]), "D": np.array([o.D for o in optima])}
    lr = fit_power_law(inputs, np.array([o.lr_opt for o in optima]), n_bootstrap, ci, seed)
    batch = fit_power_law(inputs, np.array([o.B_opt for o in optima]), n_bootstrap, ci, seed + 1)
    fallbacks = [f"cell N={o.N:.4g}, D={o.D:.4g}: {o.n_runs} run(s) within {window:g} of its best; its best run "
                 f"stands in for the vertex" for o in optima if o.source != "vertex"]
    best = runs.groupby(["N", "D"])["loss"].transform("min")
    return StepLawResult(lr=lr, batch=batch, near_optimal=runs[runs["loss"] <= best * (1.0 + window)],
                         warnings=tuple(fallbacks))


def nearest_run_gap(cells: pd.DataFrame, predict: Predictor) -> list[float]:
    """Per (N, D) cell: loss of the run nearest the predicted (lr, B) in log space / the cell's best - 1.

    Step Law's own score for a predicted optimum on a discrete grid (issue 13's metric)."""
    gaps = []
    for (n, d), g in cells.groupby(["N", "D"]):
        lr, b = predict(float(n), float(d))
        dist = (np.log(g["lr"].to_numpy(float)) - np.log(lr)) ** 2 + (np.log(g["B"].to_numpy(float)) - np.log(b)) ** 2
        gaps.append(float(g["loss"].iloc[int(np.argmin(dist))] / g["loss"].min() - 1))
    return gaps


def leave_one_size_out(runs: pd.DataFrame, make: Callable[[pd.DataFrame], Predictor]) -> list[float]:
    """Nearest-run gaps of every cell, each model size predicted by `make` fitted on the other sizes."""
    gaps: list[float] = []
    for n in sorted(runs["N"].unique()):
        gaps += nearest_run_gap(runs[runs["N"] == n], make(runs[runs["N"] != n]))
    return gaps


def as_predictor(fit: StepLawResult) -> Predictor:
    return lambda n, d: (float(fit.lr(N=n, D=d)), float(fit.batch(N=n, D=d)))


@dataclass(frozen=True)
class WindowChoice:
    window: float
    validation: dict[float, float]   # window -> mean leave-one-size-out gap


def choose_window(runs: pd.DataFrame, windows: Sequence[float] = WINDOWS) -> WindowChoice:
    """The window with the lowest mean leave-one-size-out gap; ties go to the larger window (more runs per vertex)."""
    if runs["N"].nunique() < 3:
        raise ValueError(f"choosing the vertex window needs >= 3 model sizes (each left out in turn, the fit needs 2); "
                         f"got {runs['N'].nunique()}. Fix: sweep another model size, or use the official method")
    scores = {w: float(np.mean(leave_one_size_out(runs, lambda r, w=w: as_predictor(fit_vertex_law(r, w)))))
              for w in windows}
    best = min(scores.values())
    return WindowChoice(window=max(w for w, s in scores.items() if s <= best + 1e-12), validation=scores)


def fit_step_law_vertex(runs: pd.DataFrame, window: float | None = None, windows: Sequence[float] = WINDOWS,
                        n_bootstrap: int = 0, ci: float = 0.95, seed: int = 0, allow_edge: bool = False,
                        batch_unit: str = "tokens", seq_len: int | None = None) -> tuple[StepLawResult, WindowChoice]:
    """The vertex method end to end: validate the grid, choose the window (unless given), fit.

    Columns as for `fit_step_law`: N, D, lr, B (tokens per step, or sequences with `batch_unit`),
    loss. Bootstrap intervals resample cells (one vertex per cell)."""
    require_columns(runs, ["N", "D", "lr", "B", "loss"], "Step Law vertex fit", positive=["N", "D", "lr", "B", "loss"])
    runs = batch_in_tokens(runs, batch_unit, seq_len, "Step Law vertex fit")
    warnings = validate_grid(runs, ("N", "D"), ("lr", "B"), "Step Law vertex fit", allow_edge)
    if window is None:
        choice = choose_window(runs, windows)
    else:
        if not 0 < window < 1:
            raise ValueError(f"Step Law vertex fit: window {window!r} must be in (0, 1) (relative loss above the best)")
        choice = WindowChoice(window=window, validation={})
    fit = fit_vertex_law(runs, choice.window, n_bootstrap, ci, seed)
    return StepLawResult(lr=fit.lr, batch=fit.batch, near_optimal=fit.near_optimal,
                         warnings=tuple(warnings) + fit.warnings), choice
