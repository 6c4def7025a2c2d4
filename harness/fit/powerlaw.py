"""Power laws y = c * x1^k1 * x2^k2 ... fitted by OLS in log space, with bootstrap intervals.

Shared by the IsoFLOP analysis (N_opt ∝ C^a) and the hyperparameter laws (eta_opt(N, D),
B_opt(D), tau_opt(D/N), B_crit(D)): all of them regress log y on the logs of one or two inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np


@dataclass(frozen=True)
class PowerLaw:
    """y = coefficient * prod_i x_i^exponents[i]; `*_ci` are (low, high) bootstrap intervals."""

    inputs: tuple[str, ...]
    coefficient: float
    exponents: tuple[float, ...]
    coefficient_ci: tuple[float, float] | None = None
    exponents_ci: tuple[tuple[float, float], ...] | None = None
    n_points: int = 0
    # Bootstrap replicates of (log coefficient, exponents...), shape (n_bootstrap, 1 + k).
    bootstrap: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def exponent(self) -> float:
        """The exponent of a one-input law."""
        if len(self.exponents) != 1:
            raise ValueError(f"this law has {len(self.exponents)} inputs; use .exponents")
        return self.exponents[0]

    def __call__(self, *xs: float | np.ndarray, **named: float | np.ndarray) -> np.ndarray:
        """Evaluate, with inputs given in order or by name: law(C) or law(N=..., D=...)."""
        values = list(xs) + [named[name] for name in self.inputs[len(xs):]]
        if len(values) != len(self.inputs):
            raise ValueError(f"expected inputs {self.inputs}")
        y = np.asarray(self.coefficient, dtype=float)
        for x, k in zip(values, self.exponents):
            y = y * np.asarray(x, dtype=float) ** k
        return y

    def formula(self, output: str = "y") -> str:
        terms = " * ".join(f"{name}^{k:.4g}" for name, k in zip(self.inputs, self.exponents))
        return f"{output} = {self.coefficient:.4g} * {terms}"

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {"coefficient": self.coefficient, "n_points": self.n_points}
        for name, k in zip(self.inputs, self.exponents):
            out[f"exponent_{name}"] = k
        if self.coefficient_ci is not None:
            out["coefficient_ci"] = list(self.coefficient_ci)
        if self.exponents_ci is not None:
            for name, ci in zip(self.inputs, self.exponents_ci):
                out[f"exponent_{name}_ci"] = list(ci)
        return out


def _design(log_x: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(log_x)), log_x])


def fit_power_law(
    inputs: Mapping[str, np.ndarray],
    y: np.ndarray,
    n_bootstrap: int = 0,
    ci: float = 0.95,
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> PowerLaw:
    """OLS of log y on log x_i. With n_bootstrap > 0, resample and report percentile intervals:
    whole groups (one label per point, e.g. the (N, D) cell of a sweep: its runs are not
    independent, so resampling them one by one understates the spread) or, without `groups`,
    points (what the official Step Law code does with its near-optimal runs).
    """
    names = tuple(inputs)
    y = np.asarray(y, dtype=float)
    log_x = np.column_stack([np.log(np.asarray(inputs[k], dtype=float)) for k in names])
    if not (np.all(np.isfinite(log_x)) and np.all(y > 0) and np.all(np.isfinite(y))):
        raise ValueError("power-law fit needs finite, positive inputs and outputs")
    n, k = log_x.shape
    if n < k + 1:
        raise ValueError(f"power-law fit in {names} needs at least {k + 1} points, got {n}")
    if np.linalg.matrix_rank(_design(log_x)) < k + 1:
        raise ValueError(f"power-law fit in {names}: the inputs do not vary independently")
    beta, *_ = np.linalg.lstsq(_design(log_x), np.log(y), rcond=None)

    coef_ci = exps_ci = boot = None
    if n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        if groups is None:
            idx = rng.integers(0, n, size=(n_bootstrap, n))
            X = _design(log_x)[idx]                               # (R, n, 1+k)
            Y = np.log(y)[idx]                                    # (R, n)
        else:
            # Resampling groups through per-point weights (a group drawn k times weighs k):
            # sqrt(w) scales the rows of the weighted least-squares problem.
            labels, inverse = np.unique(np.asarray(groups).ravel(), return_inverse=True)
            if inverse.size != n:
                raise ValueError(f"power-law fit: groups must have one label per point ({n}), got {inverse.size}")
            draws = rng.integers(0, labels.size, size=(n_bootstrap, labels.size))
            counts = np.stack([np.bincount(d, minlength=labels.size) for d in draws])  # (R, G)
            root_w = np.sqrt(counts[:, inverse].astype(float))                          # (R, n)
            X = _design(log_x)[None] * root_w[:, :, None]
            Y = np.log(y)[None] * root_w
        # Batched least squares via the pseudo-inverse: degenerate resamples (all points at the
        # same x) give the minimum-norm solution instead of an error; they are rare and only
        # widen the interval.
        boot = np.einsum("rpn,rn->rp", np.linalg.pinv(X), Y)      # (R, 1+k)
        lo, hi = 100 * (1 - ci) / 2, 100 * (1 + ci) / 2
        q = np.percentile(boot, [lo, hi], axis=0)                 # (2, 1+k)
        coef_ci = (float(np.exp(q[0, 0])), float(np.exp(q[1, 0])))
        exps_ci = tuple((float(q[0, j]), float(q[1, j])) for j in range(1, k + 1))
    return PowerLaw(
        inputs=names,
        coefficient=float(np.exp(beta[0])),
        exponents=tuple(float(b) for b in beta[1:]),
        coefficient_ci=coef_ci,
        exponents_ci=exps_ci,
        n_points=n,
        bootstrap=boot,
    )
