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


def write_csvs(curves: list[Curve], folder) -> list[str]:
    """Each curve as `<folder>/<name>.csv` (step,lr,loss), for CLI tests; returns the paths."""
    from harness.fit.io import curve_to_csv

    paths = []
    for c in curves:
        path = folder / f"{c.name}.csv"
        path.write_text(curve_to_csv(c))
        paths.append(str(path))
    return paths


def assert_recovers_and_transfers(law, truth: np.ndarray, fit_peak: float = 2e-3,
                                  other_peaks: tuple[float, ...] = (1e-3, 6e-3)) -> None:
    """`law` fitted on its own curves at `fit_peak` converges to `truth` and predicts its curves at the
    other peak LRs exactly (PredE < 1e-4)."""
    from harness.fit.fitter import fit_law, metrics

    fit_set = synthetic_curves(law, truth, fit_peak, first=50)
    fit = fit_law(law, law.prepare(fit_set), np.concatenate([c.loss[c.eval_index()] for c in fit_set]))
    assert fit.converged
    np.testing.assert_allclose(fit.theta, truth, rtol=5e-3)
    for peak in other_peaks:
        for c in synthetic_curves(law, truth, peak, first=50):
            obs = c.loss[c.eval_index()]
            assert metrics(obs, np.asarray(law.predict(fit.theta, law.prepare([c]))))["prede"] < 1e-4, c.name
