"""Fit any `Law` (harness/fit/laws/base.py) by robust multi-start L-BFGS-B; score and bootstrap it.

Signatures (stable; other modules call exactly these):

    fit_law(law, data, y, *, huber_delta=1e-3, seed=0, n_refine=None (law.n_refine, default 4), n_jitter=0, weights=None,
            starts=None, maxiter=1000) -> FitResult
        data = law.prepare(table); y = observed target (n,), all > 0.
        FitResult: .law (name), .theta (P,), .params {name: value}, .derived {name: value},
        .objective (sum of Huber_delta(log y - log yhat), weighted), .n, .converged, .metrics,
        .n_starts, .wall_s, .to_json().

    metrics(y, y_pred) -> {"r2", "mae", "rmse", "prede", "worste", "n"}
        prede / worste are the mean / max of |yhat - y| / y, as fractions (0.0011 = 0.11%).

    bootstrap(law, data, y, *, groups=None, n_boot=200, seed=0, fit=None, targets=None,
              level=0.95, huber_delta=1e-3, weights=None) -> BootstrapResult
        Resamples groups (runs / curves: one label per point) or, with groups=None, points, and
        refits each resample from the full-data best (cheap). Resampling is done through
        per-point weights (a point drawn k times gets weight k), so no law needs to know how to
        subset its data. BootstrapResult: .thetas (B, P), .param_intervals {name: (lo, hi)},
        .pred_intervals {target name: (lo (n,), hi (n,))} for `targets` {name: prepared data},
        and .predict_interval(law, data) for any other data.

Objective: sum_i w_i * Huber_delta(log y_i - log yhat_i), delta = 1e-3 by default (Hoffmann et
al. 2022; Tissue et al. 2024; Luo et al. 2025). Non-finite or non-positive predictions score +inf.

Procedure: (1) score every start from `law.starts(data, y)` in a few vectorized `predict` calls;
(2) run L-BFGS-B from the `n_refine` best distinct starts (none when n_refine = 0: a law whose
`starts` already returns a fitted point, such as `mpl-recipe`, is taken as is) (plus `n_jitter` random log-normal
perturbations of the best one, drawn from `seed`); (3) keep the lowest objective. `converged` is
True only when that refinement met L-BFGS-B's stopping rule; a law fitted in its own `starts`
(n_refine = 0, `mpl-recipe`, early-stopped by design) reports False. L-BFGS-B runs
in a rescaled space (each parameter divided by the magnitude of its start) on the objective
divided by delta**2, because the raw objective is ~1e-6 per point and scipy's stopping rule
compares changes against max(|f|, 1): unscaled, it stops long before the optimum.
Gradients are analytic when the law provides `jacobian`, otherwise central differences batched
into one vectorized `predict` call.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from scipy.optimize import minimize

from harness.fit.laws.base import Law

# A finite stand-in for +inf handed to L-BFGS-B, whose line search cannot handle inf.
_BAD = 1e30
# Evaluate at most this many (start x point) predictions per vectorized call.
_SCORE_CHUNK = 2_000_000


# ----------------------------------------------------------------------------------------------
# Metrics and the objective
# ----------------------------------------------------------------------------------------------


def metrics(y: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """R², MAE, RMSE, PredE (mean |relative error|), WorstE (max |relative error|), n."""
    y = np.asarray(y, dtype=float)
    y_pred = np.asarray(y_pred, dtype=float)
    if y.shape != y_pred.shape:
        raise ValueError(f"metrics: shapes differ: y {y.shape} vs y_pred {y_pred.shape}")
    n = int(y.size)
    if n == 0:
        return {"r2": float("nan"), "mae": float("nan"), "rmse": float("nan"),
                "prede": float("nan"), "worste": float("nan"), "n": 0}
    err = y_pred - y
    ss_res = float(np.sum(err**2))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    rel = np.abs(err) / np.abs(y)
    return {
        "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else float("nan"),
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(ss_res / n)),
        "prede": float(np.mean(rel)),
        "worste": float(np.max(rel)),
        "n": n,
    }


def huber(r: np.ndarray, delta: float) -> np.ndarray:
    """Huber_delta(r): r²/2 inside [-delta, delta], linear outside (same as scipy.special.huber)."""
    a = np.abs(r)
    return np.where(a <= delta, 0.5 * r * r, delta * (a - 0.5 * delta))


def huber_objective(y_pred: np.ndarray, log_y: np.ndarray, w: np.ndarray, delta: float) -> np.ndarray:
    """Weighted Huber objective on log residuals; y_pred (n,) or (S, n) -> scalar or (S,)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        r = log_y - np.log(y_pred)
        obj = np.sum(w * huber(r, delta), axis=-1)
        bad = ~np.all(np.isfinite(y_pred) & (y_pred > 0), axis=-1)
    return np.where(bad | ~np.isfinite(obj), np.inf, obj)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    law: str
    theta: np.ndarray
    params: dict[str, float]
    objective: float
    n: int
    converged: bool
    metrics: dict[str, float]
    derived: dict[str, float] = field(default_factory=dict)
    n_starts: int = 0
    wall_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "law": self.law,
            "params": self.params,
            "derived": self.derived,
            "objective": self.objective,
            "n": self.n,
            "converged": self.converged,
            "metrics": self.metrics,
            "n_starts": self.n_starts,
            "wall_s": self.wall_s,
        }


# ----------------------------------------------------------------------------------------------
# Fitting
# ----------------------------------------------------------------------------------------------


def _check_inputs(law: Law, y: np.ndarray, weights: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    if y.size == 0:
        raise ValueError(f"{law.name}: nothing to fit (no observed points)")
    if not np.all(np.isfinite(y)) or np.any(y <= 0):
        raise ValueError(f"{law.name}: observed values must be finite and > 0 (log residuals)")
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=float).ravel()
    if w.shape != y.shape or np.any(w < 0) or not np.all(np.isfinite(w)):
        raise ValueError(f"{law.name}: weights must be finite, >= 0 and one per point")
    return y, w


def _clip_to_bounds(law: Law, theta: np.ndarray) -> np.ndarray:
    lo = np.array([b[0] for b in law.bounds])
    hi = np.array([b[1] for b in law.bounds])
    return np.clip(theta, lo, hi)


def score_starts(law: Law, starts: np.ndarray, data: Mapping[str, Any], log_y: np.ndarray,
                 w: np.ndarray, delta: float) -> np.ndarray:
    """Objective for every start, shape (S,), in a few vectorized predict calls."""
    starts = np.atleast_2d(starts)
    chunk = max(1, _SCORE_CHUNK // max(log_y.size, 1))
    out = np.empty(len(starts))
    for i in range(0, len(starts), chunk):
        with np.errstate(all="ignore"):
            pred = np.asarray(law.predict(starts[i:i + chunk], data), dtype=float)
        out[i:i + chunk] = huber_objective(pred.reshape(-1, log_y.size), log_y, w, delta)
    return out


def _fd_jacobian(law: Law, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """Central differences (one-sided at a bound), all 2P+1 evaluations in one predict call."""
    p = theta.size
    lo = np.array([b[0] for b in law.bounds])
    hi = np.array([b[1] for b in law.bounds])
    h = 6e-6 * np.maximum(np.abs(theta), 1e-3)  # ~eps^(1/3), relative
    up = np.minimum(theta + h, hi)
    dn = np.maximum(theta - h, lo)
    thetas = np.repeat(theta[None, :], 2 * p + 1, axis=0)
    thetas[1 + np.arange(p), np.arange(p)] = up
    thetas[1 + p + np.arange(p), np.arange(p)] = dn
    with np.errstate(all="ignore"):
        preds = np.asarray(law.predict(thetas, data), dtype=float)
    step = (up - dn)
    step = np.where(step > 0, step, 1.0)
    jac = (preds[1:p + 1] - preds[p + 1:]) / step[:, None]
    return preds[0], jac.T


def _refine(law: Law, theta0: np.ndarray, data: Mapping[str, Any], log_y: np.ndarray, w: np.ndarray,
            delta: float, maxiter: int) -> tuple[np.ndarray, float, bool]:
    """L-BFGS-B from theta0 in a rescaled space; returns (theta, raw objective, converged).

    L-BFGS-B's first step has unit length in the rescaled space (~100% of each parameter). When that
    step lands where the law is invalid (a non-positive prediction: the _BAD value) the line search
    can give up at theta0 and report "CONVERGENCE: REL_REDUCTION_OF_F" without having moved. Such a
    run is retried with variables 100x finer (a first step of ~1%), and a run that still has not
    moved counts as converged only when its projected gradient is negligible."""
    for fine in (1.0, 0.01):
        theta, obj, converged, moved = _refine_once(law, theta0, data, log_y, w, delta, maxiter, fine)
        if moved or converged:
            break
    return theta, obj, converged


def _refine_once(law: Law, theta0: np.ndarray, data: Mapping[str, Any], log_y: np.ndarray, w: np.ndarray,
                 delta: float, maxiter: int, fine: float) -> tuple[np.ndarray, float, bool, bool]:
    scale = fine * np.where(np.abs(theta0) > 0, np.abs(theta0), 1.0)
    inv_d2 = 1.0 / delta**2
    bounds = [(lo / s if np.isfinite(lo) else None, hi / s if np.isfinite(hi) else None)
              for (lo, hi), s in zip(law.bounds, scale)]

    def fun(z: np.ndarray) -> tuple[float, np.ndarray]:
        theta = z * scale
        with np.errstate(all="ignore"):
            jac_out = law.jacobian(theta, data)
            pred, jac = jac_out if jac_out is not None else _fd_jacobian(law, theta, data)
            if not (np.all(np.isfinite(pred)) and np.all(pred > 0)):
                return _BAD, np.zeros_like(z)
            r = log_y - np.log(pred)
            f = float(np.sum(w * huber(r, delta))) * inv_d2
            psi = np.clip(r, -delta, delta)  # Huber'(r)
            grad = -(w * psi / pred) @ jac * inv_d2 * scale
        return f, np.nan_to_num(grad, nan=0.0, posinf=0.0, neginf=0.0)

    res = minimize(fun, theta0 / scale, jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": maxiter, "maxfun": 4 * maxiter, "ftol": 1e-13, "gtol": 1e-9})
    theta = _clip_to_bounds(law, res.x * scale)
    moved = not np.array_equal(res.x, theta0 / scale)
    # L-BFGS-B often ends "ABNORMAL" (line search at machine precision) exactly at the optimum;
    # call that converged when the projected gradient is negligible relative to the objective. A
    # "success" that never left the start is only trusted on the same terms (see _refine).
    converged = (bool(res.success) and moved) or _projected_grad_small(res, bounds)
    return theta, float(res.fun) / inv_d2, converged, moved


def _projected_grad_small(res: Any, bounds: list[tuple[float | None, float | None]]) -> bool:
    g = np.asarray(res.jac, dtype=float).copy()
    for j, (lo, hi) in enumerate(bounds):
        at_lo = lo is not None and res.x[j] <= lo + 1e-12 * max(1.0, abs(lo)) and g[j] > 0
        at_hi = hi is not None and res.x[j] >= hi - 1e-12 * max(1.0, abs(hi)) and g[j] < 0
        if at_lo or at_hi:
            g[j] = 0.0
    return bool(np.isfinite(res.fun) and res.fun < _BAD and np.max(np.abs(g)) <= 1e-4 * max(1.0, abs(res.fun)))


def _pick_starts(law: Law, starts: np.ndarray, scores: np.ndarray, n_refine: int, n_jitter: int,
                 seed: int) -> np.ndarray:
    order = np.argsort(scores, kind="stable")
    finite = order[np.isfinite(scores[order])]
    if finite.size == 0:
        raise RuntimeError(f"{law.name}: every start gives a non-finite or non-positive prediction")
    picked: list[np.ndarray] = []
    if n_refine <= 0:
        return np.empty((0, starts.shape[1]))
    for i in finite:
        if not any(np.allclose(starts[i], s, rtol=1e-9, atol=0) for s in picked):
            picked.append(starts[i])
        if len(picked) == n_refine:
            break
    rng = np.random.default_rng(seed)
    for _ in range(n_jitter):
        picked.append(_clip_to_bounds(law, picked[0] * np.exp(0.1 * rng.standard_normal(picked[0].size))))
    return np.array(picked)


def fit_law(law: Law, data: Mapping[str, Any], y: np.ndarray, *, huber_delta: float = 1e-3, seed: int = 0,
            n_refine: int | None = None, n_jitter: int = 0, weights: np.ndarray | None = None,
            starts: np.ndarray | None = None, maxiter: int = 1000) -> FitResult:
    """Multi-start robust fit of `law` to observed `y`; see the module docstring."""
    t0 = time.perf_counter()
    y, w = _check_inputs(law, y, weights)
    log_y = np.log(y)
    starts = _clip_to_bounds(law, np.atleast_2d(np.asarray(
        law.starts(data, y) if starts is None else starts, dtype=float)))
    if starts.shape[1] != len(law.params):
        raise ValueError(f"{law.name}: starts have {starts.shape[1]} columns, law has {len(law.params)} params")
    scores = score_starts(law, starts, data, log_y, w, huber_delta)

    best_theta, best_obj, best_ok = None, np.inf, False
    n_refine = law.n_refine if n_refine is None else n_refine
    refined: list[tuple[float, bool]] = []
    for theta0 in _pick_starts(law, starts, scores, n_refine, n_jitter, seed):
        theta, obj, ok = _refine(law, theta0, data, log_y, w, huber_delta, maxiter)
        # Re-score exactly (L-BFGS-B's last value can be a rejected trial point).
        obj = float(score_starts(law, theta[None], data, log_y, w, huber_delta)[0])
        refined.append((obj, ok))
        if obj < best_obj:
            best_theta, best_obj, best_ok = theta, obj, ok
    # Several starts often reach the same optimum; the lowest objective may come from a run whose
    # line search ended abnormally a hair below one that met the stopping rule. The optimum is
    # then certified by the converged run (objectives equal to 1e-9 relative).
    best_ok = best_ok or any(ok and obj <= best_obj + 1e-9 * abs(best_obj) for obj, ok in refined)
    if best_theta is None:
        # n_refine = 0 (the law's starts are already fitted, e.g. mpl-recipe's early-stopped AdamW)
        # or every refinement failed: take the best start itself. Never "converged": nothing
        # checked that it is an optimum of the objective (and an early-stopped fit is not one).
        i = int(np.argmin(scores))
        best_theta, best_obj, best_ok = starts[i], float(scores[i]), False

    pred = np.asarray(law.predict(best_theta, data), dtype=float)
    return FitResult(
        law=law.name,
        theta=best_theta,
        params=law.as_dict(best_theta),
        objective=best_obj,
        n=int(y.size),
        converged=best_ok,
        metrics=metrics(y, pred),
        derived=law.derived(best_theta),
        n_starts=int(len(starts)),
        wall_s=time.perf_counter() - t0,
    )


# ----------------------------------------------------------------------------------------------
# Bootstrap
# ----------------------------------------------------------------------------------------------


@dataclass
class BootstrapResult:
    param_names: list[str]
    thetas: np.ndarray  # (B, P), one refit per resample
    level: float
    param_intervals: dict[str, tuple[float, float]]
    pred_intervals: dict[str, tuple[np.ndarray, np.ndarray]]
    unit: str  # "groups" or "points"

    def predict_interval(self, law: Law, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction on `data` over the bootstrap refits."""
        with np.errstate(all="ignore"):
            preds = np.asarray(law.predict(self.thetas, data), dtype=float)
        return _percentiles(preds, self.level)

    def to_json(self) -> dict[str, Any]:
        return {
            "n_boot": int(len(self.thetas)),
            "level": self.level,
            "unit": self.unit,
            "intervals": {k: [float(lo), float(hi)] for k, (lo, hi) in self.param_intervals.items()},
        }


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    q = 100 * (1 - level) / 2
    return np.nanpercentile(samples, q, axis=0), np.nanpercentile(samples, 100 - q, axis=0)


def _resample_weights(rng: np.random.Generator, groups: np.ndarray | None, n: int) -> np.ndarray:
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n)).astype(float)
    labels, inverse = np.unique(groups, return_inverse=True)
    counts = np.bincount(rng.integers(0, labels.size, labels.size), minlength=labels.size)
    return counts[inverse].astype(float)


def bootstrap(law: Law, data: Mapping[str, Any], y: np.ndarray, *, groups: np.ndarray | None = None,
              n_boot: int = 200, seed: int = 0, fit: FitResult | None = None,
              targets: Mapping[str, Mapping[str, Any]] | None = None, level: float = 0.95,
              huber_delta: float = 1e-3, weights: np.ndarray | None = None,
              maxiter: int = 500) -> BootstrapResult:
    """Percentile bootstrap over groups (runs / curves) or points; see the module docstring."""
    if law.n_refine == 0:
        raise ValueError(f"{law.name}: the law fits itself in `starts` (n_refine = 0), so refits "
                         "from the best fit would not be the same estimator; bootstrap a refined law")
    y, w = _check_inputs(law, y, weights)
    if groups is not None:
        groups = np.asarray(groups).ravel()
        if groups.shape != y.shape:
            raise ValueError(f"{law.name}: groups must have one label per point")
    if fit is None:
        fit = fit_law(law, data, y, huber_delta=huber_delta, seed=seed, weights=w)
    rng = np.random.default_rng(seed)
    log_y = np.log(y)
    thetas = np.empty((n_boot, len(law.params)))
    for b in range(n_boot):
        wb = w * _resample_weights(rng, groups, y.size)
        theta, _, _ = _refine(law, fit.theta, data, log_y, wb, huber_delta, maxiter)
        thetas[b] = theta
    lo, hi = _percentiles(thetas, level)
    result = BootstrapResult(
        param_names=law.param_names,
        thetas=thetas,
        level=level,
        param_intervals={n: (float(a), float(b)) for n, a, b in zip(law.param_names, lo, hi)},
        pred_intervals={},
        unit="points" if groups is None else "groups",
    )
    for name, target in (targets or {}).items():
        result.pred_intervals[name] = result.predict_interval(law, target)
    return result
