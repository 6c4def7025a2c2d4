"""Plot a run's curve: train and val loss against steps (log x), LR on a second axis."""

from __future__ import annotations

from pathlib import Path

from harness.files import save_figure
from harness.tracking.curve import read_curve


def plot_curve(curve_file: Path, out_png: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_curve(curve_file)
    if not rows:
        raise ValueError(f"{curve_file} has no rows to plot")
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    ax.plot(steps, [float(r["loss"]) for r in rows], lw=0.8, alpha=0.7, label="train loss")
    val = [(r["step"], float(r["val_loss"])) for r in rows if "val_loss" in r]
    if val:
        ax.plot(*zip(*val), "o-", ms=3, lw=1.2, label="val loss")
    ax.set_xscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats/token)")
    ax.grid(alpha=0.3, which="both")
    lr_ax = ax.twinx()
    lr_ax.plot(steps, [r["lr"] for r in rows], color="gray", lw=0.8, ls="--", label="lr")
    lr_ax.set_ylabel("learning rate")
    handles = ax.get_legend_handles_labels()[0] + lr_ax.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper right")
    ax.set_title(title or str(curve_file.parent.name))
    fig.tight_layout()
    return save_figure(fig, out_png, dpi=100, tight=False)
