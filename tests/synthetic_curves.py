"""Curves made by a known curve law under three schedules at one peak LR, for fit-and-transfer tests."""

from __future__ import annotations

import numpy as np

from harness.fit.curve_predict import lr_from_schedule
from harness.fit.io import Curve

SCHEDULES = {
    "constant": {"name": "constant", "warmup_steps": 40},
    "cosine": {"name": "cosine", "warmup_steps": 40, "min_lr_ratio": 0.0},
    "wsd": {"name": "wsd", "warmup_steps": 40, "decay_fraction": 0.2, "cooldown": "linear", "min_lr_ratio": 0.0},
}


def synthetic_curves(law, theta: np.ndarray, peak: float, steps: int = 800, first: int = 10,
                     every: int = 10) -> list[Curve]:
    """One curve per schedule: `law`'s loss at steps first, first + every, ... (NaN elsewhere), named
    `<schedule>_<peak>`. The law is evaluated on the full schedule so every step's LR enters its sums."""
    out = []
    for name, cfg in SCHEDULES.items():
        lr = lr_from_schedule(cfg, steps, peak)
        full = Curve(name=name, path=name, step=np.arange(1, steps + 1), lr=lr, loss=np.zeros(steps))
        full.max_points = steps
        loss = np.full(steps, np.nan)
        loss[first - 1::every] = np.asarray(law.predict(theta, law.prepare([full])))[first - 1::every]
        out.append(Curve(name=f"{name}_{peak:g}", path=name, step=np.arange(1, steps + 1), lr=lr, loss=loss))
    return out
