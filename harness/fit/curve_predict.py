"""Predict loss curves of schedules that were never trained, with calibrated prediction bands.

The small API other parts of the harness (experiment kinds, the CLI's `--predict-schedule`) call:

    lr_from_schedule(schedule_cfg, steps, peak_lr) -> (steps,) LR of steps 1..steps
        schedule_cfg: a harness.schedules.ScheduleConfig or a mapping {"name": ..., fields...};
        built by harness.schedules itself (the trainer's code), never re-implemented here.
    read_schedule_spec(path) -> ScheduleSpec          a YAML / JSON schedule file (format below)
    schedule_curve(spec) -> Curve                     steps 1..T, its LR, no observed loss
    fit_curves(law_name, curves) -> (law, FitResult)
    predict_curve(law, fit, lr_per_step, band=None) -> CurvePrediction (step, lr, loss, lo, hi)
    calibrate_band(law, curves, level=0.9) -> float   relative half-width of a prediction band

Schedule file: any registered schedule (harness/schedules.py) with its fields, plus the horizon
`steps` and the peak LR `peak_lr` (or `lr`), e.g.

    name: wsd
    steps: 2400
    peak_lr: 3.0e-3
    warmup_steps: 100
    decay_fraction: 0.2
    cooldown: sqrt

Prediction band. A law's parameter bootstrap says nothing about how wrong the law's *shape* is on
a schedule it has not seen, which dominates transfer error. `calibrate_band` measures that on the
fit curves alone: (a) leave one fit curve out, refit on the others and predict it (a new schedule);
(b) fit on the first 60% of every fit curve's steps and predict the rest (a longer horizon). The
band's relative half-width is the `level` quantile of |relative error| over both. Its coverage of
truly held-out curves is measured by scripts/validate_curve_laws.py (docs/CURVE_LAWS.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.fitter import FitResult, fit_law
from harness.fit.io import Curve, InputError
from harness.fit.laws.base import Law

# Keys of a schedule file that are not schedule fields.
_RUN_KEYS = ("steps", "peak_lr", "lr")
# Forward-in-time validation: fit on this fraction of each fit curve's steps, predict the rest.
FORWARD_FRACTION = 0.6


@dataclass(frozen=True)
class ScheduleSpec:
    """A schedule to predict: the schedule config's fields, its horizon and its peak LR."""

    label: str
    path: str
    schedule: dict[str, Any]
    steps: int
    peak_lr: float


@dataclass
class CurvePrediction:
    step: np.ndarray  # (n,) optimizer steps (1-based) the prediction is at
    lr: np.ndarray  # (n,) the LR at those steps
    loss: np.ndarray  # (n,) predicted loss
    lo: np.ndarray | None = None  # (n,) band, when one was asked for
    hi: np.ndarray | None = None


def lr_from_schedule(schedule_cfg: Any, steps: int, peak_lr: float, *, batch_size: int = 1,
                     tokens_per_step: int = 1) -> np.ndarray:
    """LR of optimizer steps 1..steps, computed by the trainer's own schedule code."""
    from harness.schedules import ScheduleConfig, SCHEDULES, build_schedule

    if not isinstance(schedule_cfg, ScheduleConfig):
        fields = dict(schedule_cfg)
        name = fields.pop("name", None)
        if name is None:
            raise ValueError("schedule: no 'name' (one of " + ", ".join(SCHEDULES.names()) + ")")
        schedule_cfg = SCHEDULES.create(str(name), **fields)
    schedule = build_schedule(schedule_cfg, total_steps=int(steps), peak_lr=float(peak_lr),
                              batch_size=batch_size, tokens_per_step=tokens_per_step)
    return np.array([schedule.lr(t) for t in range(1, int(steps) + 1)], dtype=float)


def read_schedule_spec(path: Path | str) -> ScheduleSpec:
    """A schedule file (.yaml / .yml / .json); errors name the file and the fix."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found. Fix: check the path.")
    text = path.read_text()
    try:
        if path.suffix == ".json":
            raw = json.loads(text)
        else:
            import yaml

            raw = yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error becomes an input error naming the file
        raise InputError(f"{path}: cannot parse ({e}). Fix: write a YAML or JSON mapping.") from None
    if not isinstance(raw, Mapping):
        raise InputError(f"{path}: expected a mapping of schedule fields. Fix: e.g. "
                         "'name: cosine\\nsteps: 1000\\npeak_lr: 3e-3'.")
    fields = dict(raw)
    if "steps" not in fields:
        raise InputError(f"{path}: no 'steps'. Fix: give the horizon, e.g. 'steps: 1000'.")
    if "peak_lr" in fields and "lr" in fields:
        raise InputError(f"{path}: both 'peak_lr' and 'lr'. Fix: keep one.")
    peak = fields.get("peak_lr", fields.get("lr"))
    if peak is None:
        raise InputError(f"{path}: no 'peak_lr' (or 'lr'). Fix: give the peak LR, e.g. 'peak_lr: 3e-3'.")
    try:
        steps, peak = int(fields["steps"]), float(peak)
    except (TypeError, ValueError):
        raise InputError(f"{path}: 'steps' must be an integer and 'peak_lr' a number.") from None
    if steps < 1 or not peak > 0:
        raise InputError(f"{path}: 'steps' must be >= 1 and 'peak_lr' > 0 (got {steps}, {peak}).")
    schedule = {k: v for k, v in fields.items() if k not in _RUN_KEYS}
    spec = ScheduleSpec(label=path.stem, path=str(path), schedule=schedule, steps=steps, peak_lr=peak)
    schedule_curve(spec)  # validate the schedule fields now, so the error names this file
    return spec


def schedule_curve(spec: ScheduleSpec, max_points: int = 1000) -> Curve:
    """The spec as a curve with no observed loss (steps 1..T)."""
    from harness.checks import ConfigError

    try:
        lr = lr_from_schedule(spec.schedule, spec.steps, spec.peak_lr)
    except (ConfigError, ValueError, TypeError) as e:
        raise InputError(f"{spec.path}: {e}. Fix: use the schedule's fields as in conf/schedule/*.yaml.") from None
    return Curve(name=spec.label, path=spec.path, step=np.arange(1, spec.steps + 1), lr=lr,
                 loss=np.full(spec.steps, np.nan), max_points=max_points)


def observed_loss(curves: Sequence[Curve]) -> np.ndarray:
    return np.concatenate([c.loss[c.eval_index()] for c in curves])


def fit_curves(law: Law | str, curves: Sequence[Curve], **fit_kwargs: Any) -> tuple[Law, FitResult]:
    """Fit a law (instance or registry name) to curves with observed loss."""
    if isinstance(law, str):
        from harness.fit.registry import CURVE_LAWS

        law = CURVE_LAWS[law]()
    return law, fit_law(law, law.prepare(list(curves)), observed_loss(curves), **fit_kwargs)


def predict_curve(law: Law, fit: FitResult | np.ndarray, lr_per_step: np.ndarray | Curve, *,
                  band: float | None = None, max_points: int = 1000) -> CurvePrediction:
    """Predicted loss for a per-step LR (steps 1..T) or a Curve, at most `max_points` rows (the
    last step always included); with `band` (a relative half-width from `calibrate_band`), lo/hi."""
    if isinstance(lr_per_step, Curve):
        curve = lr_per_step
    else:
        lr = np.asarray(lr_per_step, dtype=float)
        curve = Curve(name="schedule", path="", step=np.arange(1, lr.size + 1), lr=lr,
                      loss=np.full(lr.size, np.nan), max_points=max_points)
    theta = fit.theta if isinstance(fit, FitResult) else np.asarray(fit, dtype=float)
    idx = curve.eval_index()
    loss = np.asarray(law.predict(theta, law.prepare([curve])), dtype=float)
    out = CurvePrediction(step=curve.step[idx], lr=curve.lr[idx], loss=loss)
    if band is not None:
        out.lo, out.hi = loss * (1.0 - band), loss * (1.0 + band)
    return out


def _truncated(curve: Curve, last_step: int) -> Curve:
    """The curve with its loss hidden after `last_step` (the LR stays: laws need the schedule)."""
    loss = np.where(curve.step <= last_step, curve.loss, np.nan)
    return replace(curve, loss=loss)


def _future(curve: Curve, last_step: int) -> Curve:
    return replace(curve, loss=np.where(curve.step > last_step, curve.loss, np.nan))


def validation_errors(law_name: str, curves: Sequence[Curve]) -> np.ndarray:
    """|relative error| of refits that only see part of the fit curves (module docstring)."""
    errors: list[np.ndarray] = []
    curves = list(curves)
    folds: list[tuple[list[Curve], list[Curve]]] = []
    if len(curves) > 1:
        folds += [([c for j, c in enumerate(curves) if j != i], [curves[i]]) for i in range(len(curves))]
    cut = [int(c.step[np.flatnonzero(c.observed)[0]] + FORWARD_FRACTION *
               (c.step[np.flatnonzero(c.observed)[-1]] - c.step[np.flatnonzero(c.observed)[0]])) for c in curves]
    past = [_truncated(c, k) for c, k in zip(curves, cut)]
    future = [_future(c, k) for c, k in zip(curves, cut)]
    if all(c.n_observed > 0 for c in past):
        folds.append((past, [f for f in future if f.n_observed > 0]))
    for fit_set, targets in folds:
        try:
            law, fit = fit_curves(law_name, fit_set)
        except RuntimeError:
            continue
        for t in targets:
            y = t.loss[t.eval_index()]
            pred = np.asarray(law.predict(fit.theta, law.prepare([t])), dtype=float)
            errors.append(np.abs(pred - y) / y)
    return np.concatenate(errors) if errors else np.array([])


def calibrate_band(law_name: str, curves: Sequence[Curve], level: float = 0.9,
                   errors: np.ndarray | None = None) -> float:
    """Relative half-width of the `level` prediction band, from `validation_errors` (or the
    `errors` it returned, to reuse them)."""
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    err = validation_errors(law_name, curves) if errors is None else np.asarray(errors)
    if err.size == 0:
        raise RuntimeError(f"{law_name}: no validation fold could be fitted; cannot calibrate a band")
    return float(np.quantile(err, level))
