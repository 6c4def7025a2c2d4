"""Loss-CURVE laws: predict the loss at every observed step from the whole per-step LR schedule.

All curve laws take `prepare(curves)` with a list of `harness.fit.io.Curve` (LR at every optimizer
step from the first; loss where observed) and predict at `curve.eval_index()`: the observed rows,
concatenated over curves in the order given. Sums over steps are cumulative sums over the full
schedule, so warmup, decay and any schedule shape enter exactly.

Conventions shared by all laws here. Row i of a curve (0-based) is the (i+1)-th optimizer step;
the LR area S1(i) = sum_{j<=i} lr_j includes the current step (as in the MPL and Tissue code).

| registry name      | class            | law                                                  |
|--------------------|------------------|------------------------------------------------------|
| power              | PowerCurveLaw    | L0 + A * t^-alpha, t = steps taken (ignores the LR)  |
| tissue             | TissueLaw        | Tissue et al. 2024: L0 + A S1^-alpha - C S2          |
| tissue-true-warmup | TissueLaw        | the same with the true warmup LR in S1               |
| mpl, mpl-code      | MultiPowerLaw    | Luo et al. 2025 multi-power law (laws/mpl.py)        |
| mpl-recipe         | MPLRecipe        | the same, fitted by the authors' recipe              |
| lr-noise-clock     | LRNoiseClockLaw  | DEFAULT: L0 + A Sp^-alpha + sigma N (laws/lr_noise.py)|
| lr-noise           | LRNoiseLaw       | the same with p = 1 (LR-area clock)                  |
| lr-noise2          | LRNoise2Law      | lr-noise with two forgetting areas                   |
| lr-noise-sqrt      | LRNoiseSqrtLaw   | lr-noise-clock with p fixed at 1/2 (peak-LR transfer) |
| convex-bound       | ConvexBoundLaw   | L0 + A Omega^beta, Omega the convex last-iterate bound (laws/convex_bound.py) |
| convex-noise-sqrt  | ConvexNoiseSqrtLaw | L0 + A Sq^-alpha + sigma V, V the bound's noise part |
| convex-noise-eff   | ConvexNoiseEffLaw | the same with V on the effective LR lr*sqrt(S0/(S0+S1)) (laws/eff_lr.py) |

Which is the default (registry.DEFAULT_CURVE_LAW) and why: docs/CURVE_LAWS.md.

(`PowerCurveLaw` is a loss-curve baseline; `harness.fit.powerlaw.PowerLaw` is a fitted c * x^k.)

Parameters and grids are in the units of the data (steps, LR as given). Starting grids are
scale-free where that matters: L0 relative to the lowest observed loss, the LR-drop amplitudes
relative to the peak LR, so the laws transfer to other peak LRs, horizons and schedule shapes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.io import Curve
from harness.fit.laws.base import Law, Param, batch_theta, grid_product

INF = np.inf


def warmup_end(lr: np.ndarray) -> int:
    """Index of the first step at the peak of the leading non-decreasing stretch (0: no warmup).

    Warmup = the leading non-decreasing stretch of the schedule up to the first time its maximum
    is reached.
    """
    lr = np.asarray(lr, dtype=float)
    decreasing = np.flatnonzero(np.diff(lr) < 0)
    end = decreasing[0] + 1 if decreasing.size else lr.size
    return int(np.argmax(lr[:end]))


def warmup_as_peak(lr: np.ndarray) -> np.ndarray:
    """Tissue et al.'s official convention: LR before the end of warmup is replaced by the peak.

    The schedule after warmup (`warmup_end`) is unchanged; one without warmup is returned as is.
    """
    lr = np.asarray(lr, dtype=float)
    peak_at = warmup_end(lr)
    out = lr.copy()
    out[:peak_at] = lr[peak_at]
    return out


def l0_grid(y: np.ndarray) -> np.ndarray:
    """Starting values of a curve law's floor L0: the loss the power-law part tends to lies below
    the lowest loss seen, often well below."""
    return float(np.min(y)) * np.array([0.3, 0.6, 0.8, 0.9, 0.97])


class CurveLaw(Law, ABC):
    """Common input handling: curves in, concatenated per-point arrays out."""

    required_columns = ("step", "lr")
    # fit_checks' advice for a parameter on its bound (e.g. the floor L0 at 0 when short curves cannot
    # separate a floor from a slower power law).
    bound_fix = ("the curves do not determine it. Fix: fit on longer curves or on more schedules (a decay to "
                 "a low LR shows the floor L0), or pass --allow-unconverged to keep the fit with a warning")
    # kappa of the --band at a new peak LR: the half-width grows by this much per unit |ln(peak LR ratio)|
    # (harness/fit/curve_predict.py `PeakLRBand`). 0 = no such term; laws that declare `weak_at_one_peak_lr`
    # set a value calibrated on our proxy sets (docs/CURVE_LAWS.md "Band widened with the LR distance").
    peak_lr_distance_width: float = 0.0
    # Per-point arrays `_prepare_curve` returns; `prepare` concatenates them over curves.
    point_keys: tuple[str, ...] = ()

    def prepare(self, curves: Sequence[Curve]) -> dict[str, Any]:
        if isinstance(curves, Curve):
            curves = [curves]
        per_curve = [self._prepare_curve(c.lr.astype(float), c.eval_index()) for c in curves]
        data: dict[str, Any] = {"curves": per_curve, "n": int(sum(p["n"] for p in per_curve)),
                                "peak_lr": float(max(c.lr.max() for c in curves))}
        for key in self.point_keys:
            data[key] = np.concatenate([p[key] for p in per_curve])
        return data

    @abstractmethod
    def _prepare_curve(self, lr: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        """Per-curve arrays from the full LR schedule and the rows to evaluate (incl. `n`)."""


class PowerCurveLaw(CurveLaw):
    """Baseline L(t) = L0 + A * t^-alpha in steps taken; blind to the LR schedule."""

    name = "power"
    point_keys = ("t",)
    params = (
        Param("L0", 0.0, INF, (1.0,)),
        Param("A", 0.0, INF, (1.0, 10.0, 100.0)),
        Param("alpha", 0.0, 5.0, (0.1, 0.3, 0.6, 1.0)),
    )

    def _prepare_curve(self, lr: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        return {"n": idx.size, "t": (idx + 1).astype(float)}

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        return grid_product(l0_grid(y), *[p.grid for p in self.params[1:]])

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        L0, A, alpha = (th[:, j:j + 1] for j in range(3))
        out = L0 + A * data["t"][None, :] ** (-alpha)
        return out[0] if single else out

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        L0, A, alpha = theta
        p = data["t"] ** (-alpha)
        return L0 + A * p, np.stack([np.ones_like(p), p, -A * p * np.log(data["t"])], axis=1)


class TissueLaw(CurveLaw):
    """Tissue, Wang & Wang 2024, "Scaling Law with Learning Rate Annealing" (arXiv:2408.11029).

        L(s) = L0 + A * S1(s)^-alpha - C * S2(s)
        S1(s) = sum_{i<=s} lr_i,    S2(s) = sum_{i<=s} m_i,    m_i = decay * m_{i-1} + (lr_{i-1} - lr_i)

    with m_0 = 0 and decay (lambda) = 0.999. `warmup`:
    * "peak" (official script): every warmup step counts as the peak LR in S1 and S2.
    * "true": S1 uses the true LR; S2 still treats warmup as flat, because the momentum of LR
      *increases* would count warmup as negative annealing (raising the predicted loss), which
      the law does not model.
    Starts: the official 54-point grid (L0 {0.1, 2.1}, A and C {1, 11.5, 22}, alpha {0, .4, .8})
    plus a scale-free grid (L0 relative to the lowest loss, A and C over decades).
    """

    point_keys = ("S1", "S2")
    params = (
        Param("L0", 0.0, INF, (0.1, 2.1)),
        Param("A", 0.0, INF, (1.0, 11.5, 22.0)),
        Param("C", 0.0, INF, (1.0, 11.5, 22.0)),
        Param("alpha", 0.0, INF, (0.0, 0.4, 0.8)),
    )

    def __init__(self, warmup: str = "peak", decay: float = 0.999):
        if warmup not in ("peak", "true"):
            raise ValueError(f"warmup must be 'peak' or 'true', got {warmup!r}")
        self.warmup = warmup
        self.decay = decay
        self.name = "tissue" if warmup == "peak" else "tissue-true-warmup"

    def _prepare_curve(self, lr: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        flat = warmup_as_peak(lr)
        s1 = np.cumsum(flat if self.warmup == "peak" else lr)
        drops = np.concatenate([[0.0], flat[:-1] - flat[1:]])
        from scipy.signal import lfilter  # imported here: scipy.signal alone costs ~0.4 s at import

        momentum = lfilter([1.0], [1.0, -self.decay], drops)  # m_i = decay * m_{i-1} + drop_i
        s2 = np.cumsum(momentum)
        return {"n": idx.size, "S1": s1[idx], "S2": s2[idx]}

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        official = self.initial_grid()
        scale_free = grid_product(l0_grid(y), [0.1, 0.3, 1.0, 3.0, 10.0], [0.01, 0.1, 1.0, 10.0],
                              [0.2, 0.4, 0.6, 0.9, 1.2])
        return np.concatenate([official, scale_free])

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        L0, A, C, alpha = (th[:, j:j + 1] for j in range(4))
        out = L0 + A * data["S1"][None, :] ** (-alpha) - C * data["S2"][None, :]
        return out[0] if single else out

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        L0, A, C, alpha = theta
        p = data["S1"] ** (-alpha)
        pred = L0 + A * p - C * data["S2"]
        return pred, np.stack([np.ones_like(p), p, -data["S2"], -A * p * np.log(data["S1"])], axis=1)
