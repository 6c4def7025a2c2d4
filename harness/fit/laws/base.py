"""The contract every law follows.

A law is a small object: named parameters with bounds and an initial-guess grid, and a vectorized
`predict`. The fitter (harness/fit/fitter.py) knows nothing about any particular law: it evaluates
the objective for every grid start at once (theta of shape (S, P)), refines the best starts with
L-BFGS-B inside the bounds, and keeps the best.

`data` is whatever the law needs, prepared once by `prepare` (a dict of numpy arrays). Curve laws
take the LR schedule of each curve and the steps with an observed loss; final-loss laws take
columns such as N and D.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


@dataclass(frozen=True)
class Param:
    name: str
    lower: float
    upper: float
    # Initial values tried for this parameter; the start grid is the Cartesian product over params.
    grid: tuple[float, ...]


class Law:
    """Base class. Subclasses set `name`, `params`, `target` and implement `predict`."""

    name: str = ""
    params: tuple[Param, ...] = ()
    # The column the law predicts (e.g. "loss").
    target: str = "loss"
    # Columns the input table must have besides the target (used for clear input errors).
    required_columns: tuple[str, ...] = ()

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return [(p.lower, p.upper) for p in self.params]

    def initial_grid(self) -> np.ndarray:
        """All starts, shape (S, P): the Cartesian product of each parameter's grid."""
        axes = [np.asarray(p.grid, dtype=float) for p in self.params]
        mesh = np.meshgrid(*axes, indexing="ij")
        return np.stack([m.ravel() for m in mesh], axis=-1)

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        """Predicted target for every point in `data`.

        theta has shape (P,) or (S, P); the result has shape (n,) or (S, n), so the fitter can
        score many starts in one call.
        """
        raise NotImplementedError

    def as_dict(self, theta: Sequence[float]) -> dict[str, float]:
        return {p.name: float(v) for p, v in zip(self.params, theta)}
