"""Compute-optimal allocation from runs: Chinchilla Approaches 1 and 2 (Hoffmann et al. 2022).

Approach 2 (IsoFLOP profiles): runs are grouped by compute budget C; within a budget, loss is a
parabola in log N and its vertex is N_opt(C); D_opt(C) = C / (F(N_opt)) with F the table's own
training FLOPs per token (column flops_per_token, else C/D per run, else 6N), interpolated in log N
between the budget's runs -- 6N leaves out attention and the vocabulary projection, which at small
N overstates D_opt by 7-21%. Vertices outside the sampled N range of their budget are
extrapolations: kept in `optima` (interior = False) but left out of the exponent fits, with a note.
Then N_opt = k_N C^a and D_opt = k_D C^b by OLS in log space (a + b = 1 when C = 6ND exactly).

Approach 1 (minimum over training curves): every run's loss curve is read as loss against
C = 6 N D_t (D_t the tokens seen so far). At each C on a log grid, the run with the lowest
(interpolated) loss gives N_opt(C). Then the same power laws.

Inputs are tables: Approach 2 needs N, D, loss (C optional, else 6ND); Approach 1 needs N, D,
loss per logged step and a run id (defaults to grouping by N).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

from harness.fit.laws.final_loss import FLOPS_PER_PARAM_TOKEN
from harness.fit.powerlaw import PowerLaw, fit_power_law


@dataclass(frozen=True)
class IsoFLOPResult:
    """Per-budget optima and the power laws through them."""

    optima: pd.DataFrame          # columns C, N_opt, D_opt, loss_opt (+ approach-specific ones)
    N_opt: PowerLaw               # N_opt = k C^a
    D_opt: PowerLaw               # D_opt = k C^b
    notes: tuple[str, ...] = ()   # e.g. budgets left out of the fits

    def tokens_per_param(self, C: float | np.ndarray) -> np.ndarray:
        return self.D_opt(C) / self.N_opt(C)

    def summary(self, C: float | None = None) -> dict[str, object]:
        out: dict[str, object] = {
            "a": self.N_opt.exponent,     # N_opt ∝ C^a
            "b": self.D_opt.exponent,     # D_opt ∝ C^b
            "N_opt": self.N_opt.as_dict(),
            "D_opt": self.D_opt.as_dict(),
            "n_budgets": len(self.optima),
            "notes": list(self.notes),
        }
        if C is not None:
            out["at_C"] = {"C": C, "N_opt": float(self.N_opt(C)), "D_opt": float(self.D_opt(C)),
                           "tokens_per_param": float(self.tokens_per_param(C))}
        return out


def _require(table: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"{what} needs columns {missing}; the table has {list(table.columns)}")
    for c in columns:
        values = pd.to_numeric(table[c], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"{what}: column {c!r} must be numeric, finite and > 0")


def compute_column(table: pd.DataFrame) -> np.ndarray:
    """C from the table, or 6 N D."""
    if "C" in table.columns:
        return table["C"].to_numpy(dtype=float)
    return FLOPS_PER_PARAM_TOKEN * table["N"].to_numpy(dtype=float) * table["D"].to_numpy(dtype=float)


def flops_per_token_column(table: pd.DataFrame) -> np.ndarray:
    """Training FLOPs per token of each run: column flops_per_token (harness.collect), else C / D,
    else 6 N (the dense-transformer approximation)."""
    if "flops_per_token" in table.columns:
        fpt = pd.to_numeric(table["flops_per_token"], errors="coerce").to_numpy(dtype=float)
        if np.all(np.isfinite(fpt) & (fpt > 0)):
            return fpt
    if "C" in table.columns:
        return table["C"].to_numpy(dtype=float) / table["D"].to_numpy(dtype=float)
    return FLOPS_PER_PARAM_TOKEN * table["N"].to_numpy(dtype=float)


def _flops_per_token_at(n_opt: float, n: np.ndarray, fpt: np.ndarray) -> float:
    """F(N_opt): the budget's FLOPs per token per parameter, interpolated linearly in log N (held
    constant beyond the sampled sizes), times N_opt."""
    order = np.argsort(n)
    ratio = np.interp(np.log(n_opt), np.log(n[order]), (fpt / n)[order])
    return float(ratio * n_opt)


def group_budgets(C: np.ndarray, rel_tol: float = 0.05) -> np.ndarray:
    """Integer labels grouping compute values that are within rel_tol of their neighbours.

    Budgets in a sweep are nominally equal but often recorded inexactly (rounded FLOP counts,
    values read off a plot), so exact equality would split one IsoFLOP profile into many.
    """
    log_c = np.log(np.asarray(C, dtype=float))
    order = np.argsort(log_c)
    gaps = np.diff(log_c[order]) > np.log1p(rel_tol)
    labels_sorted = np.concatenate([[0], np.cumsum(gaps)])
    labels = np.empty_like(labels_sorted)
    labels[order] = labels_sorted
    return labels


def assign_budgets(C: np.ndarray, budgets: Sequence[float], rel_tol: float) -> np.ndarray:
    """Index of the nearest nominal budget (in log C) for each run, or -1 if none is within
    rel_tol. For sweeps whose recorded C scatters around known nominal budgets."""
    log_c = np.log(np.asarray(C, dtype=float))[:, None]
    log_b = np.log(np.asarray(budgets, dtype=float))[None, :]
    nearest = np.argmin(np.abs(log_c - log_b), axis=1)
    close = np.abs(log_c[:, 0] - log_b[0, nearest]) <= np.log1p(rel_tol)
    return np.where(close, nearest, -1)


def isoflop_profiles(
    runs: pd.DataFrame,
    rel_tol: float = 0.05,
    min_points: int = 3,
    budgets: Sequence[float] | None = None,
) -> IsoFLOPResult:
    """Approach 2: fit a parabola of loss vs log N per budget; its vertex is N_opt(C).

    Runs are grouped by compute: with `budgets` (nominal FLOP budgets of the sweep), each run
    joins the nearest one within rel_tol; otherwise runs whose C values chain together within
    rel_tol form one budget. A budget is used only if it has `min_points` distinct model sizes
    and an upward parabola. Vertices outside the sampled N range are extrapolations; they are
    kept but flagged in column `interior` so a caller can drop them.
    """
    _require(runs, ["N", "D", "loss"], "IsoFLOP analysis")
    C = compute_column(runs)
    fpt = flops_per_token_column(runs)
    labels = group_budgets(C, rel_tol) if budgets is None else assign_budgets(C, budgets, rel_tol)
    rows = []
    for label in np.unique(labels[labels >= 0]):
        sel = labels == label
        log_n = np.log(runs["N"].to_numpy(dtype=float)[sel])
        loss = runs["loss"].to_numpy(dtype=float)[sel]
        if len(np.unique(log_n)) < min_points:
            continue
        # Centre log N so the quadratic's coefficients are well conditioned.
        centre = log_n.mean()
        c2, c1, c0 = np.polyfit(log_n - centre, loss, 2)
        if c2 <= 0:
            continue  # not a valley: this budget does not bracket its optimum
        x_opt = -c1 / (2 * c2)
        # The nominal budget if given, else the geometric mean of the group's C.
        budget = float(budgets[label]) if budgets is not None else float(np.exp(np.log(C[sel]).mean()))
        n_opt = float(np.exp(centre + x_opt))
        f_opt = _flops_per_token_at(n_opt, np.exp(log_n), fpt[sel])
        rows.append({
            "C": budget,
            "N_opt": n_opt,
            "D_opt": budget / f_opt,
            "flops_per_token_opt": f_opt,
            "loss_opt": float(c0 - c1**2 / (4 * c2)),
            "curvature": float(c2),
            "n_runs": int(sel.sum()),
            "interior": bool(log_n.min() <= centre + x_opt <= log_n.max()),
        })
    optima = pd.DataFrame(rows)
    notes: list[str] = []
    if len(optima) and not optima["interior"].all():
        out = optima[~optima["interior"]]
        notes.append(f"{len(out)} budget(s) left out of the exponent fits: their vertex lies outside the "
                     f"sampled N range (an extrapolation): C = {', '.join(f'{c:.3g}' for c in out['C'])}")
        return _fit_optima(optima, "IsoFLOP profiles", use=optima["interior"].to_numpy(), notes=notes)
    return _fit_optima(optima, "IsoFLOP profiles")


def envelope_minimum(
    curves: pd.DataFrame,
    run_column: str | None = "run",
    n_grid: int = 250,
    min_runs: int = 2,
) -> IsoFLOPResult:
    """Approach 1: the lowest loss over all training curves at each FLOP count.

    `curves` has one row per logged point: N, D (tokens seen so far), loss, and a run id in
    `run_column` (if that column is absent, each N is one curve). Each curve is interpolated
    linearly in log C onto a shared log grid (Hoffmann used 1,500 points). A grid point is used
    only where at least `min_runs` curves cover it and the winner is neither the smallest nor the
    largest model covering it (otherwise the true optimum may lie outside the trained sizes).
    """
    _require(curves, ["N", "D", "loss"], "envelope (Approach 1) analysis")
    key = run_column if run_column and run_column in curves.columns else "N"
    table = curves.assign(_C=compute_column(curves), _fpt=flops_per_token_column(curves))
    groups = [g.sort_values("_C") for _, g in table.groupby(key, sort=False)]
    groups = [g for g in groups if len(g) >= 2]
    if len(groups) < min_runs:
        raise ValueError(
            f"Approach 1 needs loss curves (>= 2 logged points) from at least {min_runs} runs; "
            f"found {len(groups)} (runs are identified by column {key!r})"
        )
    log_c_all = np.log(table["_C"].to_numpy(dtype=float))
    grid = np.linspace(log_c_all.min(), log_c_all.max(), n_grid)

    losses = np.full((len(groups), n_grid), np.inf)
    sizes = np.empty(len(groups))
    fpts = np.empty(len(groups))  # each run's own training FLOPs per token (D_opt = C / that)
    for i, g in enumerate(groups):
        fpts[i] = float(g["_fpt"].iloc[-1])
        log_c = np.log(g["_C"].to_numpy(dtype=float))
        inside = (grid >= log_c[0]) & (grid <= log_c[-1])
        losses[i, inside] = np.interp(grid[inside], log_c, g["loss"].to_numpy(dtype=float))
        sizes[i] = float(g["N"].iloc[0])
    present = np.isfinite(losses)
    best = np.argmin(losses, axis=0)
    # A minimum at the smallest or largest model that reaches this C is only a bound on N_opt
    # (the true optimum may lie beyond the sizes trained); such points would flatten the fit.
    smallest = np.where(present, sizes[:, None], np.inf).min(axis=0)
    largest = np.where(present, sizes[:, None], -np.inf).max(axis=0)
    interior = (sizes[best] > smallest) & (sizes[best] < largest)
    use = (present.sum(axis=0) >= min_runs) & interior
    C = np.exp(grid[use])
    n_opt = sizes[best[use]]
    optima = pd.DataFrame({
        "C": C,
        "N_opt": n_opt,
        "D_opt": C / fpts[best[use]],
        "loss_opt": losses[best[use], np.flatnonzero(use)],
        "n_runs": present[:, use].sum(axis=0),
    })
    return _fit_optima(optima, "envelope (Approach 1)")


def _fit_optima(optima: pd.DataFrame, what: str, use: np.ndarray | None = None,
                notes: Sequence[str] = ()) -> IsoFLOPResult:
    """Power laws through the optima (only the rows `use`, when given); all rows are reported."""
    fitted = optima if use is None else optima[use]
    if len(fitted) < 2 or fitted["C"].nunique() < 2:
        extra = f" ({'; '.join(notes)})" if notes else ""
        raise ValueError(f"{what}: fewer than 2 usable compute budgets; cannot fit N_opt(C){extra}")
    C = fitted["C"].to_numpy()
    return IsoFLOPResult(
        optima=optima.reset_index(drop=True),
        N_opt=fit_power_law({"C": C}, fitted["N_opt"].to_numpy()),
        D_opt=fit_power_law({"C": C}, fitted["D_opt"].to_numpy()),
        notes=tuple(notes),
    )
