"""Journey Matters: Chinchilla over the average parameter count along training.

For runs whose parameter count changes during training (pruning, growing, sparsification), the
"Journey Matters" seed law replaces N in Chinchilla's L = E + A/N^alpha + B/D^beta by the average
count over training, N_avg = (1/D) * integral of N(t) over the tokens seen. Dense runs have
N_avg = N, so the law reduces to Chinchilla. Input column `N_avg` (and D, loss); the fit, grid and
parameterisation are ChinchillaLaw's (harness/fit/laws/final_loss.py).

HOW SURE: the substitution N -> N_avg is the seed's description in issue 13; the paper's own
fits and numbers were not read here, so there is no reproduction yet -- only the reduction to
Chinchilla on dense runs (tests/test_fit_seed_laws.py).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from harness.fit.laws.final_loss import ChinchillaLaw, positive_column


class JourneyChinchillaLaw(ChinchillaLaw):
    """L = E + A / N_avg^alpha + B / D^beta, N_avg the parameter count averaged over training."""

    name = "chinchilla-journey"
    required_columns: tuple[str, ...] = ("N_avg", "D")

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        n = positive_column(table, "N_avg", self.name)
        d = positive_column(table, "D", self.name)
        return {"N": n, "D": d, "log_N": np.log(n), "log_D": np.log(d)}
