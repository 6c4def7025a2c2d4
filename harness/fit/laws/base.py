"""The contract every law follows.

A law is a small object: named parameters with bounds and an initial-guess grid, and a vectorized
`predict`. The fitter (harness/fit/fitter.py) knows nothing about any particular law: it evaluates
the objective for every start at once (theta of shape (S, P)), refines the best starts with
L-BFGS-B inside the bounds, and keeps the best.

What a law must define
----------------------
* `name`: registry name, e.g. "chinchilla": the key of the law in harness/fit/registry.py (the
  CLI's `--law`), spelled with hyphens; the fit reports it in params.json. A test checks they agree.
* `params`: tuple of `Param(name, lower, upper, grid)`. Bounds are hard (L-BFGS-B box); use finite
  or infinite floats. A parameter you want fitted in log space (Chinchilla's a = log A) is simply
  declared as the log parameter; report the natural value through `derived`.
* `predict(theta, data)`: theta (P,) -> (n,), or theta (S, P) -> (S, n). Must be vectorized over
  S (the fitter scores thousands of starts in one call). Return NaN/inf or values <= 0 freely
  where the parameters make no sense: the fitter scores them as +inf.

What a law may override (defaults in this class)
------------------------------------------------
* `target`: the column predicted (default "loss").
* `required_columns`: input columns besides the target; the CLI checks them and stops with a clear
  message naming the file when one is missing.
* `prepare(table) -> data`: turns the parsed input into the `data` that `predict` receives. The
  default takes a mapping of columns (dict of arrays, or a pandas DataFrame) and returns
  `{col: float64 array}` for each required column. Curve laws override it to take a list of
  `harness.fit.io.Curve`. `prepare` must not need the target column, so it also works on
  prediction targets that have no observed loss.
* `starts(data, y) -> (S, P)`: the starts the fitter scores. Default: `initial_grid()`, the
  Cartesian product of each parameter's `grid`. Override for data-dependent starts.
* `jacobian(theta (P,), data) -> (pred (n,), J (n, P))` or None: analytic derivatives of the
  prediction. Default None: the fitter uses central finite differences, batched through the
  vectorized `predict` (one call per gradient), which is fast for cheap laws.
* `n_refine`: how many of the best starts `fit_law` refines by default (4); lower it for laws
  whose evaluation is expensive.
* `derived(theta) -> dict[str, float]`: extra quantities reported next to the parameters (e.g.
  A = exp(a), or a compute-optimal exponent). Default {}.

Anything else (constants such as Tissue's momentum decay) goes in the law's `__init__`.

Helpers for writing laws: `grid_product(*axes)` (a start grid) and `batch_theta(theta)` (theta as
(S, P) plus whether one vector was passed).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np


def grid_product(*axes: Sequence[float]) -> np.ndarray:
    """Cartesian product of 1-D value lists, shape (S, len(axes)): a grid of starts."""
    mesh = np.meshgrid(*[np.asarray(a, dtype=float) for a in axes], indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=-1)


def batch_theta(theta: np.ndarray) -> tuple[np.ndarray, bool]:
    """theta as (S, P), plus whether the caller passed a single (P,) vector (then `predict`
    returns shape (n,) instead of (S, n))."""
    theta = np.asarray(theta, dtype=float)
    return np.atleast_2d(theta), theta.ndim == 1


@dataclass(frozen=True)
class Param:
    name: str
    lower: float
    upper: float
    # Initial values tried for this parameter; the start grid is the Cartesian product over params.
    grid: tuple[float, ...]
    # True where each finite bound is a nested, simpler law (e.g. a clock exponent p = 1 is the plain
    # LR-area clock): a fit resting there is an answer, not a parameter the data failed to pin down,
    # so the fit checks (harness/fit/fit_checks.py) do not refuse it.
    nested_at_bounds: bool = False


class Law(ABC):
    """Base class. Subclasses set `name`, `params`, `target` and implement `predict`."""

    name: str = ""
    params: tuple[Param, ...] = ()
    # The column the law predicts (e.g. "loss").
    target: str = "loss"
    # Columns the input table must have besides the target (used for clear input errors).
    required_columns: tuple[str, ...] = ()
    # How many of the best starts the fitter refines when the caller does not say.
    n_refine: int = 4

    @property
    def param_names(self) -> list[str]:
        return [p.name for p in self.params]

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return [(p.lower, p.upper) for p in self.params]

    def initial_grid(self) -> np.ndarray:
        """All starts, shape (S, P): the Cartesian product of each parameter's grid."""
        return grid_product(*(p.grid for p in self.params))

    def starts(self, data: Mapping[str, Any], y: np.ndarray) -> np.ndarray:
        """Starts the fitter scores, shape (S, P). Override for data-dependent starts."""
        return self.initial_grid()

    def prepare(self, table: Any) -> dict[str, Any]:
        """Default: the required columns of a column mapping, as float64 arrays."""
        return {c: np.asarray(table[c], dtype=float) for c in self.required_columns}

    @abstractmethod
    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        """Predicted target for every point in `data`.

        theta has shape (P,) or (S, P); the result has shape (n,) or (S, n), so the fitter can
        score many starts in one call.
        """

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray] | None:
        """Optional analytic (pred (n,), d pred / d theta (n, P)); None means finite differences."""
        return None

    def derived(self, theta: Sequence[float]) -> dict[str, float]:
        """Extra reported quantities computed from the parameters."""
        return {}

    def as_dict(self, theta: Sequence[float]) -> dict[str, float]:
        return {p.name: float(v) for p, v in zip(self.params, theta)}
