"""PNG plots of a fit: observed vs predicted, and relative residuals. Written atomically.

matplotlib is imported by the plotting functions, not by this module: building `Series` (done
while the fit's outputs are computed) must not pay for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from harness.files import save_figure

if TYPE_CHECKING:
    import matplotlib.pyplot as plt


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Series:
    """One curve (or one file of runs): x, observed y (NaN where unobserved), predicted y."""

    name: str
    x: np.ndarray
    y: np.ndarray
    y_pred: np.ndarray
    role: str  # "fit" or "predict"
    lo: np.ndarray | None = None
    hi: np.ndarray | None = None


def _save(fig: plt.Figure, path: Path) -> None:
    save_figure(fig, path)


def _residual_pct(s: Series) -> np.ndarray:
    return 100.0 * (s.y_pred - s.y) / s.y


def plot_curves(series: list[Series], path: Path, *, target: str, law: str) -> None:
    """Loss vs step (points observed, lines predicted) over relative residuals, one colour per curve."""
    fig, (ax, res) = _pyplot().subplots(2, 1, figsize=(9, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, s in enumerate(series):
        color = f"C{i % 10}"
        label = f"{s.name} ({s.role})"
        ok = np.isfinite(s.y)
        ax.plot(s.x[ok], s.y[ok], "o", ms=2.5, color=color, alpha=0.6)
        ax.plot(s.x, s.y_pred, "-" if s.role == "fit" else "--", color=color, lw=1.2, label=label)
        if s.lo is not None and s.hi is not None:
            ax.fill_between(s.x, s.lo, s.hi, color=color, alpha=0.15, lw=0)
        if ok.any():
            res.plot(s.x[ok], _residual_pct(s)[ok], ".", ms=2.5, color=color)
    ax.set_ylabel(target)
    ax.set_title(f"{law}: observed (points) vs predicted (lines; dashed = not fitted)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    res.axhline(0.0, color="k", lw=0.8)
    res.set_xlabel("step")
    res.set_ylabel("pred - obs (%)")
    res.grid(alpha=0.3)
    _save(fig, path)


def plot_scaling(series: list[Series], path: Path, *, target: str, law: str) -> None:
    """Predicted vs observed (parity) and relative residuals vs the first input column."""
    fig, (par, res) = _pyplot().subplots(1, 2, figsize=(11, 4.5))
    lo_all, hi_all = np.inf, -np.inf
    for i, s in enumerate(series):
        ok = np.isfinite(s.y)
        if not ok.any():
            continue
        color = f"C{i % 10}"
        par.plot(s.y[ok], s.y_pred[ok], "o", ms=3, color=color, label=f"{s.name} ({s.role})")
        res.plot(s.x[ok], _residual_pct(s)[ok], "o", ms=3, color=color)
        lo_all = min(lo_all, float(np.min(s.y[ok])), float(np.min(s.y_pred[ok])))
        hi_all = max(hi_all, float(np.max(s.y[ok])), float(np.max(s.y_pred[ok])))
    if np.isfinite(lo_all):
        par.plot([lo_all, hi_all], [lo_all, hi_all], "k-", lw=0.8)
    par.set_xlabel(f"observed {target}")
    par.set_ylabel(f"predicted {target}")
    par.set_title(law)
    par.legend(fontsize=7)
    par.grid(alpha=0.3)
    res.axhline(0.0, color="k", lw=0.8)
    res.set_xscale("log")
    res.set_xlabel("first input column (log)")
    res.set_ylabel("pred - obs (%)")
    res.grid(alpha=0.3)
    _save(fig, path)
