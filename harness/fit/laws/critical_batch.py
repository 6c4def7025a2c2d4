"""Kaplan et al. 2020's loss over model size and steps at any batch size (a seed law).

    L(N, S, B) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S,
    S_min = S / (1 + B_crit(L) / B),   B_crit(L) = B_star / L^(1 / alpha_B)

(Kaplan et al. 2020, eqs. 5.1-5.4 and 1.6; "Unraveling the Mystery of Scaling Laws" refits the
same forms). S is the optimizer steps, B the batch in tokens, N non-embedding parameters. Kaplan's
values: alpha_N 0.076, N_c 8.8e13, alpha_S 0.76, S_c 2.1e3, B_star 2e8 tokens, alpha_B 0.21
(shared/notes/ANCHORS-FITTING.md §7e, marked "[memory — verify]").

L appears on both sides through B_crit(L). The right side f(L) falls as L rises (a larger loss
needs a smaller critical batch, so S_min grows and the step term shrinks), so L = f(L) has one
root, bracketed by f(inf) (B_crit -> 0) and f(f(inf)); `predict` finds it by bisection in log L,
vectorized over starts. Columns, as harness.collect writes them: N, step (optimizer steps), B
(tokens per step), loss.

HOW SURE: Kaplan's constants above are from memory. Synthetic checks: the fit recovers them from
points made with them (tests/test_fit_seed_laws.py), and the `critbatch` analysis recovers
Kaplan's B_crit(L) from curves made by this law (tests/test_steplaw_kaplan_critbatch.py).
Independent check on Step Law's released grid (scripts/check_batch_laws.py, docs/STEPLAW.md;
final losses of fully trained runs used as L(S), the best lr per (N, D, B), S = D / B; fit on
214M-429M, scored on 537M and 1.07B): held-out losses 0.51% mean (2.5% worst); its
B_crit(L) = B* / L^(1/alpha_B) against B_crit measured by `critbatch` on the held-out sizes' own
runs, 8.6% mean (17% worst); steps to a held-out size's target losses, 9% mean. The grid is coarse
for B_crit: its largest batch is 4.2M tokens and the measured B_crit is 0.7-3.7x that, and
steps-to-target interpolates between 3-4 token budgets per size (~17% error with one dropped).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Law, Param, batch_theta
from harness.fit.laws.final_loss import positive_column

_BISECTIONS = 60


class KaplanStepsLaw(Law):
    name = "kaplan-steps"
    target = "loss"
    # `step`: the optimizer steps of the run, as harness.collect names it.
    required_columns: tuple[str, ...] = ("N", "step", "B")
    params = (
        Param("log_Nc", 5.0, 60.0, (20.0, 32.0)),
        Param("alpha_N", 1e-3, 2.0, (0.05, 0.1, 0.3)),
        Param("log_Sc", -5.0, 30.0, (2.0, 8.0)),
        Param("alpha_S", 1e-3, 3.0, (0.3, 0.8)),
        Param("log_Bstar", 0.0, 40.0, (10.0, 19.0)),
        Param("alpha_B", 0.02, 5.0, (0.2, 0.5)),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {c: positive_column(table, c, self.name) for c in self.required_columns}

    @staticmethod
    def _rhs(L, n, s, b, log_nc, alpha_n, log_sc, alpha_s, log_bstar, alpha_b):
        b_crit = np.exp(log_bstar - np.log(L) / alpha_b)
        s_min = s / (1.0 + b_crit / b)
        return np.exp(alpha_n * (log_nc - np.log(n))) + np.exp(alpha_s * (log_sc - np.log(s_min)))

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        cols = [th[:, i:i + 1] for i in range(th.shape[1])]
        n, s, b = data["N"][None, :], data["step"][None, :], data["B"][None, :]
        with np.errstate(all="ignore"):
            lo = np.exp(cols[1] * (cols[0] - np.log(n))) + np.exp(cols[3] * (cols[2] - np.log(s)))  # f(inf)
            hi = self._rhs(lo, n, s, b, *cols)
            log_lo, log_hi = np.log(lo), np.log(np.maximum(hi, lo))
            for _ in range(_BISECTIONS):
                mid = 0.5 * (log_lo + log_hi)
                above = np.exp(mid) - self._rhs(np.exp(mid), n, s, b, *cols) > 0
                log_hi, log_lo = np.where(above, mid, log_hi), np.where(above, log_lo, mid)
            out = np.exp(0.5 * (log_lo + log_hi))
        return out[0] if single else out

    def critical_batch(self, theta: Sequence[float], loss: float | np.ndarray) -> np.ndarray:
        """B_crit(L) in tokens."""
        return np.exp(theta[4] - np.log(np.asarray(loss, dtype=float)) / theta[5])

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        log_nc, alpha_n, log_sc, alpha_s, log_bstar, alpha_b = (float(v) for v in theta)
        return {"N_c": float(np.exp(log_nc)), "alpha_N": alpha_n, "S_c": float(np.exp(log_sc)),
                "alpha_S": alpha_s, "B_star": float(np.exp(log_bstar)), "alpha_B": alpha_b}
