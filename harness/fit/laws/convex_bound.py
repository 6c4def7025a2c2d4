"""Convex-bound law: the loss curve as a power of the last-iterate bound of SGD on a convex
Lipschitz problem under the schedule actually run (Defazio, Cutkosky, Mehta & Mishchenko 2023,
"Optimal linear decay learning rate schedules and further refinements", Theorem 10; Schaipp,
Hagele, Taylor, Simsekli & Bach 2025 show its shape matches LLM loss curves, cooldowns included).

For a schedule eta_1 .. eta_T (SGD, convex, G-Lipschitz, distance D from the start to a minimizer)
the last iterate x_T satisfies E f(x_T) - f* <= Omega_T with

    Omega_T = D^2 / (2 S_T) + G^2 * V_T
    V_T     = Q_T / (2 S_T) + (1/2) sum_{k<T} eta_k / (S_T - S_k) * (Q_T - Q_{k-1}) / (S_T - S_{k-1})
    S_t = sum_{j<=t} eta_j,   Q_t = sum_{j<=t} eta_j^2

The curve law evaluates the bound for the schedule truncated at every observed step t (the bound
on the iterate there depends only on the LRs run so far) and maps it to the loss:

    L(t) = L0 + A * (r / (2 S_t) + V_t)^beta,     r = D^2 / G^2

Four parameters: the floor L0, the scale A, the exponent beta and the ratio r (units LR^2 x steps;
G^2 is absorbed in A). S_t and V_t depend on the schedule alone, so they are computed once per
curve (an O(rows x steps) pass in `prepare`) and every prediction after that is O(rows).

Why this shape. The bound scales as 1/eta (the distance term) + eta (the noise terms): for a fixed
schedule shape it has a peak-LR optimum built in, which the LR-area clocks of MPL and Tissue lack
(their loss always falls with a higher LR); the optimum moves with the schedule and the horizon as
the bound says. A cooldown helps through the third term (steps late in a decaying schedule have a
small tail area, so the noise they carry is not amplified). Warmup counts as it was run.

Registered: `convex-bound` (this law, `ConvexBoundLaw`) and `convex-noise-sqrt` (`ConvexNoiseSqrtLaw`:
the bound's noise part V_t as the noise term of `lr-noise-sqrt`, chosen for peak-LR transfer;
docs/CURVE_LAWS.md, "Convex-bound laws").

Steps with eta = 0 leave the iterate unchanged; their terms are dropped (a zero-LR tail, e.g. a
cosine that ends at exactly 0, gives the bound of the last step with a positive LR), so the
expression is finite for every schedule with some positive LR.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Param, batch_theta
from harness.fit.laws.curve import CurveLaw, l0_grid

INF = np.inf
# Rows of the (rows x steps) pass evaluated at once: bounds the temporary arrays (~rows x steps x 8 B).
_ROW_CHUNK = 64


def bound_terms(lr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(S_t, V_t) at each row t (0-based step index: the schedule run through step t inclusive).

    Omega_t = D^2 / (2 S_t) + G^2 V_t (module docstring). Vectorized over rows x steps in chunks.
    """
    lr = np.asarray(lr, dtype=float)
    rows = np.asarray(rows, dtype=int)
    if lr.ndim != 1 or np.any(lr < 0) or not np.all(np.isfinite(lr)):
        raise ValueError("convex-bound: lr must be a 1-D array of finite values >= 0")
    if rows.size and (rows.min() < 0 or rows.max() >= lr.size):
        raise ValueError(f"convex-bound: rows must lie in [0, {lr.size - 1}] (steps of the schedule)")
    s = np.cumsum(lr)
    q = np.cumsum(lr**2)
    s_before, q_before = s - lr, q - lr**2  # sums over steps strictly before k
    lr_area, noise = s[rows], np.empty(rows.size)
    for lo in range(0, rows.size, _ROW_CHUNK):
        r = rows[lo:lo + _ROW_CHUNK]
        m = int(r.max()) + 1
        s_t, q_t = s[r][:, None], q[r][:, None]
        tail = s_t - s[None, :m]  # LR area after step k up to row t
        tail_from = s_t - s_before[None, :m]  # ... from step k on
        # k < t with a positive tail after it; a step with eta_k = 0 adds nothing either way.
        use = (np.arange(m)[None, :] < r[:, None]) & (tail > 0) & (lr[None, :m] > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = lr[None, :m] * (q_t - q_before[None, :m]) / (tail * tail_from)
        noise[lo:lo + _ROW_CHUNK] = 0.5 * np.where(use, terms, 0.0).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        noise += q[rows] / (2 * lr_area)
    return lr_area, noise


def power_clock(lr: np.ndarray, p: float, lr_ref: float) -> np.ndarray:
    """lr_ref * cumulative sum over steps of (lr / lr_ref)^p: the signal clock of the sqrt-clock laws. A
    zero-LR step adds nothing, whatever p (0^0 would count it as a step)."""
    rel = np.maximum(lr, 0.0) / lr_ref
    return lr_ref * np.cumsum(np.where(rel > 0, rel**p, 0.0))


def clock_noise_starts(y: np.ndarray, clock: np.ndarray, noise: np.ndarray, noise_fractions: Sequence[float],
                       alphas: Sequence[float]) -> list[tuple[float, float, float, float]]:
    """Starts (L0, A, alpha, sigma) of L0 + A * clock^-alpha + sigma * noise: sigma * max(noise) a fraction
    of the lowest loss, L0 on `l0_grid`, and A from the data at each (L0, alpha, sigma) (the median ratio,
    so every start is on scale)."""
    out = []
    for frac in noise_fractions:
        sigma = frac * float(np.min(y)) / float(np.max(noise))
        for L0 in l0_grid(y):
            for alpha in alphas:
                A = float(np.median((y - L0 - sigma * noise) * clock ** alpha))
                if A > 0 and np.isfinite(A):
                    out.append((L0, A, alpha, sigma))
    return out


class ConvexBoundLaw(CurveLaw):
    """L0 + A * (r / (2 S_t) + V_t)^beta; see the module docstring."""

    name = "convex-bound"
    point_keys = ("S1", "V")
    params = (
        Param("L0", 0.0, INF, (1.0,)),
        Param("A", 0.0, INF, (1.0,)),
        Param("beta", 0.0, 5.0, (0.2, 0.35, 0.5, 0.75, 1.0)),
        Param("r", 1e-30, INF, (1.0,)),
    )
    # Starts for r, as the square of the optimal peak LR relative to the fit's: at the last fitted
    # row the distance term r / (2 S) equals k * V there, i.e. the bound's optimum is sqrt(k) x peak.
    optimum_ratio_sq = (0.25, 1.0, 4.0, 16.0, 64.0)

    def _prepare_curve(self, lr: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        s1, v = bound_terms(lr, idx)
        return {"n": idx.size, "S1": s1, "V": v}

    @staticmethod
    def _omega(r: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        return r / (2 * data["S1"]) + data["V"]

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        with np.errstate(all="ignore"):
            omega = self._omega(th[:, 3:4], data)
            out = th[:, :1] + th[:, 1:2] * omega ** th[:, 2:3]
        return out[0] if single else out

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        L0, A, beta, r = theta
        omega = self._omega(r, data)
        pw = omega**beta
        pred = L0 + A * pw
        jac = np.stack([np.ones_like(pw), pw, A * pw * np.log(omega),
                        A * beta * pw / omega / (2 * data["S1"])], axis=1)
        return pred, jac

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        # The last row of the curve with the largest LR area: the end of the longest fitted run.
        end = int(np.argmax(data["S1"]))
        r_grid = 2 * data["S1"][end] * data["V"][end] * np.asarray(self.optimum_ratio_sq)
        out = []
        for L0 in l0_grid(y):
            for beta in self.params[2].grid:
                for r in r_grid:
                    pw = self._omega(r, data) ** beta
                    # A from the data at this (L0, beta, r): the median ratio, so every start is on scale.
                    A = float(np.median((y - L0) / pw))
                    if A > 0 and np.isfinite(A):
                        out.append((L0, A, beta, r))
        return np.array(out)


class ConvexNoiseSqrtLaw(CurveLaw):
    """`lr-noise-sqrt` with the bound's noise part as its noise term: L0 + A * Sq^-alpha + sigma * V_t.

        Sq(t) = LR_REF * sum_{k<=t} sqrt(lr_k / LR_REF)        (the clock of lr-noise-sqrt, p = 1/2)
        V_t   = the noise part of the convex last-iterate bound (`bound_terms`; module docstring)

    Four parameters (L0, A, alpha, sigma), none inside a sum over steps: Sq and V are computed once
    per curve, so a fit costs what a power law costs.

    Why. The pure bound (`ConvexBoundLaw`) ties the signal to the LR area (its distance term is
    D^2 / 2 S): halving the peak LR doubles it, but on our proxies the loss at 0.5x the peak LR is
    close to that at 1x, and the pure bound over-predicts it by ~4 %. Its noise part is a better
    noise term than lr-noise's exponential forgetting: V replaces the forgetting area tau by the
    bound's kernel (a step's noise weighs as eta_k / (LR area after it), times the mean LR of
    that tail), so the cooldown gain and the noise floor's LR dependence (V ~ eta at a constant
    LR, up to a slowly growing log of the steps) follow from the schedule with no free rate.
    Chosen on the 0.5x-peak-LR validation of our proxies over the pure bound, the bound on the
    sqrt clock, this term with a free clock exponent, and a power-law-kernel (FSL-style) noise term
    (docs/CURVE_LAWS.md, "Convex-bound laws"). The log growth costs accuracy on very long
    constant-LR runs (the MPL 3x-longer constant), which is why it is not the default.
    """

    name = "convex-noise-sqrt"
    point_keys = ("Sq", "V")
    params = (
        Param("L0", 0.0, INF, (1.0,)),
        Param("A", 0.0, INF, (1.0,)),
        Param("alpha", 0.0, 5.0, (0.2, 0.4, 0.7)),
        Param("sigma", 0.0, INF, (1.0,)),
    )
    # The clock's LR unit, as in lr-noise-clock (any constant gives the same law; this keeps A of order 1).
    LR_REF = 1e-3
    # The clock exponent: 1/2 is this law. A constant (not fitted), named so that `--band` can vary it: it is
    # weakly identified when every fit curve has one peak LR, and the band at a new peak LR is widened by
    # refits with it at each value of the grid (harness/fit/curve_predict.py, `PeakLRBand`).
    CLOCK_P = 0.5
    weak_at_one_peak_lr = {"CLOCK_P": (0.0, 0.25, 0.5, 0.75, 1.0)}
    # --band at a new peak LR: half-width + kappa * |ln(LR ratio)|, kappa calibrated on our proxy sets
    # (docs/CURVE_LAWS.md "Band widened with the LR distance").
    peak_lr_distance_width = 0.022
    # Noise starts: sigma * max V as a fraction of the lowest loss.
    noise_fractions = (0.003, 0.01, 0.03, 0.1)

    def _prepare_curve(self, lr: np.ndarray, idx: np.ndarray) -> dict[str, Any]:
        _, v = bound_terms(lr, idx)
        return {"n": idx.size, "Sq": power_clock(lr, self.CLOCK_P, self.LR_REF)[idx], "V": v}

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        with np.errstate(all="ignore"):
            out = (th[:, :1] + th[:, 1:2] * data["Sq"][None, :] ** (-th[:, 2:3])
                   + th[:, 3:4] * data["V"][None, :])
        return out[0] if single else out

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        L0, A, alpha, sigma = theta
        pw = data["Sq"] ** (-alpha)
        pred = L0 + A * pw + sigma * data["V"]
        return pred, np.stack([np.ones_like(pw), pw, -A * pw * np.log(data["Sq"]), data["V"]], axis=1)

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        return np.array(clock_noise_starts(y, data["Sq"], data["V"], self.noise_fractions, self.params[2].grid))
