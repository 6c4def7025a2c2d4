"""Schaipp 2026's three-term law: final loss over model size, batch size and steps (a seed law).

    L(N, M, K) = E + A / N^alpha + B / M^beta + C / K^gamma

N: non-embedding parameters, M: batch size in tokens per step, K: optimizer steps (so the tokens
are D = M K). F. Schaipp, "How to Allocate Your Tokens? Scaling Laws with Training Steps and
Batch Size", arXiv:2607.01487 (2026).

Provenance, honestly: the paper's own text was not reachable from here (only its abstract). The
formula is as two independent secondary summaries state it (a GitHub research note quoting
`L(N,M,K) = E + A/N^α + B/M^β + C/K^γ`, fitted on 246 runs; and a paper digest describing the
loss as a sum of power laws in N, the token batch size M and the steps K that reduces to the
Chinchilla form at the optimal batch). Both quote the paper's fitted optimal batch
M* = 0.667 D^0.566 (from Step Law's public runs, among others). The fitting procedure here
(log-space LSE parameterization, Huber on log residuals, the start grid) is this harness's usual
one (harness/fit/fitter.py), not necessarily the paper's.

At a fixed token budget D = M K, minimizing B M^-beta + C (D/M)^-gamma over M gives

    M*(D) = (beta B / (gamma C))^(1 / (beta + gamma)) * D^(gamma / (beta + gamma)),

independent of N (the paper's claim that the optimal batch depends on the data, not the model),
and the loss at M* is E + A/N^alpha + const * D^(-beta gamma / (beta + gamma)): Chinchilla's form.
Columns, as harness.collect writes them: N, B (tokens per step), step (optimizer steps), loss.

HOW SURE: the formula is from secondary sources (above), and its check against the paper's number
fails: on Step Law's grid M* ∝ D^0.656, the paper (as quoted) 0.566
(scripts/reproduce_steplaw_three_term.py). Held out on the same grid (fit on 214M-429M, score
537M and 1.07B, best-lr run per (N, D, B); scripts/check_batch_laws.py, docs/STEPLAW.md) it
predicts the loss of the held-out rows to 0.49% mean (1.4% worst), against 1.43% for Chinchilla
blind to the batch; the batch it picks, M*(D), lands on runs 0.040% above each held-out cell's
best (Step Law's B_opt(D): 0.060%); the steps it needs to reach a target loss at a held-out size,
9% mean (the measured steps are interpolated between 3-4 token budgets, itself ~17% coarse).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Param
from harness.fit.laws.final_loss import FinalLossLaw, positive_column, unpack

_GRID_LOG = (0.0, 5.0, 10.0, 15.0, 20.0)
_GRID_EXP = (0.25, 0.5, 1.0)


class ThreeTermLaw(FinalLossLaw):
    """L = E + A/N^alpha + B/M^beta + C/K^gamma, fitted as log L = LSE(e, a - alpha log N, b - beta log M,
    c - gamma log K); M is the column `B` (tokens per step), K the column `step`."""

    name = "three-term"
    required_columns: tuple[str, ...] = ("N", "B", "step")
    params = (
        # Bounds only keep L-BFGS-B away from overflow; the grid spans the Chinchilla-like range
        # (a, b, c absorb the units of N, M, K).
        Param("e", -10.0, 5.0, (-1.0, 0.0, 1.0)),
        Param("a", -30.0, 100.0, _GRID_LOG),
        Param("b", -30.0, 100.0, _GRID_LOG),
        Param("c", -30.0, 100.0, _GRID_LOG),
        Param("alpha", 0.0, 3.0, _GRID_EXP),
        Param("beta", 0.0, 3.0, _GRID_EXP),
        Param("gamma", 0.0, 3.0, _GRID_EXP),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        n, m, k = (positive_column(table, c, self.name) for c in ("N", "B", "step"))
        return {"N": n, "B": m, "step": k, "log_N": np.log(n), "log_M": np.log(m), "log_K": np.log(k)}

    def _terms(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[Any, ...]:
        e, a, b, c, alpha, beta, gamma = unpack(theta, 7)
        return (e + 0.0 * data["log_N"], a - alpha * data["log_N"], b - beta * data["log_M"],
                c - gamma * data["log_K"])

    def predict_log(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        e, n_term, m_term, k_term = self._terms(theta, data)
        return np.logaddexp(np.logaddexp(e, n_term), np.logaddexp(m_term, k_term))

    def log_gradient(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        terms = self._terms(np.asarray(theta, dtype=float), data)
        log_l = self.predict_log(theta, data)
        w_e, w_n, w_m, w_k = (np.exp(t - log_l) for t in terms)   # softmax weight of each term
        grad = np.stack([w_e, w_n, w_m, w_k, -w_n * data["log_N"], -w_m * data["log_M"],
                         -w_k * data["log_K"]], axis=1)
        return log_l, grad

    def optimal_batch(self, theta: Sequence[float], D: float | np.ndarray) -> np.ndarray:
        """M*(D) in tokens per step: the batch that minimizes the loss at a fixed token budget D."""
        coef, exponent = _optimal_batch_law(theta)
        return coef * np.asarray(D, dtype=float) ** exponent

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        e, a, b, c, alpha, beta, gamma = (float(v) for v in theta)
        out = {"E": float(np.exp(e)), "A": float(np.exp(a)), "B": float(np.exp(b)), "C": float(np.exp(c)),
               "alpha": alpha, "beta": beta, "gamma": gamma}
        if beta > 0 and gamma > 0:
            coef, exponent = _optimal_batch_law(theta)
            out.update({"M_opt_coefficient": coef, "M_opt_exponent": exponent,
                        "D_exponent_at_M_opt": beta * gamma / (beta + gamma)})
        return out


def _optimal_batch_law(theta: Sequence[float]) -> tuple[float, float]:
    """(coefficient, exponent) of M*(D) = coefficient * D^exponent (module docstring)."""
    _, _, b, c, _, beta, gamma = (float(v) for v in theta)
    if not (beta > 0 and gamma > 0):
        raise ValueError(f"three-term law: the optimal batch needs beta > 0 and gamma > 0, got {beta}, {gamma}")
    log_coef = (np.log(beta / gamma) + b - c) / (beta + gamma)
    return float(np.exp(log_coef)), gamma / (beta + gamma)
