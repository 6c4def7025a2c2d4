"""Journey Matters: Chinchilla over the average parameter count along training.

For runs whose parameter count changes during training (pruning, growing, sparsification), the
"Journey Matters" seed law replaces N in Chinchilla's L = E + A/N^alpha + B/D^beta by the average
count over training, N_avg = (1/D) * integral of N(t) over the tokens seen. Dense runs have
N_avg = N, so the law reduces to Chinchilla. Input column `N_avg` (and D, loss); the fit, grid and
parameterisation are ChinchillaLaw's (harness/fit/laws/final_loss.py).

HOW SURE: the form is the paper's (Jin et al. 2025, ICLR: Chinchilla with the average parameter
count over pre-training); the paper's own fits and numbers were not read here, so there is no
reproduction. Independent check, scripts/check_journey_pruning.py (runs pruned by this harness,
train.prune, harness/prune.py; N_avg from harness/collect.py): 16 tiny LLaMA proxies (non-embedding
N 42k-461k, D 102k-205k tokens, embedded text, CPU), fitted on 8 dense runs + 4 pruned to 50%,
predicting 4 held-out runs pruned to 75% (split fixed before the runs). Held-out mean (worst)
relative error of the final val loss: this law 0.66% (1.62%); Chinchilla on the final live N 1.84%
(3.39%); Chinchilla on the initial N 0.83% (1.10%, beta on its bound). With a third dense D level
(a sensitivity check added afterwards): 0.70% / 2.09% / 0.84%. So N_avg beats the final count
clearly and the initial count narrowly on the mean (not on the worst run): at these tiny scales
pruning costs little (+0.042 nats at 75%; this law predicts +0.060, the final count +0.132, the
initial count 0), and the Chinchilla form's own misfit of the smallest model (~1-2%) is as large as
the effect. Also the reduction to Chinchilla on dense runs (tests/test_fit_seed_laws.py).
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
