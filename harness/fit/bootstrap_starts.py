"""Bootstrap a scaling law over cells, each refit started from several points.

`harness.fit.fitter.bootstrap` refits every resample from the full-data optimum only: a resample
whose optimum lies in another basin (common for laws with flat directions, e.g. Chinchilla's A-B
trade-off) is then stuck next to the full-data fit, and the interval is too narrow. Here each
refit starts from the full-data optimum *and* the next best distinct starts of the law's own grid
(scored on the full data), keeping the best of them.

Resampling unit: cells -- runs sharing (N, D), e.g. seeds or lr/batch variants of one size and
length -- are drawn whole, since their losses are not independent; a table with one run per cell
resamples runs. Used by `python -m harness.fit scaling --bootstrap N` (harness/fit/law_fit.py).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from harness.fit.fitter import BootstrapResult, FitResult, fit_law, score_starts
from harness.fit.laws.base import Law

# The full-data optimum plus this many of the grid's best distinct starts.
EXTRA_STARTS = 3


def cell_labels(table: pd.DataFrame, columns: tuple[str, ...] = ("N", "D")) -> np.ndarray | None:
    """One label per row for its (N, D) cell, or None when every cell holds one run (or the
    columns are absent): then the bootstrap resamples runs."""
    if not all(c in table.columns for c in columns):
        return None
    labels = table.groupby(list(columns), sort=False).ngroup().to_numpy()
    return labels if np.unique(labels).size < len(labels) else None


def bootstrap_starts(law: Law, data: Mapping[str, Any], y: np.ndarray, fit: FitResult,
                     extra: int = EXTRA_STARTS, huber_delta: float = 1e-3) -> np.ndarray:
    """(1 + extra, P): the full-data optimum, then the best distinct grid starts."""
    y = np.asarray(y, dtype=float)
    grid = np.atleast_2d(law.starts(data, y))
    scores = score_starts(law, grid, data, np.log(y), np.ones_like(y), huber_delta)
    picked = [np.asarray(fit.theta, dtype=float)]
    for i in np.argsort(scores, kind="stable"):
        if len(picked) > extra or not np.isfinite(scores[i]):
            break
        if not any(np.allclose(grid[i], p, rtol=1e-9, atol=0) for p in picked):
            picked.append(grid[i])
    return np.array(picked)


def bootstrap_cells(law: Law, data: Mapping[str, Any], y: np.ndarray, fit: FitResult, *,
                    groups: np.ndarray | None = None, n_boot: int = 200, seed: int = 0, level: float = 0.95,
                    huber_delta: float = 1e-3, extra_starts: int = EXTRA_STARTS) -> BootstrapResult:
    """Percentile bootstrap over `groups` (cells; None: points), multi-start refits (module doc)."""
    y = np.asarray(y, dtype=float)
    starts = bootstrap_starts(law, data, y, fit, extra_starts, huber_delta)
    rng = np.random.default_rng(seed)
    if groups is None:
        inverse, n_groups = np.arange(y.size), y.size
    else:
        _, inverse = np.unique(np.asarray(groups).ravel(), return_inverse=True)
        n_groups = int(inverse.max()) + 1
    thetas = np.empty((n_boot, len(law.params)))
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        refit = fit_law(law, data, y, weights=counts[inverse].astype(float), starts=starts,
                        n_refine=len(starts), huber_delta=huber_delta, seed=seed + b, maxiter=500)
        thetas[b] = refit.theta
    q = 100 * (1 - level) / 2
    lo, hi = np.nanpercentile(thetas, q, axis=0), np.nanpercentile(thetas, 100 - q, axis=0)
    return BootstrapResult(param_names=law.param_names, thetas=thetas, level=level,
                           param_intervals={n: (float(a), float(c)) for n, a, c in zip(law.param_names, lo, hi)},
                           pred_intervals={}, unit="points" if groups is None else "groups")
