"""Hyperparameter fits: how the best learning rate, batch size and weight decay scale.

These are not `Law`s (harness/fit/laws/): each fits power laws (harness/fit/powerlaw.py) to the
optima of a sweep, by OLS in log space. CLI: `python -m harness.fit steplaw|powerlines|critbatch`.

* Step Law (Li et al. 2025, arXiv:2503.04715; step-law/steplaw `fit_tool.py`):
  keep, in every (N, D) cell, the runs whose loss is within 0.25% of the cell's best; regress
  log lr on (log N, log D) and log B on log D by OLS; bootstrap the kept runs for intervals.
  Published: eta_opt = 1.79 N^-0.713 D^0.307, B_opt = 0.58 D^0.571 (B and D in tokens, N
  non-embedding parameters).
* Power Lines (Bergsma et al. 2025, arXiv:2505.13738): the AdamW timescale
  tau = B / (eta * lambda * D) (a fraction of training) has an optimum that is a power law in
  tokens per parameter, tau_opt = c (D/N)^m; B_opt and B_crit are power laws in D alone. The
  paper's constants are not reproduced here; these functions fit them from runs. B_crit comes from
  the same table when it has several D per (N, B): McCandlish's D = D_min (1 + B / B_crit) fitted
  per (N, target loss) (`critical_batch_from_runs`). The Pareto choice of N, D and B under a time
  (steps) budget is `pareto_choice` (ASSUMED formulas, see there: the paper's section text was
  not available here).
* Critical batch size (McCandlish et al. 2018; Kaplan et al. 2020): the steps S and examples
  E = B*S needed to reach a target loss at several batch sizes trace the hyperbola
  (S/S_min - 1)(E/E_min - 1) = 1, i.e. S = S_min + E_min / B; B_crit = E_min / S_min.

Inputs are pandas tables of runs; each function names the columns it needs and says which one
is missing or bad.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from harness.fit.laws.final_loss import FLOPS_PER_PARAM_TOKEN, chinchilla_optimal
from harness.fit.powerlaw import PowerLaw, fit_power_law

# Step Law's (and DeepSeek's) definition of "near-optimal": within 0.25% of the best loss.
NEAR_OPTIMAL_TOL = 0.0025


def require_columns(table: pd.DataFrame, columns: Sequence[str], what: str,
                    positive: Sequence[str] = ()) -> None:
    """Raise a ValueError naming every missing column, or the first non-numeric / non-positive."""
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs column(s) {missing}; the table has {list(table.columns)}")
    if len(table) == 0:
        raise ValueError(f"{what}: the table has no rows")
    for c in columns:
        values = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(values)):
            raise ValueError(f"{what}: column {c!r} has missing or non-numeric values")
        if c in positive and np.any(values <= 0):
            raise ValueError(f"{what}: column {c!r} must be > 0")


# A cell needs at least this many runs to have an optimum at all (a valley needs 3 points).
MIN_RUNS_PER_CELL = 3
BATCH_UNITS = ("tokens", "sequences")


class GridError(ValueError):
    """A sweep's grid cannot locate an optimum (too few runs, or the best run on the grid's edge)."""


def _cell_name(cell: Sequence[str], key: Any) -> str:
    key = key if isinstance(key, tuple) else (key,)
    return "(" + ", ".join(f"{c}={v:.4g}" for c, v in zip(cell, key)) + ")"


def validate_grid(runs: pd.DataFrame, cell: Sequence[str], axes: Sequence[str], what: str,
                  allow_edge: bool = False, min_runs: int = MIN_RUNS_PER_CELL, loss: str = "loss") -> list[str]:
    """Check every cell of a sweep: at least `min_runs` runs, and its best run strictly inside the
    swept range of each axis (a best run at the smallest or largest value swept only bounds the
    optimum). Raises GridError naming every bad cell, or with `allow_edge` returns the messages
    as warnings. An axis with one value in a cell is not swept there and is not checked."""
    problems = []
    for key, g in runs.groupby(list(cell), sort=True):
        name = _cell_name(cell, key)
        if len(g) < min_runs:
            problems.append(f"{what}: cell {name} has {len(g)} run(s), fewer than {min_runs}; "
                            "Fix: sweep more values there or drop the cell")
            continue
        best = g.loc[g[loss].idxmin()]
        for axis in axes:
            values = g[axis].to_numpy(dtype=float)
            if np.unique(values).size < 2:
                continue
            if best[axis] <= values.min() or best[axis] >= values.max():
                side = "smallest" if best[axis] <= values.min() else "largest"
                problems.append(f"{what}: cell {name}: the best run has the {side} {axis} swept "
                                f"({best[axis]:.4g}), so the optimum may lie outside the grid; "
                                f"Fix: extend the {axis} sweep past it, or pass --allow-edge")
    if problems and not allow_edge:
        raise GridError("\n  ".join([f"{what}: {len(problems)} cell(s) cannot locate an optimum:"] + problems))
    return problems


def near_optimal_runs(runs: pd.DataFrame, tol: float = NEAR_OPTIMAL_TOL,
                      cell: Sequence[str] = ("N", "D"), loss: str = "loss") -> pd.DataFrame:
    """The runs whose loss is within `tol` (relative) of the best loss of their cell."""
    best = runs.groupby(list(cell))[loss].transform("min")
    return runs[runs[loss] <= best * (1.0 + tol)]


# --------------------------------------------------------------------------------------------
# Step Law


@dataclass(frozen=True)
class StepLawResult:
    lr: PowerLaw                  # eta_opt = c N^a D^b
    batch: PowerLaw               # B_opt = c D^b, B in tokens per step
    near_optimal: pd.DataFrame = field(repr=False)
    warnings: tuple[str, ...] = ()

    def predict(self, N: float | np.ndarray, D: float | np.ndarray) -> dict[str, np.ndarray]:
        return {"lr": self.lr(N=N, D=D), "B": self.batch(D=D)}

    def summary(self) -> dict[str, object]:
        # batch_unit: the ladder (harness/ladder/rules.py) reads B_opt in tokens and refuses a
        # JSON that does not say so.
        return {"lr": self.lr.as_dict(), "batch": self.batch.as_dict(), "batch_unit": "tokens",
                "lr_formula": self.lr.formula("lr_opt"),
                "batch_formula": self.batch.formula("B_opt"),
                "n_near_optimal_runs": len(self.near_optimal),
                "n_cells": int(self.near_optimal.groupby(["N", "D"]).ngroups),
                "warnings": list(self.warnings)}


def batch_in_tokens(runs: pd.DataFrame, batch_unit: str, seq_len: int | None, what: str) -> pd.DataFrame:
    """The table with B in tokens per step: as is for "tokens", B x seq_len for "sequences"."""
    if batch_unit not in BATCH_UNITS:
        raise ValueError(f"{what}: batch unit {batch_unit!r}; choose one of {', '.join(BATCH_UNITS)}")
    if batch_unit == "tokens":
        return runs
    if not seq_len or seq_len <= 0:
        raise ValueError(f"{what}: B in sequences needs the sequence length to convert it to tokens; "
                         "Fix: pass --seq-len (or give B in tokens, as harness.collect writes it)")
    return runs.assign(B=pd.to_numeric(runs["B"], errors="coerce") * seq_len)


def fit_step_law(runs: pd.DataFrame, tol: float = NEAR_OPTIMAL_TOL, n_bootstrap: int = 1000,
                 ci: float = 0.95, seed: int = 0, allow_edge: bool = False,
                 batch_unit: str = "tokens", seq_len: int | None = None) -> StepLawResult:
    """Step Law: eta_opt(N, D) and B_opt(D) from the near-optimal runs of each (N, D) cell.

    Columns (as `python -m harness.collect` writes them): N (non-embedding parameters), D
    (tokens), lr, B (tokens per step; `batch_unit="sequences"` with `seq_len` converts), loss
    (final, ideally smoothed, training loss). Every cell must have >= 3 runs and its best run
    inside the swept lr and B ranges (`validate_grid`; warnings with `allow_edge`). The point
    estimate is the OLS fit on all near-optimal runs; the intervals are bootstrap percentiles
    over cells (a cell's near-optimal runs stay together). (The official code resamples runs and
    reports the bootstrap mean, which is within the interval.)
    """
    require_columns(runs, ["N", "D", "lr", "B", "loss"], "Step Law fit",
                    positive=["N", "D", "lr", "B", "loss"])
    runs = batch_in_tokens(runs, batch_unit, seq_len, "Step Law fit")
    if runs.groupby(["N", "D"]).ngroups < 3:
        raise ValueError("Step Law fit needs at least 3 (N, D) cells")
    warnings = validate_grid(runs, ("N", "D"), ("lr", "B"), "Step Law fit", allow_edge)
    near = near_optimal_runs(runs, tol)
    cells = near.groupby(["N", "D"]).ngroup().to_numpy()
    lr = fit_power_law({"N": near["N"].to_numpy(), "D": near["D"].to_numpy()},
                       near["lr"].to_numpy(), n_bootstrap, ci, seed, groups=cells)
    batch = fit_power_law({"D": near["D"].to_numpy()}, near["B"].to_numpy(),
                          n_bootstrap, ci, seed + 1, groups=cells)
    return StepLawResult(lr=lr, batch=batch, near_optimal=near, warnings=tuple(warnings))


# --------------------------------------------------------------------------------------------
# Power Lines


def adamw_timescale(B: np.ndarray, lr: np.ndarray, wd: np.ndarray, D: np.ndarray) -> np.ndarray:
    """tau = B / (eta * lambda * D): the EMA timescale 1/(eta*lambda) of AdamW's weights in
    iterations, as a fraction of the D/B iterations of training. B and D in the same unit."""
    return np.asarray(B, float) / (np.asarray(lr, float) * np.asarray(wd, float) * np.asarray(D, float))


def vertex_in_log(x: np.ndarray, loss: np.ndarray) -> float:
    """The x minimising a parabola of loss vs log x, when the data bracket a valley;
    otherwise the x of the lowest loss. Smoother than the argmin on a coarse sweep."""
    x, loss = np.asarray(x, float), np.asarray(loss, float)
    log_x = np.log(x)
    if len(np.unique(log_x)) >= 3:
        centre = log_x.mean()
        c2, c1, _ = np.polyfit(log_x - centre, loss, 2)
        if c2 > 0:
            v = centre - c1 / (2 * c2)
            if log_x.min() <= v <= log_x.max():
                return float(np.exp(v))
    return float(x[np.argmin(loss)])


@dataclass(frozen=True)
class PowerLinesResult:
    tau_opt: PowerLaw             # tau_opt = c (D/N)^m
    batch_opt: PowerLaw           # B_opt = c D^m
    cells: pd.DataFrame           # per (N, D[, B]) optimum used in the fits
    warnings: tuple[str, ...] = ()
    # B_crit = c D_min^m (tokens), when the table has several D per (N, B); else None and the reason.
    batch_crit: PowerLaw | None = None
    crit_points: pd.DataFrame | None = field(default=None, repr=False)
    batch_crit_note: str = ""
    # d log tau_opt / d log B inside an (N, D) cell; the paper finds 0 (tau_opt independent of B), which the
    # lr / weight decay it implies rests on. NaN when no cell has a tau sweep at two batch sizes.
    tau_batch_slope: float = float("nan")

    def optimal_weight_decay(self, N: float | np.ndarray, D: float | np.ndarray,
                             B: float | np.ndarray, lr: float | np.ndarray) -> np.ndarray:
        """lambda_opt = B / (eta * D * tau_opt(D/N))."""
        tau = self.tau_opt(np.asarray(D, float) / np.asarray(N, float))
        return np.asarray(B, float) / (np.asarray(lr, float) * np.asarray(D, float) * tau)

    def summary(self) -> dict[str, object]:
        out = {"tau_opt": self.tau_opt.as_dict(), "batch_opt": self.batch_opt.as_dict(), "batch_unit": "tokens",
               "tau_formula": self.tau_opt.formula("tau_opt"),
               "batch_formula": self.batch_opt.formula("B_opt"), "tau_batch_slope": self.tau_batch_slope,
               "warnings": list(self.warnings)}
        if self.batch_crit is not None:
            out["batch_crit"] = self.batch_crit.as_dict()
            out["batch_crit_formula"] = self.batch_crit.formula("B_crit")
        else:
            out["batch_crit"] = None
            out["batch_crit_note"] = self.batch_crit_note
        return out


def fit_power_lines(runs: pd.DataFrame, n_bootstrap: int = 1000, ci: float = 0.95,
                    seed: int = 0, allow_edge: bool = False, batch_unit: str = "tokens",
                    seq_len: int | None = None) -> PowerLinesResult:
    """Power Lines: tau_opt as a power law in D/N, and B_opt as a power law in D.

    Columns: N, D (tokens), B (batch, in tokens so that B/D is a fraction of training), lr, wd
    (AdamW's decoupled lambda, as in torch: the update is -lr*wd*w), loss.
    * tau_opt: within each (N, D, B) cell, the vertex of loss vs log tau over the lr/wd sweep;
      every cell is one point of the fit, since tau_opt does not depend on B (the paper's
      finding: lambda_opt ∝ B).
    * B_opt: within each (N, D) cell, the best loss at each B (over lr, wd), then the vertex of
      loss vs log B. The fit uses D only: the paper finds B_opt independent of N.
    Grids are validated first (`validate_grid`): every (N, D, B) cell needs >= 3 runs with its
    best tau inside the swept range, every (N, D) cell its best B inside the swept B range;
    warnings instead of an error with `allow_edge`. Bootstraps resample cells.
    """
    require_columns(runs, ["N", "D", "B", "lr", "wd", "loss"], "Power Lines fit",
                    positive=["N", "D", "B", "lr", "wd", "loss"])
    runs = batch_in_tokens(runs, batch_unit, seq_len, "Power Lines fit")
    runs = runs.assign(tau=adamw_timescale(runs["B"], runs["lr"], runs["wd"], runs["D"]))

    warnings = validate_grid(runs, ("N", "D", "B"), ("tau",), "Power Lines fit (tau sweep)", allow_edge)
    per_b = runs.loc[runs.groupby(["N", "D", "B"])["loss"].idxmin()]
    warnings += validate_grid(per_b, ("N", "D"), ("B",), "Power Lines fit (batch sweep)", allow_edge, min_runs=1)
    tau_cells = []
    for (n, d, b), g in runs.groupby(["N", "D", "B"]):
        if g["tau"].nunique() >= 2:
            tau_cells.append({"N": n, "D": d, "B": b, "tau_opt": vertex_in_log(g["tau"], g["loss"]),
                              "loss": g["loss"].min()})
    tau_cells_df = pd.DataFrame(tau_cells)
    if len(tau_cells_df) < 2 or (tau_cells_df["D"] / tau_cells_df["N"]).nunique() < 2:
        raise ValueError("Power Lines fit needs (N, D, B) cells with a tau sweep (>= 2 lr/wd "
                         "values) at 2 or more tokens-per-parameter ratios")

    batch_cells = []
    for (n, d), g in runs.groupby(["N", "D"]):
        per_b = g.groupby("B")["loss"].min()
        if len(per_b) >= 2:
            batch_cells.append({"N": n, "D": d,
                                "B_opt": vertex_in_log(per_b.index.to_numpy(), per_b.to_numpy())})
    batch_cells_df = pd.DataFrame(batch_cells)
    if len(batch_cells_df) < 2 or batch_cells_df["D"].nunique() < 2:
        raise ValueError("Power Lines fit needs (N, D) cells with a batch sweep (>= 2 values of "
                         "B) at 2 or more D")

    # One point per cell already: resampling points is resampling cells.
    tau_law = fit_power_law({"D/N": (tau_cells_df["D"] / tau_cells_df["N"]).to_numpy()},
                            tau_cells_df["tau_opt"].to_numpy(), n_bootstrap, ci, seed)
    batch_law = fit_power_law({"D": batch_cells_df["D"].to_numpy()},
                              batch_cells_df["B_opt"].to_numpy(), n_bootstrap, ci, seed + 1)
    cells = tau_cells_df.merge(batch_cells_df, on=["N", "D"], how="outer")
    slope = within_cell_slope(tau_cells_df, "B", "tau_opt")
    warnings += tau_batch_warnings(slope, runs["wd"].nunique())
    crit_law, crit_points, crit_note = None, None, ""
    try:
        crit_points = critical_batch_from_runs(runs)
        crit_law = fit_power_law({"D": crit_points["D_min"].to_numpy()}, crit_points["B_crit"].to_numpy(),
                                 n_bootstrap, ci, seed + 2)
    except ValueError as e:  # the table has no D sweep at fixed (N, B): B_crit is simply not measured
        crit_note = f"B_crit not fitted: {e}"
    return PowerLinesResult(tau_opt=tau_law, batch_opt=batch_law, cells=cells, warnings=tuple(warnings),
                            batch_crit=crit_law, crit_points=crit_points, batch_crit_note=crit_note,
                            tau_batch_slope=slope)


# A |slope| above this says tau_opt moves with B by more than a factor 1.2 per doubling of the batch.
TAU_BATCH_SLOPE_WARN = 0.3


def within_cell_slope(cells: pd.DataFrame, x: str, y: str) -> float:
    """OLS slope of log y on log x with one intercept per (N, D) cell (a fixed effect each): how y
    moves with x inside a cell. Power Lines' claim that tau_opt does not depend on B is slope 0;
    slope 1 is tau_opt ∝ B, i.e. at a fixed weight decay an lr_opt that does not move with B."""
    lx, ly = np.log(cells[x].to_numpy(float)), np.log(cells[y].to_numpy(float))
    cell = cells.groupby(["N", "D"]).ngroup().to_numpy()
    lx = lx - pd.Series(lx).groupby(cell).transform("mean").to_numpy()
    ly = ly - pd.Series(ly).groupby(cell).transform("mean").to_numpy()
    spread = float(lx @ lx)
    return float(lx @ ly) / spread if spread > 0 else float("nan")  # no cell with two values of x


def tau_batch_warnings(slope: float, n_weight_decays: int) -> list[str]:
    """A loud warning when tau_opt depends on B inside the sweep's cells (the Power Lines lr / weight decay
    prediction assumes it does not), naming a single-weight-decay sweep as the likely cause."""
    if not np.isfinite(slope) or abs(slope) <= TAU_BATCH_SLOPE_WARN:
        return []
    cause = (" This sweep varies tau through the lr alone (one weight decay); the paper's finding comes from "
             "weight-decay sweeps, and on Step Law's lr-only grid tau_opt also grew with B (slope 0.83), where the "
             "predicted lr missed the best run by 0.47% loss vs Step Law's 0.11% (docs/STEPLAW.md)."
             if n_weight_decays == 1 else "")
    return [f"WARNING: Power Lines fit: inside a cell tau_opt moves with the batch (slope {slope:.2f} in log B; the "
            f"paper finds 0), so the lr / weight decay derived from tau_opt(D/N) is unreliable.{cause} Fix: sweep "
            "weight decay at each batch size, or take the lr from Step Law (`python -m harness.fit steplaw`)"]


# --------------------------------------------------------------------------------------------
# Critical batch size


@dataclass(frozen=True)
class CriticalBatch:
    """S = S_min + E_min / B, the McCandlish trade-off between steps and examples."""

    S_min: float                  # steps needed with an infinitely large batch
    E_min: float                  # examples (or tokens, if B is in tokens) with a tiny batch

    @property
    def B_crit(self) -> float:
        return self.E_min / self.S_min

    def steps(self, B: float | np.ndarray) -> np.ndarray:
        return self.S_min + self.E_min / np.asarray(B, float)


def fit_critical_batch(table: pd.DataFrame) -> CriticalBatch:
    """Fit (S/S_min - 1)(E/E_min - 1) = 1 to steps-to-target at several batch sizes.

    Columns: B (batch size), steps (optimizer steps needed to reach the target loss). With
    E = B*S the hyperbola is exactly S = S_min + E_min/B. It is fitted by least squares on
    log S (every batch size weighs the same, whatever its number of steps), starting from the
    linear regression of S on 1/B.
    """
    require_columns(table, ["B", "steps"], "critical-batch fit", positive=["B", "steps"])
    B = table["B"].to_numpy(dtype=float)
    S = table["steps"].to_numpy(dtype=float)
    if len(np.unique(B)) < 2:
        raise ValueError("critical-batch fit needs at least 2 distinct batch sizes")
    slope, intercept = np.polyfit(1.0 / B, S, 1)
    # A noisy linear fit can give a negative S_min or E_min; start from a positive guess.
    s0 = intercept if intercept > 0 else 0.1 * S.min()
    e0 = slope if slope > 0 else 0.1 * (S * B).min()

    def residual(log_params: np.ndarray) -> np.ndarray:
        s_min, e_min = np.exp(log_params)
        return np.log(s_min + e_min / B) - np.log(S)

    fit = least_squares(residual, np.log([s0, e0]), method="lm" if len(B) > 2 else "trf")
    s_min, e_min = np.exp(fit.x)
    return CriticalBatch(S_min=float(s_min), E_min=float(e_min))


def steps_to_target(curves: pd.DataFrame, target: float, run: str = "run") -> pd.DataFrame:
    """From loss curves (columns run, B, step, loss), the first step at which each run's loss
    reaches `target`, interpolated linearly between logged steps. Runs that never reach it are
    left out. Returns columns run, B, steps."""
    if run not in curves.columns:  # run ids may be text (a run name or directory): only present
        raise ValueError(f"steps_to_target needs column {run!r} (run id); the table has {list(curves.columns)}")
    require_columns(curves, ["B", "step", "loss"], "steps_to_target")
    rows = []
    for run_id, g in curves.groupby(run, sort=False):
        g = g.sort_values("step")
        loss, step = g["loss"].to_numpy(float), g["step"].to_numpy(float)
        below = np.flatnonzero(loss <= target)
        if len(below) == 0:
            continue
        i = below[0]
        if i == 0:
            s = step[0]
        else:  # interpolate between the last point above and the first point at/below target
            frac = (loss[i - 1] - target) / (loss[i - 1] - loss[i])
            s = step[i - 1] + frac * (step[i] - step[i - 1])
        rows.append({run: run_id, "B": float(g["B"].iloc[0]), "steps": float(s)})
    return pd.DataFrame(rows, columns=[run, "B", "steps"])


@dataclass(frozen=True)
class CriticalBatchScan:
    per_target: pd.DataFrame      # target_loss, S_min, E_min, B_crit, n_batches
    vs_data: PowerLaw             # B_crit = c * E_min^m   (Power Lines: B_crit ∝ D^m)
    vs_loss: PowerLaw             # B_crit = c * L^m       (Kaplan: B_crit = B* / L^(1/alpha_B))


def critical_batch_scan(curves: pd.DataFrame, targets: Sequence[float],
                        run: str = "run") -> CriticalBatchScan:
    """B_crit at several target losses, and its power laws in data and in loss.

    `curves` as for `steps_to_target`, with B in tokens so that E_min is the number of tokens
    needed to reach the target (the D in Power Lines' B_crit ∝ D^m; using 2 E_min, the tokens
    at B = B_crit, changes only the coefficient).
    """
    rows = []
    for target in targets:
        table = steps_to_target(curves, target, run)
        if table["B"].nunique() < 2:
            continue  # too few batch sizes reach this target
        cb = fit_critical_batch(table)
        rows.append({"target_loss": float(target), "S_min": cb.S_min, "E_min": cb.E_min,
                     "B_crit": cb.B_crit, "n_batches": int(table["B"].nunique())})
    per_target = pd.DataFrame(rows)
    if len(per_target) < 2:
        raise ValueError("critical-batch scan: fewer than 2 targets were reached at 2+ batch sizes")
    return CriticalBatchScan(
        per_target=per_target,
        vs_data=fit_power_law({"D": per_target["E_min"].to_numpy()}, per_target["B_crit"].to_numpy()),
        vs_loss=fit_power_law({"L": per_target["target_loss"].to_numpy()},
                              per_target["B_crit"].to_numpy()),
    )


def tokens_to_reach(D: np.ndarray, loss: np.ndarray, target: float) -> float | None:
    """Tokens at which a loss-vs-D series (one N, one B, the best over lr/wd at each D) reaches
    `target`, interpolated linearly in log D; None when the series never gets there or starts below
    it (the crossing is not bracketed). The running minimum makes noisy series monotone."""
    order = np.argsort(D)
    D, loss = np.asarray(D, float)[order], np.minimum.accumulate(np.asarray(loss, float)[order])
    if not loss[0] > target >= loss[-1]:
        return None
    i = int(np.flatnonzero(loss <= target)[0])
    frac = (loss[i - 1] - target) / (loss[i - 1] - loss[i])
    return float(np.exp(np.log(D[i - 1]) + frac * (np.log(D[i]) - np.log(D[i - 1]))))


def critical_batch_from_runs(runs: pd.DataFrame, n_targets: int = 4) -> pd.DataFrame:
    """B_crit from final losses: for each N, the tokens D(B) each batch size needs to reach a target
    loss (interpolated over the D sweep at that B, best run over lr / wd), then McCandlish's
    D = D_min (1 + B / B_crit), i.e. S = D / B = S_min + D_min / B (`fit_critical_batch` with
    steps = D / B); B_crit = D_min / S_min. Targets: `n_targets` losses evenly inside the range every
    batch size of that N spans. Returns columns N, target_loss, D_min, S_min, B_crit, n_batches (B,
    D in tokens). Power Lines fits B_crit as a power law in D_min, across N."""
    require_columns(runs, ["N", "D", "B", "loss"], "B_crit fit", positive=["N", "D", "B", "loss"])
    rows = []
    for n, g in runs.groupby("N"):
        best = g.groupby(["B", "D"])["loss"].min().reset_index()
        series = {b: s for b, s in best.groupby("B") if s["D"].nunique() >= 2}
        if len(series) < 2:
            continue
        lo = max(s["loss"].min() for s in series.values())   # every batch reaches below lo ...
        hi = min(s["loss"].max() for s in series.values())   # ... and starts above hi
        if not hi > lo:
            continue
        for target in np.linspace(lo, hi, n_targets + 2)[1:-1]:
            table = []
            for b, s in series.items():
                d = tokens_to_reach(s["D"].to_numpy(), s["loss"].to_numpy(), float(target))
                if d is not None:
                    table.append({"B": float(b), "steps": d / float(b)})
            if len(table) < 2:
                continue
            cb = fit_critical_batch(pd.DataFrame(table))
            rows.append({"N": float(n), "target_loss": float(target), "D_min": cb.E_min, "S_min": cb.S_min,
                         "B_crit": cb.B_crit, "n_batches": len(table)})
    points = pd.DataFrame(rows, columns=["N", "target_loss", "D_min", "S_min", "B_crit", "n_batches"])
    if len(points) < 2 or points["D_min"].nunique() < 2:
        raise ValueError("needs, for some N, >= 2 batch sizes each swept over >= 2 values of D whose losses "
                         "overlap (to read the tokens each batch needs to reach a common loss)")
    return points


# --------------------------------------------------------------------------------------------
# Pareto choice of N, D and B under compute and time (Power Lines' last section)
#
# ASSUMED (the paper's section text could not be read here; this is the McCandlish relation the
# paper's B_crit is defined by, combined with a fitted loss law, as its abstract describes):
# * a loss law L(N, D) fitted at small batch (B << B_crit; Chinchilla's E + A/N^alpha + B/D^beta)
#   gives D_min(N), the tokens a model of N parameters needs to reach the target loss;
# * training with batch B costs D = D_min (1 + B / B_crit(D_min)) tokens in S = D / B =
#   S_min (1 + B_crit / B) steps, S_min = D_min / B_crit; B_crit(D) is the fitted power law;
# * compute is C = 6 N D FLOPs (or flops_per_param x N D), and training time is proportional to the
#   number of steps S (each step's time fixed by the hardware, however large B: perfect data
#   parallelism). Under a budget of S_max steps the cheapest batch for a given N is the smallest
#   that meets it, B = B_crit / (S_max / S_min - 1), so C(N) = 6 N D_min S_max / (S_max - S_min);
#   the choice is the N minimising it. With no time budget it is the compute-optimal N for the
#   target (B -> 0). B_crit grows with D, but slower than D (exponent m < 1), so S_min =
#   D_min / B_crit ∝ D_min^(1-m) grows with the tokens: a tight time budget moves the choice to a
#   LARGER N on fewer tokens (and more compute), which reaches the target in fewer steps.


@dataclass(frozen=True)
class ChinchillaLoss:
    """L(N, D) = E + A / N^alpha + B / D^beta (N parameters, D tokens)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def __call__(self, N: float | np.ndarray, D: float | np.ndarray) -> np.ndarray:
        return self.E + self.A / np.asarray(N, float) ** self.alpha + self.B / np.asarray(D, float) ** self.beta

    def tokens_for(self, N: float, target: float) -> float | None:
        """D with L(N, D) = target, or None when N cannot reach it (E + A/N^alpha >= target)."""
        gap = target - self.E - self.A / N**self.alpha
        return float((self.B / gap) ** (1.0 / self.beta)) if gap > 0 else None

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "ChinchillaLoss":
        """From `python -m harness.fit scaling --law chinchilla`'s params.json (log form: e, a, b,
        alpha, beta; L = exp(e) + exp(a)/N^alpha + exp(b)/D^beta), or plain E, A, alpha, B, beta."""
        p = params.get("params", params)
        try:
            if {"e", "a", "b", "alpha", "beta"} <= set(p):
                return cls(E=float(np.exp(p["e"])), A=float(np.exp(p["a"])), alpha=float(p["alpha"]),
                           B=float(np.exp(p["b"])), beta=float(p["beta"]))
            return cls(E=float(p["E"]), A=float(p["A"]), alpha=float(p["alpha"]), B=float(p["B"]),
                       beta=float(p["beta"]))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError("loss law: give a chinchilla params.json (e, a, b, alpha, beta) or E, A, alpha, B, "
                             f"beta; got keys {sorted(p)} ({type(e).__name__}: {e})") from None


@dataclass(frozen=True)
class ParetoChoice:
    frontier: pd.DataFrame        # per N: D_min, B_crit, S_min, and at the step budget: B, D, steps, C
    choice: dict[str, float]      # the row with the least compute that meets the budget
    max_steps: float | None

    def summary(self) -> dict[str, Any]:
        return {"choice": self.choice, "max_steps": self.max_steps,
                "assumed": "time = steps (perfect data parallelism); D = D_min (1 + B/B_crit(D_min)); "
                           "loss law fitted at small batch (see harness/fit/hyperparams.py)",
                "frontier": self.frontier.to_dict(orient="records")}


def pareto_choice(loss: ChinchillaLoss, batch_crit: PowerLaw, target_loss: float, max_steps: float | None = None,
                  n_values: Sequence[float] | None = None, flops_per_param: float = 6.0) -> ParetoChoice:
    """The (N, D, B) reaching `target_loss` with the least compute within `max_steps` optimizer steps
    (None: no time limit, B -> 0 in the limit; reported at B = B_crit / 100). ASSUMED formulas: see
    the comment above. `n_values`: the model sizes to consider (default: 200 log-spaced sizes from
    where the target becomes reachable up to 1000x that)."""
    if not target_loss > loss.E:
        raise ValueError(f"pareto: target loss {target_loss:g} is at or below the law's floor E = {loss.E:g}")
    if max_steps is not None and not max_steps > 0:
        raise ValueError(f"pareto: max_steps must be positive, got {max_steps!r}")
    if n_values is None:
        n_floor = (loss.A / (target_loss - loss.E)) ** (1.0 / loss.alpha)  # below this N the target is out of reach
        n_values = np.geomspace(n_floor * 1.01, n_floor * 1e3, 200)
    rows = []
    for n in map(float, n_values):
        d_min = loss.tokens_for(n, target_loss)
        if d_min is None:
            continue
        b_crit = float(batch_crit(d_min))
        s_min = d_min / b_crit
        if max_steps is None:
            b = b_crit / 100.0
        elif max_steps > s_min:
            b = b_crit / (max_steps / s_min - 1.0)
        else:
            continue  # even an infinite batch needs more steps than the budget
        d = d_min * (1.0 + b / b_crit)
        rows.append({"N": n, "D_min": d_min, "B_crit": b_crit, "S_min": s_min, "B": b, "D": d, "steps": d / b,
                     "C": flops_per_param * n * d, "tokens_per_param": d / n})
    frontier = pd.DataFrame(rows)
    if frontier.empty:
        raise ValueError(f"pareto: no model size reaches loss {target_loss:g} within {max_steps:g} steps; "
                         "raise the step budget or the target loss")
    choice = frontier.loc[frontier["C"].idxmin()].to_dict()
    return ParetoChoice(frontier=frontier, choice={k: float(v) for k, v in choice.items()}, max_steps=max_steps)


def _tokens_worth(tokens: float, batch: float, batch_crit: PowerLaw) -> float:
    """D_min with D_min (1 + B / B_crit(D_min)) = `tokens`: what `tokens` trained at batch B are worth
    at a small batch (the inverse of pareto_choice's D(B)). Increasing in D_min while B_crit grows
    slower than D (exponent < 1), so the root in (0, tokens] is unique; bisection in log D_min."""
    lo, hi = np.log(tokens) - 60.0, np.log(tokens)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        d_min = np.exp(mid)
        if d_min * (1.0 + batch / float(batch_crit(d_min))) > tokens:
            hi = mid
        else:
            lo = mid
    return float(np.exp(0.5 * (lo + hi)))


def pareto_at_compute(loss: ChinchillaLoss, batch_crit: PowerLaw, compute: float, max_steps: float,
                      n_values: Sequence[float] | None = None, flops_per_param: float = 6.0) -> ParetoChoice:
    """The (N, D, B) of least loss for `compute` FLOPs within `max_steps` steps: the compute-budget
    twin of `pareto_choice`, under the same ASSUMED formulas. For each N, D = C / (6 N) tokens must
    be trained in at most S steps, so the batch is at least D / S; a larger batch only wastes data,
    so B = D / S, the tokens are worth D_min with D = D_min (1 + B / B_crit(D_min)), and the loss is
    L(N, D_min). `n_values` default: 400 log-spaced sizes over 6 decades around the compute-optimal
    N of the loss law alone."""
    if not compute > 0 or not max_steps > 0:
        raise ValueError(f"pareto: compute and max_steps must be positive, got {compute!r}, {max_steps!r}")
    if not batch_crit.exponents[0] < 1:
        raise ValueError(f"pareto: B_crit ~ D^{batch_crit.exponents[0]:.3g} grows as fast as D; the tokens' worth "
                         "at a given batch is not unique")
    if n_values is None:
        # Chinchilla's closed-form optimum (no batch penalty) centres the search; the budget is rescaled
        # so that chinchilla_optimal's FLOPs per parameter-token become flops_per_param.
        budget = compute * FLOPS_PER_PARAM_TOKEN / flops_per_param
        n_opt = float(chinchilla_optimal(budget, loss.A, loss.B, loss.alpha, loss.beta).N_opt)
        n_values = np.geomspace(n_opt * 1e-3, n_opt * 1e3, 400)
    rows = []
    for n in map(float, n_values):
        d = compute / (flops_per_param * n)
        b = d / max_steps
        d_min = _tokens_worth(d, b, batch_crit)
        rows.append({"N": n, "D": d, "B": b, "steps": max_steps, "D_min": d_min, "B_crit": float(batch_crit(d_min)),
                     "loss": float(loss(n, d_min)), "C": compute, "tokens_per_param": d / n})
    frontier = pd.DataFrame(rows)
    choice = frontier.loc[frontier["loss"].idxmin()].to_dict()
    return ParetoChoice(frontier=frontier, choice={k: float(v) for k, v in choice.items()}, max_steps=max_steps)
