"""Refuse or warn, never silently: the checks every fitted law passes before its outputs are written.

`python -m harness.fit curve|scaling` runs `check_fit` after fitting and predicting. A fit
  * with no more points than parameters (it interpolates; its predictions are arbitrary),
  * that did not converge (L-BFGS-B stopped without a small projected gradient),
  * with a parameter sitting on one of its bounds (the data do not pin it down; the box does), or
  * whose predictions leave the plausible range of its data (non-finite, <= 0, more than
    `MAX_FACTOR` x the largest observed value, or less than 1/`MAX_FACTOR` x the smallest: a
    diverged extrapolation, like the 535,573% Farseer error of issue 13)
is refused: `FitRefused` names the law, every problem and the fix, the CLI exits with status 3
and writes nothing. With `--allow-unconverged` the same messages become warnings: printed to
stderr and stored under "warnings" in params.json and metrics.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Law

# A prediction more than this factor above the largest (or below the smallest) observed value is
# not an extrapolation of the data's trend but a diverged fit. Loss laws move by tens of percent
# across orders of magnitude of scale; 10x is far outside anything a sane law predicts.
MAX_FACTOR = 10.0
# A parameter within this fraction of its box width (or absolute distance for an infinite-width
# box) of a finite bound counts as sitting on it.
BOUND_TOL = 1e-6

FIX_BOUND = ("the data do not determine it. Fix: add runs that vary what this parameter "
             "controls (more N or D values, longer curves), choose a law with fewer parameters "
             "(e.g. chinchilla), or pass --allow-unconverged to keep the fit with a warning")
FIX_CONVERGED = ("Fix: fit on more points, check the inputs for outliers, try another --seed, "
                 "or pass --allow-unconverged to keep the fit with a warning")
FIX_PREDICTION = ("the fit has diverged outside its data. Fix: predict closer to the fitted "
                  "range, fit on more points spanning the target, choose a simpler law, or pass "
                  "--allow-unconverged to keep the predictions with a warning")


class FitRefused(RuntimeError):
    """The fit failed a check; the message lists every problem and its fix."""


@dataclass(frozen=True)
class Problem:
    kind: str      # "underdetermined" | "not_converged" | "on_bound" | "implausible_prediction"
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


def bound_problems(law: Law, theta: Sequence[float]) -> list[Problem]:
    """One Problem per parameter that sits on a finite bound of its box (bounds that are nested laws,
    `Param.nested_at_bounds`, excepted)."""
    out = []
    for p, v in zip(law.params, np.asarray(theta, dtype=float)):
        if p.nested_at_bounds:
            continue
        width = p.upper - p.lower
        tol = BOUND_TOL * (width if np.isfinite(width) else max(1.0, abs(v)))
        for side, b in (("lower", p.lower), ("upper", p.upper)):
            if np.isfinite(b) and abs(v - b) <= tol:
                out.append(Problem("on_bound", f"law {law.name!r}: parameter {p.name!r} = {v:.6g} sits on "
                                   f"its {side} bound {b:g}; {getattr(law, 'bound_fix', FIX_BOUND)}"))
    return out


def prediction_problems(law_name: str, predictions: Mapping[str, np.ndarray], observed: np.ndarray,
                        target: str = "loss") -> list[Problem]:
    """Predictions outside (min/MAX_FACTOR, MAX_FACTOR * max) of the observed fit values."""
    obs = np.asarray(observed, dtype=float)
    obs = obs[np.isfinite(obs)]
    if obs.size == 0:
        return []
    lo, hi = obs.min() / MAX_FACTOR, obs.max() * MAX_FACTOR
    out = []
    for name, pred in predictions.items():
        pred = np.asarray(pred, dtype=float).ravel()
        bad = ~np.isfinite(pred) | (pred <= 0) | (pred > hi) | (pred < lo)
        if bad.any():
            rows = np.flatnonzero(bad)
            worst = pred[rows[0]]
            out.append(Problem("implausible_prediction",
                               f"law {law_name!r}: {rows.size} predicted {target} value(s) on {name} are outside "
                               f"the plausible range ({lo:.4g}, {hi:.4g}] (1/{MAX_FACTOR:g} x the smallest to "
                               f"{MAX_FACTOR:g} x the largest observed {target}); first at row {int(rows[0])}: "
                               f"{worst:.6g}; {FIX_PREDICTION}"))
    return out


def check_fit(law: Law, theta: Sequence[float], converged: bool, predictions: Mapping[str, np.ndarray],
              observed: np.ndarray, fit_data: Mapping[str, Any] | None = None) -> list[Problem]:
    """Every problem of a fit: too few points, convergence, parameters on bounds, implausible predictions.

    With `fit_data` (the law's prepared fit set), a law's own `identifiability_problems(data)` (e.g.
    Farseer's minimum number of model sizes) are checked too."""
    problems = []
    own = getattr(law, "identifiability_problems", None)
    if fit_data is not None and callable(own):
        problems += [Problem("underdetermined", m) for m in own(fit_data)]
    n_obs, n_params = int(np.isfinite(np.asarray(observed, dtype=float)).sum()), len(law.params)
    if n_obs <= n_params:
        problems.append(Problem("underdetermined", f"law {law.name!r} has {n_params} parameters but was fitted on "
                                                   f"{n_obs} points: any fit interpolates them and its predictions "
                                                   f"are arbitrary. Fix: fit on more than {n_params} points, or choose "
                                                   "a law with fewer parameters, or pass --allow-unconverged"))
    if not converged:
        problems.append(Problem("not_converged", f"law {law.name!r}: the fit did not converge (L-BFGS-B "
                                                 f"stopped with a large projected gradient). {FIX_CONVERGED}"))
    problems += bound_problems(law, theta)
    problems += prediction_problems(law.name, predictions, observed, getattr(law, "target", "loss"))
    return problems


def enforce(problems: Sequence[Problem], allow: bool) -> list[dict[str, str]]:
    """Raise FitRefused listing every problem unless `allow`; else return them as JSON warnings."""
    if problems and not allow:
        raise FitRefused("\n  ".join(["the fit is refused:"] + [p.message for p in problems]))
    return [p.to_json() for p in problems]
