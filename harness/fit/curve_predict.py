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
    peak_lr_band(law_name, curves, level=0.9, *, law=None, fit=None, tolerance=WEAK_FIT_TOLERANCE, seed=0)
        -> PeakLRBand: .limits(curve) -> (pred, lo, hi); the calibrated band, widened for a curve at a
        peak LR the fit curves lack (.widens(curve)); .to_json(widened) records how (params.json "band")

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
truly held-out curves is measured by scripts/validate_curve_laws.py (docs/CURVE_LAWS.md). Both kinds
of refit keep the fit set's peak LR, so at a new peak LR the band is widened by refits over the law's
weakly identified parameter(s) (`PeakLRBand`, section at the end of this module).
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


# ----------------------------------------------------------------------------------------------
# Bands at a peak LR the fit curves do not have (issue 12; docs/CURVE_LAWS.md "Prediction bands")
# ----------------------------------------------------------------------------------------------
#
# `calibrate_band` refits on parts of the fit curves, which all share the fit set's peak LR(s): it
# measures the error of new schedules and horizons, never that of a new peak LR. What curves at one
# peak LR cannot pin down is how the loss moves with the peak LR (for the lr-noise laws mainly the
# clock exponent p: on our proxies the in-sample error moves only 0.73 -> 0.70 % from p = 0.5 to 1).
# A law declares such parameters and a grid for each in its class attribute `weak_at_one_peak_lr`
# ({name: values}). For a predicted curve at a new peak LR the band becomes the envelope, over the
# main fit and every refit with the weak parameter(s) held at a grid point whose in-sample objective
# is within `tolerance` (relative) of the best, of each prediction x (1 +- the calibrated half-width).

# The envelope alone still under-covers (its refits share the law's form, so they share its bias at a
# new peak LR): a law may also declare `peak_lr_distance_width` = kappa, and its half-width at a new peak
# LR grows to half_width + kappa * |ln(peak LR / nearest fitted peak LR)| (`lr_distance`). kappa is
# calibrated per law on our proxy sets (fit at every peak LR, predict the others; the smallest kappa
# whose band covers 90 % of the held-out points, pooled; docs/CURVE_LAWS.md "Band widened with the LR
# distance").

# Predictions within this factor of a fitted peak LR are treated as at it (no widening, no notice).
PEAK_LR_TOLERANCE = 1.1
# Relative objective tolerance of the pinned refits kept in the envelope (chosen on the MPL split and
# the 0.5x direction of our proxies only; docs/CURVE_LAWS.md "Prediction bands").
WEAK_FIT_TOLERANCE = 0.15


def peak_lr(curve: Curve) -> float:
    return float(np.max(curve.lr)) if curve.lr.size else 0.0


def fitted_peak_lrs(curves: Sequence[Curve]) -> list[float]:
    return sorted({peak_lr(c) for c in curves if c.lr.size})


def at_fitted_peak_lr(curve: Curve, fitted: Sequence[float], tolerance: float = PEAK_LR_TOLERANCE) -> bool:
    """True when the curve's peak LR is within `tolerance` (a factor) of one of the `fitted` peak LRs,
    or when there is nothing to compare (no fitted LR, or the curve has no positive LR)."""
    peak = peak_lr(curve)
    return not fitted or peak <= 0 or any(1 / tolerance <= peak / f <= tolerance for f in fitted)


def lr_distance(curve: Curve, fitted: Sequence[float]) -> float:
    """|ln(peak LR / nearest fitted peak LR)|: how far, in log LR, the curve is from the fit set (0 when
    there is nothing to compare)."""
    peak = peak_lr(curve)
    if not fitted or peak <= 0:
        return 0.0
    return float(min(abs(np.log(peak / f)) for f in fitted))


def weak_parameters(law: Law) -> dict[str, tuple[float, ...]]:
    """The law's declared weakly identified parameters at one peak LR ({name: grid}), checked: each
    name is a parameter of the law (`law.params`) or a numeric constant of its formula (a class
    attribute, e.g. `convex-noise-sqrt`'s clock exponent CLOCK_P, which its `prepare` reads)."""
    weak = dict(getattr(law, "weak_at_one_peak_lr", {}) or {})
    bounds = {p.name: (p.lower, p.upper) for p in law.params}
    for name, grid in weak.items():
        if name in bounds:
            lo, hi = bounds[name]
        elif isinstance(getattr(law, name, None), (int, float)):
            lo = hi = float(getattr(law, name))
        else:
            raise ValueError(f"{law.name}: weak_at_one_peak_lr names '{name}', which is neither a parameter "
                             f"({', '.join(bounds)}) nor a numeric constant of the law. Fix: declare one of those")
        free = lo < hi  # a fixed parameter or a constant (lr-noise-sqrt's p) may be varied anywhere
        if not grid or not all(np.isfinite(grid)) or (free and any(not lo <= v <= hi for v in grid)):
            raise ValueError(f"{law.name}: weak_at_one_peak_lr['{name}'] = {tuple(grid)} must be non-empty, "
                             f"finite and inside the parameter's bounds [{lo}, {hi}]")
    return weak


def pinned_law(law: Law, values: Mapping[str, float]) -> Law:
    """A copy of `law` with the named parameters held at `values` (lower == upper == value) and the
    named constants set to them (on the copy only; the class is untouched)."""
    import copy

    out = copy.copy(law)
    names = {p.name for p in law.params}
    out.params = tuple(replace(p, lower=float(values[p.name]), upper=float(values[p.name]),
                               grid=(float(values[p.name]),)) if p.name in values else p for p in law.params)
    for name, value in values.items():
        if name not in names:
            setattr(out, name, float(value))
    return out


def _changes_data(law: Law, values: Mapping[str, float]) -> bool:
    """Whether pinning `values` changes what `prepare` computes (a constant of the formula, not a parameter)."""
    return any(name not in law.param_names for name in values)


@dataclass(frozen=True)
class PinnedFit:
    """A refit with the weak parameter(s) held at one grid point."""

    values: dict[str, float]
    law: Law  # the law with those values pinned (its `prepare` differs when a constant was pinned)
    theta: np.ndarray
    objective: float  # the fitter's objective on the same observed loss (comparable with the main fit's)


@dataclass
class PeakLRBand:
    """The --band of a fitted law: prediction x (1 +- half_width) at a fitted peak LR; at a new peak LR
    the envelope of the main fit's and the kept pinned refits' bands (section comment above).

    Build it with `peak_lr_band`; `limits(curve)` gives (pred, lo, hi) for any curve. The pinned refits
    are computed on the first curve that needs them, so a band used only at the fitted peak LR costs
    what `calibrate_band` costs."""

    law: Law
    theta: np.ndarray  # the main fit
    objective: float  # its objective
    half_width: float  # calibrated at the fitted peak LR(s) (`calibrate_band`)
    level: float
    fit_set: list[Curve]
    weak: dict[str, tuple[float, ...]]
    tolerance: float = WEAK_FIT_TOLERANCE
    seed: int = 0
    pinned: list[PinnedFit] | None = None  # None until a curve at a new peak LR asks for them
    distance_width: float = 0.0  # kappa: extra relative half-width per unit |ln(peak LR ratio)| (above)

    @property
    def fitted_peak_lrs(self) -> list[float]:
        return fitted_peak_lrs(self.fit_set)

    def widens(self, curve: Curve) -> bool:
        """Whether `curve` gets the widened band: the law declares a weak parameter and the curve's
        peak LR is not one the fit set has."""
        return bool(self.weak) and not at_fitted_peak_lr(curve, self.fitted_peak_lrs)

    def pinned_fits(self) -> list[PinnedFit]:
        if self.pinned is None:
            self.pinned = pinned_fits(self.law, self.fit_set, self.seed, near=self.theta)
        return self.pinned

    def kept(self) -> list[PinnedFit]:
        """Pinned refits whose objective is within `tolerance` (relative) of the best of all fits."""
        fits = self.pinned_fits()
        best = min([self.objective] + [f.objective for f in fits])
        return [f for f in fits if f.objective <= best * (1 + self.tolerance)]

    def predictions(self, curve: Curve) -> np.ndarray:
        """(1 + kept, n): the main fit's prediction, then each kept pinned refit's."""
        data = self.law.prepare([curve])
        preds = [np.asarray(self.law.predict(self.theta, data), dtype=float)]
        with np.errstate(all="ignore"):
            for f in self.kept():
                own = f.law.prepare([curve]) if _changes_data(self.law, f.values) else data
                preds.append(np.asarray(f.law.predict(f.theta, own), dtype=float))
        return np.stack(preds)

    def half_width_at(self, curve: Curve) -> float:
        """The relative half-width around the envelope for this curve: the calibrated one, plus kappa per
        unit of log-LR distance at a new peak LR."""
        if not self.widens(curve):
            return self.half_width
        return self.half_width + self.distance_width * lr_distance(curve, self.fitted_peak_lrs)

    def limits(self, curve: Curve) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(prediction, band lo, band hi) at the curve's evaluated rows."""
        if not self.widens(curve):
            pred = np.asarray(self.law.predict(self.theta, self.law.prepare([curve])), dtype=float)
            return pred, pred * (1 - self.half_width), pred * (1 + self.half_width)
        preds, half = self.predictions(curve), self.half_width_at(curve)
        return preds[0], preds.min(axis=0) * (1 - half), preds.max(axis=0) * (1 + half)

    def to_json(self, widened: Sequence[str] = ()) -> dict[str, Any]:
        out: dict[str, Any] = {
            "level": self.level, "half_width": self.half_width,
            "calibration": "leave-one-curve-out and forward-in-time refits on the fit curves",
            "fitted_peak_lrs": self.fitted_peak_lrs, "peak_lr_tolerance": PEAK_LR_TOLERANCE,
            "weak_at_one_peak_lr": {k: list(v) for k, v in self.weak.items()},
            "widened": list(widened),
        }
        if not self.weak:
            out["widening"] = "none: the law declares no weakly identified parameter (weak_at_one_peak_lr)"
        elif self.pinned is None:
            out["widening"] = "none needed: every curve is at a fitted peak LR"
        else:
            kept = [id(f) for f in self.kept()]
            out["widening"] = ("curves at a peak LR no fit curve has: envelope of the main fit and the pinned "
                               "refits within objective_tolerance of the best, each x (1 +- (half_width + "
                               "distance_width * |ln(peak LR / nearest fitted peak LR)|))")
            out["distance_width"] = self.distance_width
            out["objective_tolerance"] = self.tolerance
            out["main_objective"] = self.objective
            out["pinned_fits"] = [{"values": f.values, "objective": f.objective, "kept": id(f) in kept,
                                   "params": f.law.as_dict(f.theta)} for f in self.pinned]
        return out


def pinned_fits(law: Law, curves: Sequence[Curve], seed: int = 0,
                near: np.ndarray | None = None) -> list[PinnedFit]:
    """Refit `law` on `curves` with its weak parameter(s) held at every point of their grid (product
    of grids).

    Starts: the law's own (computed once when only parameters are pinned, clipped to each pinned
    value by the fitter; per grid point when a constant changes the prepared data), plus warm
    starts: `near` (the main fit) and the previous grid point's fit, each with the pinned values
    substituted. Without them a pinned value far from the law's own starts can land in a poor local
    optimum (lr-noise-sqrt at p = 0.25 on our proxies: 6x the best objective)."""
    from itertools import product

    weak = weak_parameters(law)
    y = observed_loss(curves)
    names = law.param_names
    base_data = law.prepare(list(curves))
    base_starts = None
    out: list[PinnedFit] = []
    for combo in product(*weak.values()):
        values = dict(zip(weak, map(float, combo)))
        pinned = pinned_law(law, values)
        if _changes_data(law, values):
            data = pinned.prepare(list(curves))
            own = np.atleast_2d(np.asarray(pinned.starts(data, y), dtype=float))
        else:
            data = base_data
            if base_starts is None:
                base_starts = np.atleast_2d(np.asarray(law.starts(data, y), dtype=float))
            own = base_starts
        warm = [t for t in ([near] if near is not None else []) + ([out[-1].theta] if out else [])]
        warm = [np.array([values.get(n, v) for n, v in zip(names, t)]) for t in warm]
        try:
            fit = fit_law(pinned, data, y, seed=seed, starts=np.vstack([own] + [w[None] for w in warm]),
                          n_refine=max(law.n_refine, 1) + len(warm))
        except RuntimeError:
            continue  # no finite start at this grid point: it cannot be in the envelope
        out.append(PinnedFit(values=values, law=pinned, theta=np.asarray(fit.theta, dtype=float),
                             objective=float(fit.objective)))
    return out


def peak_lr_band(law_name: str, curves: Sequence[Curve], level: float = 0.9, *,
                 law: Law | None = None, fit: FitResult | None = None,
                 tolerance: float = WEAK_FIT_TOLERANCE, seed: int = 0,
                 errors: np.ndarray | None = None) -> PeakLRBand:
    """The calibrated `level` band of `law_name` fitted on `curves` (pass `law`, `fit` to reuse a fit,
    `errors` to reuse `validation_errors`), widened at new peak LRs."""
    half = calibrate_band(law_name, curves, level, errors=errors)
    if law is None or fit is None:
        law, fit = fit_curves(law_name, curves, seed=seed)
    return PeakLRBand(law=law, theta=np.asarray(fit.theta, dtype=float), objective=float(fit.objective),
                      half_width=half, level=level, fit_set=list(curves), weak=weak_parameters(law),
                      tolerance=tolerance, seed=seed, distance_width=declared_distance_width(law))


def declared_distance_width(law: Law) -> float:
    """The law's declared `peak_lr_distance_width` (0 when it declares none), checked."""
    kappa = float(getattr(law, "peak_lr_distance_width", 0.0) or 0.0)
    if not (np.isfinite(kappa) and kappa >= 0):
        raise ValueError(f"{law.name}: peak_lr_distance_width must be a finite number >= 0, got {kappa}")
    return kappa
