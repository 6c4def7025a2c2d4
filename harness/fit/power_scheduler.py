"""Power Scheduler fit (Shen et al. 2024, arXiv:2408.13359): eta_opt = a * beta * n^b from WSD sweeps.

The paper sweeps the peak LR of WSD (or constant-LR) runs at several batch sizes beta (in
SEQUENCES per step) and token counts n (tokens trained), takes the best LR of each (beta, n) cell,
finds it linear in beta and a power law in n, and fits

    eta_opt(beta, n) = a * beta * n^b          (paper: a = 4.6, b = -0.51, with muP)

with b shared across batch sizes and a from eta_opt / beta. The Power scheduler then sets the LR
at each step to min(eta_max, a * beta * n_seen^b) (harness/schedules.py PowerSchedule, which uses
the same units: train.batch_size in sequences, tokens seen).

Here: one point per cell, the LR at the vertex of a parabola of loss vs log lr over the cell's
sweep (`vertex_in_log`, smoother than the argmin on a coarse sweep; the argmin when the data do not
bracket a valley); then OLS of log(eta_opt / beta) on log n gives log a and b (b shared, a from
eta_opt / beta: the paper's procedure in one regression). A second, free regression of log eta_opt
on (log beta, log n) reports the batch exponent the data show, to check the linearity in beta the
law assumes. Intervals: bootstrap over cells (one point per cell).

Units, explicitly: column D is the tokens each run trained on (n); column B is the batch, in tokens
per step as `python -m harness.collect` writes it (then `seq_len`, an argument or a `seq_len` /
`train.seq_len` column, converts it to sequences) or, with `batch_unit="sequences"`, already in
sequences. The result's a is for beta in sequences and n in tokens, what `schedule.power_a` expects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from harness.fit.hyperparams import BATCH_UNITS, require_columns, validate_grid, vertex_in_log
from harness.fit.powerlaw import PowerLaw, fit_power_law

WHAT = "Power Scheduler fit"
# Where the sequence length may be found: a plain column, or the run config `harness.collect` flattens.
SEQ_LEN_COLUMNS = ("seq_len", "train.seq_len")


def batch_in_sequences(runs: pd.DataFrame, batch_unit: str, seq_len: int | None) -> pd.DataFrame:
    """The table with B in sequences per step (the paper's beta). B in tokens is divided by the
    sequence length: the `seq_len` argument, else a `seq_len` or `train.seq_len` column (the latter
    is in every table `python -m harness.collect` writes, so a collected sweep needs no option)."""
    if batch_unit not in BATCH_UNITS:
        raise ValueError(f"{WHAT}: batch unit {batch_unit!r}; choose one of {', '.join(BATCH_UNITS)}")
    if batch_unit == "sequences":
        return runs
    if seq_len is not None:
        if not seq_len > 0:
            raise ValueError(f"{WHAT}: seq_len must be positive, got {seq_len!r}")
        length = np.full(len(runs), float(seq_len))
    elif column := next((c for c in SEQ_LEN_COLUMNS if c in runs.columns), None):
        length = pd.to_numeric(runs[column], errors="coerce").to_numpy(dtype=float)
        if not np.all(np.isfinite(length) & (length > 0)):
            raise ValueError(f"{WHAT}: column {column!r} has missing or non-positive values")
    else:
        raise ValueError(f"{WHAT}: B is in tokens per step (as harness.collect writes it) but the law's batch is in "
                         "sequences; Fix: pass --seq-len L (tokens per sequence), add a seq_len column, or give B "
                         "in sequences with --batch-unit sequences")
    return runs.assign(B=pd.to_numeric(runs["B"], errors="coerce").to_numpy(dtype=float) / length)


@dataclass(frozen=True)
class PowerSchedulerResult:
    law: PowerLaw                 # eta_opt / beta = a * n^b  (coefficient a, exponent b)
    free: PowerLaw | None         # eta_opt = c * beta^k * n^m, the check of linearity in beta (k ~ 1)
    cells: pd.DataFrame           # per (N,) B, D cell: lr_opt, best loss, runs
    warnings: tuple[str, ...] = ()

    @property
    def a(self) -> float:
        return self.law.coefficient

    @property
    def b(self) -> float:
        return self.law.exponent

    def optimal_lr(self, batch_sequences: float | np.ndarray, tokens: float | np.ndarray) -> np.ndarray:
        """eta_opt = a * beta * n^b: the best WSD peak LR at this batch (sequences) and token count."""
        return np.asarray(batch_sequences, float) * self.law(np.asarray(tokens, float))

    def schedule_overrides(self) -> list[str]:
        """Run overrides that train with the fitted Power scheduler."""
        return ["schedule=power", f"schedule.power_a={self.a!r}", f"schedule.power_b={self.b!r}"]

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "a": self.a, "b": self.b,
            "a_ci": list(self.law.coefficient_ci) if self.law.coefficient_ci else None,
            "b_ci": list(self.law.exponents_ci[0]) if self.law.exponents_ci else None,
            "formula": f"lr_opt = {self.a:.4g} * beta * n^{self.b:.4g}",
            # The ladder (harness/ladder/rules.py) refuses a JSON that does not say these units.
            "batch_unit": "sequences", "tokens_unit": "tokens",
            "n_cells": len(self.cells), "schedule_overrides": self.schedule_overrides(),
            "warnings": list(self.warnings)}
        if self.free is not None:
            out["free_fit"] = {"coefficient": self.free.coefficient, "exponent_beta": self.free.exponents[0],
                               "exponent_n": self.free.exponents[1]}
        return out


def optimal_lr_cells(runs: pd.DataFrame, cell: list[str]) -> pd.DataFrame:
    """One row per cell: its lr_opt (vertex of loss vs log lr), best loss and number of runs."""
    rows = []
    for key, g in runs.groupby(cell, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(cell, key)), "lr_opt": vertex_in_log(g["lr"].to_numpy(), g["loss"].to_numpy()),
                     "best_lr_swept": float(g.loc[g["loss"].idxmin(), "lr"]), "loss": float(g["loss"].min()),
                     "n_runs": len(g)})
    return pd.DataFrame(rows)


def fit_power_scheduler(runs: pd.DataFrame, batch_unit: str = "tokens", seq_len: int | None = None,
                        n_bootstrap: int = 1000, ci: float = 0.95, seed: int = 0,
                        allow_edge: bool = False) -> PowerSchedulerResult:
    """a and b of eta_opt = a * beta * n^b from a WSD / constant-LR sweep (see the module docstring).

    Columns: D (tokens trained), B (batch; see `batch_unit` / `seq_len`), lr (peak LR), loss; N
    optional (several model sizes are separate cells; the paper finds a, b about the same across
    sizes under muP). Every cell needs >= 3 runs and its best LR strictly inside its swept range
    (`validate_grid`: an error naming the cell, or warnings with `allow_edge`), and the cells must
    span >= 2 token counts.
    """
    require_columns(runs, ["D", "B", "lr", "loss"], WHAT, positive=["D", "B", "lr", "loss"])
    runs = batch_in_sequences(runs, batch_unit, seq_len)
    cell = (["N"] if "N" in runs.columns else []) + ["B", "D"]
    if "N" in runs.columns:
        require_columns(runs, ["N"], WHAT, positive=["N"])
    warnings = validate_grid(runs, cell, ("lr",), WHAT, allow_edge)
    cells = optimal_lr_cells(runs, cell)
    if cells["D"].nunique() < 2:
        raise ValueError(f"{WHAT}: the cells span {cells['D'].nunique()} token count(s); the exponent b needs "
                         "at least 2 (Fix: sweep the LR at 2 or more values of D)")
    beta, n, lr_opt = (cells[c].to_numpy(dtype=float) for c in ("B", "D", "lr_opt"))
    law = fit_power_law({"n": n}, lr_opt / beta, n_bootstrap, ci, seed)
    free = None
    if cells["B"].nunique() >= 2 and len(cells) >= 4:
        try:
            free = fit_power_law({"beta": beta, "n": n}, lr_opt)
        except ValueError:  # batch and tokens vary together: the check is not identifiable
            free = None
    if not law.exponent < 0:
        warnings.append(f"{WHAT}: b = {law.exponent:.3g} >= 0: the best LR does not fall with the tokens, so a "
                        "Power scheduler with it never decays (the ladder refuses it); check the sweep")
    if free is not None and abs(free.exponents[0] - 1.0) > 0.5:
        warnings.append(f"{WHAT}: the free fit gives eta_opt ~ beta^{free.exponents[0]:.3g}, far from the "
                        "law's linear beta; a from eta_opt / beta transfers poorly across batch sizes")
    return PowerSchedulerResult(law=law, free=free, cells=cells, warnings=tuple(warnings))
