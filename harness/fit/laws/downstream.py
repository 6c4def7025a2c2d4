"""Downstream error as a function of loss: Gadre et al. 2024, Err(L) = epsilon - k exp(-gamma L).

The law maps a model's validation loss to its average top-1 error on downstream tasks. As loss
falls the error falls from near epsilon (chance) towards epsilon - k exp(-gamma L). Gadre fit it
with scipy curve_fit from all-ones starts (mlfoundations/scaling, `decay_ours`), on the same
points as the loss law plus one larger model; chained with a loss law it predicts the error of
a model that was never trained.

We fit log k instead of k (k spans orders of magnitude; gamma L is typically 2-10), with the
harness's usual Huber on log residuals.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Law, Param
from harness.fit.laws.final_loss import positive_column, unpack


class GadreErrorLaw(Law):
    """Err(L) = epsilon - exp(log_k - gamma L); input column `loss`, target column `error`."""

    name = "gadre-error"
    target = "error"
    required_columns = ("loss",)
    params = (
        # Errors are fractions, so epsilon (the error far up the loss axis) is near chance, <= 1;
        # the bound leaves room for error metrics on other scales.
        Param("epsilon", 0.0, 10.0, (0.5, 0.75, 1.0)),
        Param("log_k", -20.0, 60.0, (0.0, 2.0, 5.0, 10.0)),
        Param("gamma", 0.0, 20.0, (0.5, 1.0, 2.0, 4.0)),
    )

    def prepare(self, table: Mapping[str, Any]) -> dict[str, np.ndarray]:
        return {"loss": positive_column(table, "loss", self.name)}

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        epsilon, log_k, gamma = unpack(theta, 3)
        err = epsilon - np.exp(log_k - gamma * data["loss"])
        # The fitter scores log(err): a start whose error is <= 0 somewhere is simply bad, so
        # clip to a tiny positive value instead of producing NaN.
        return np.maximum(err, 1e-12)

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        epsilon, log_k, gamma = (float(v) for v in theta)
        return {"epsilon": epsilon, "k": float(np.exp(log_k)), "gamma": gamma}
