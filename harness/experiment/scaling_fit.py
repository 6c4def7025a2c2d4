"""Chinchilla Approach 3 on a table of runs: L(N, D) = E + A/N^alpha + B/D^beta, with bootstrap
intervals, the compute-optimal allocation, loud warnings and a plot. Shared by the experiment kinds
`ladder` and `cooldown_branches`.

    fit = fit_approach3(N, D, loss, n_boot=200, level=0.95)
    fit.params        {"E", "A", "alpha", "B", "beta", "a", "b"}   (a, b: N_opt ~ C^a, D_opt ~ C^b)
    fit.intervals     {name: (lo, hi)}: percentile intervals over the bootstrap refits
    fit.predict(N, D), fit.predict_interval(N, D), fit.optimum(C), fit.to_json(), fit.warnings

The fitter is the harness's own (harness/fit): `ChinchillaLaw` (the log-sum-exp parameterisation,
Hoffmann's 4,500-start grid, Huber(1e-3) on log residuals) through `fit_law`, and `bootstrap`, which
resamples runs (one point each; `groups` resamples whole groups instead) and refits from the best fit.
The best fit refines the 20 best of the grid's starts (N_REFINE) rather than the fitter's default 4.

Which N and which C: N is whatever the caller passes; the experiment kinds pass non-embedding
parameters by default (Kaplan's and the ladder recipes' N; `param_count: total` switches to all
parameters). C is 6 N D with that same N (Hoffmann's convention, the one the closed-form optimum
`chinchilla_optimal` solves), so it differs from the harness's measured FLOPs (attention and the
embedding are not in 6ND); `optimum(C)` takes C in that convention.

Warnings (a fit is always returned; the caller shows them): the optimizer did not converge, alpha or
beta (or another parameter) sits on its bound, a bootstrap interval spans more than 10x, fewer than
2 model sizes (alpha is not identified) or a size with fewer than 2 token counts (beta rests on the
other sizes only), fewer than 2 distinct D overall (beta is not identified).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from harness.fit.laws.final_loss import FLOPS_PER_PARAM_TOKEN, ChinchillaLaw, chinchilla_optimal

# The law's parameter (theta) -> the reported one; amplitudes are fitted as logs.
_REPORTED = (("E", "e", np.exp), ("A", "a", np.exp), ("B", "b", np.exp),
             ("alpha", "alpha", None), ("beta", "beta", None))
PARAM_ORDER = ("E", "A", "alpha", "B", "beta", "a", "b")
# A parameter within this distance of its bound (in the law's own units) is "at the bound".
_BOUND_TOL = 1e-3
# An interval wider than this ratio (hi / lo) says the data do not pin the parameter down.
_WIDE_RATIO = 10.0
# Starts refined by L-BFGS-B. The fitter's default (4) lands in a local minimum on clean synthetic
# ladders (beta at a grid value of 2 with e absorbing the D term); 20 finds the global one and costs
# well under a second on tens of points.
N_REFINE = 20
# An optimum further than this factor outside the fitted N (or D) range is flagged as unusable.
OUTSIDE_RATIO = 10.0
MIN_POINTS = len(ChinchillaLaw.params)  # 5 parameters: fewer points cannot determine them


def _reported(theta: np.ndarray) -> dict[str, np.ndarray]:
    """theta (..., 5) -> {E, A, alpha, B, beta, a, b}, each of shape theta.shape[:-1]."""
    theta = np.asarray(theta, dtype=float)
    names = ChinchillaLaw().param_names
    out = {}
    for name, source, transform in _REPORTED:
        value = theta[..., names.index(source)]
        out[name] = transform(value) if transform else value
    with np.errstate(all="ignore"):
        total = out["alpha"] + out["beta"]
        out["a"] = np.where(total > 0, out["beta"] / total, np.nan)   # N_opt ~ C^a
        out["b"] = np.where(total > 0, out["alpha"] / total, np.nan)  # D_opt ~ C^b
    return out


def _data(N: Any, D: Any) -> dict[str, np.ndarray]:
    n, d = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
    return ChinchillaLaw().prepare({"N": n.ravel(), "D": d.ravel()})


@dataclass
class ScalingFit:
    """A fitted Approach-3 law (see the module docstring for N, C and the warnings)."""

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    level: float
    n_points: int
    n_boot: int
    converged: bool
    warnings: list[str] = field(default_factory=list)
    theta: np.ndarray = field(default_factory=lambda: np.zeros(5))            # (5,) the law's parameters
    boot_thetas: np.ndarray = field(default_factory=lambda: np.zeros((0, 5)))  # (n_boot, 5)
    metrics: dict[str, float] = field(default_factory=dict)
    # The N and D the law was fitted on: an optimum far outside them is flagged (optimum()).
    n_range: tuple[float, float] = (0.0, float("inf"))
    d_range: tuple[float, float] = (0.0, float("inf"))

    def predict(self, N: Any, D: Any) -> np.ndarray:
        shape = np.broadcast(np.asarray(N), np.asarray(D)).shape
        return np.asarray(ChinchillaLaw().predict(self.theta, _data(N, D))).reshape(shape)

    def predict_interval(self, N: Any, D: Any) -> tuple[np.ndarray, np.ndarray]:
        """Percentile interval of the prediction over the bootstrap refits."""
        shape = np.broadcast(np.asarray(N), np.asarray(D)).shape
        if not len(self.boot_thetas):
            pred = self.predict(N, D)
            return pred, pred
        with np.errstate(all="ignore"):
            preds = np.asarray(ChinchillaLaw().predict(self.boot_thetas, _data(N, D)), dtype=float)
        lo, hi = _percentiles(preds, self.level)
        return lo.reshape(shape), hi.reshape(shape)

    def optimum(self, C: float) -> dict[str, Any]:
        """Compute-optimal N, D (C = 6 N D) and the loss there, each with its bootstrap interval
        (every refit's own optimum). Empty values and a `note` when alpha or beta is not positive."""
        p = self.params
        if not (p["alpha"] > 0 and p["beta"] > 0):
            return {"C": float(C), "N_opt": None, "D_opt": None, "loss": None, "intervals": {},
                    "note": "alpha or beta is 0: the law has no finite compute-optimal allocation"}
        best = chinchilla_optimal(C, p["A"], p["B"], p["alpha"], p["beta"])
        out: dict[str, Any] = {"C": float(C), "N_opt": float(best.N_opt), "D_opt": float(best.D_opt),
                               "tokens_per_param": float(best.tokens_per_param),
                               "loss": float(self.predict(best.N_opt, best.D_opt)), "intervals": {},
                               "warnings": self._allocation_warnings(float(best.N_opt), float(best.D_opt))}
        boot = _reported(self.boot_thetas)
        ok = (boot["alpha"] > 0) & (boot["beta"] > 0)
        if ok.any():
            alloc = chinchilla_optimal(C, boot["A"][ok], boot["B"][ok], boot["alpha"][ok], boot["beta"][ok])
            with np.errstate(all="ignore"):
                losses = np.asarray(ChinchillaLaw().predict(self.boot_thetas[ok], _data(alloc.N_opt, alloc.D_opt)))
            # Row i of `losses` is refit i on every refit's optimum: its own optimum is the diagonal.
            own = np.diagonal(np.atleast_2d(losses)) if losses.ndim == 2 else losses
            for name, samples in (("N_opt", alloc.N_opt), ("D_opt", alloc.D_opt), ("loss", own)):
                lo, hi = _percentiles(np.asarray(samples, dtype=float), self.level)
                out["intervals"][name] = (float(lo), float(hi))
        return out

    def _allocation_warnings(self, n_opt: float, d_opt: float) -> list[str]:
        """Loud notes when the optimum lies > OUTSIDE_RATIO beyond the fitted N or D, or rests on a
        parameter pinned at its bound: the number is then the law's shape, not the data's."""
        notes = []
        for name, value, (lo, hi) in (("N_opt", n_opt, self.n_range), ("D_opt", d_opt, self.d_range)):
            if value < lo / OUTSIDE_RATIO or value > hi * OUTSIDE_RATIO:
                side = "below the smallest" if value < lo else "above the largest"
                bound = lo if value < lo else hi
                notes.append(f"{name} = {value:.3g} is {max(value / bound, bound / value):.0f}x {side} value fitted "
                             f"({bound:.3g}): do not use it as a prediction")
        if any("bound" in w for w in self.warnings):
            notes.append("a parameter of the fit sits at its bound, so the allocation follows the bound, not the data")
        return notes

    def to_json(self) -> dict[str, Any]:
        return {"law": "L = E + A/N^alpha + B/D^beta (Chinchilla Approach 3)",
                "params": dict(self.params),
                "intervals": {k: [v[0], v[1]] for k, v in self.intervals.items()},
                "level": self.level, "n_points": self.n_points, "n_boot": self.n_boot,
                "converged": self.converged, "metrics": dict(self.metrics), "warnings": list(self.warnings)}


def _percentiles(samples: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    q = 100 * (1 - level) / 2
    return np.nanpercentile(samples, q, axis=0), np.nanpercentile(samples, 100 - q, axis=0)


def design_warnings(N: np.ndarray, D: np.ndarray) -> list[str]:
    """What the (N, D) design cannot identify (see the module docstring)."""
    warnings = []
    sizes = np.unique(N)
    if sizes.size < 2:
        warnings.append(f"too few points: {sizes.size} model size(s); alpha (the N exponent) needs at least 2 sizes")
    if np.unique(D).size < 2:
        warnings.append("too few points: a single token count D; beta (the D exponent) needs at least 2 values of D")
    else:
        thin = [f"{n:.3g}" for n in sizes if np.unique(D[N == n]).size < 2]
        if thin:
            warnings.append(f"too few points: size(s) N = {', '.join(thin)} have a single D each; "
                            "train each size on at least 2 token counts")
    return warnings


def fit_warnings(fit: ScalingFit, law: ChinchillaLaw) -> list[str]:
    warnings = []
    if not fit.converged:
        warnings.append("the fit did not converge (L-BFGS-B stopped early): do not trust its parameters")
    names = law.param_names
    for param, (lo, hi) in zip(law.params, law.bounds):
        value = float(fit.theta[names.index(param.name)])
        if min(value - lo, hi - value) < _BOUND_TOL:
            shown = {"e": "E", "a": "A", "b": "B"}.get(param.name, param.name)
            side = "lower" if value - lo < hi - value else "upper"
            warnings.append(f"{shown} sits at its {side} bound ({param.name} = {value:.4g}): the data do not "
                            "determine it; add sizes or token counts")
    for name, (lo, hi) in fit.intervals.items():
        if not (np.isfinite(lo) and np.isfinite(hi)):
            continue
        if lo <= 0 < hi or (lo > 0 and hi / lo > _WIDE_RATIO):
            warnings.append(f"the {fit.level:.0%} interval of {name} spans more than {_WIDE_RATIO:g}x "
                            f"({lo:.3g} .. {hi:.3g}): {name} is poorly determined")
    return warnings


def fit_approach3(N: Sequence[float], D: Sequence[float], loss: Sequence[float], *,
                  groups: Optional[Sequence[Any]] = None, n_boot: int = 200, level: float = 0.95,
                  seed: int = 0) -> ScalingFit:
    """Fit L = E + A/N^alpha + B/D^beta to runs (one point each) with `n_boot` bootstrap refits over
    the points (or over `groups`: one label per point); raises ValueError with fewer than 5 points
    or non-positive values, and otherwise returns the fit with its warnings."""
    from harness.fit.fitter import bootstrap, fit_law

    N, D, loss = (np.asarray(v, dtype=float).ravel() for v in (N, D, loss))
    if not N.size == D.size == loss.size:
        raise ValueError(f"fit_approach3: N, D and loss need one value per run (got {N.size}, {D.size}, {loss.size})")
    if N.size < MIN_POINTS:
        raise ValueError(f"fit_approach3: {N.size} point(s); the law has {MIN_POINTS} parameters, so it needs "
                         f"at least {MIN_POINTS} runs (better: 3+ sizes x 2+ token counts)")
    for name, values in (("N", N), ("D", D), ("loss", loss)):
        if not np.all(np.isfinite(values) & (values > 0)):
            raise ValueError(f"fit_approach3: {name} must be finite and > 0")
    if not 0 < level < 1:
        raise ValueError(f"fit_approach3: level must be in (0, 1), got {level}")
    law = ChinchillaLaw()
    data = law.prepare({"N": N, "D": D})
    best = fit_law(law, data, loss, seed=seed, n_refine=N_REFINE)
    boot_thetas = np.zeros((0, len(law.params)))
    intervals: dict[str, tuple[float, float]] = {}
    if n_boot > 0:
        boot = bootstrap(law, data, loss, groups=None if groups is None else np.asarray(groups),
                         n_boot=n_boot, seed=seed, fit=best, level=level)
        boot_thetas = boot.thetas
        lo, hi = (_reported(q) for q in _percentiles(boot_thetas, level))
        # Percentiles of theta map to E, A, B (monotone) exactly; a and b are functions of two
        # parameters, so take their own percentiles over the refits.
        derived = _reported(boot_thetas)
        for name in ("a", "b"):
            lo[name], hi[name] = _percentiles(derived[name], level)
        intervals = {name: (float(lo[name]), float(hi[name])) for name in PARAM_ORDER}
    params = {name: float(v) for name, v in _reported(best.theta).items()}
    fit = ScalingFit(params={k: params[k] for k in PARAM_ORDER}, intervals=intervals, level=level,
                     n_points=int(N.size), n_boot=int(len(boot_thetas)), converged=bool(best.converged),
                     theta=np.asarray(best.theta, dtype=float), boot_thetas=boot_thetas,
                     n_range=(float(N.min()), float(N.max())), d_range=(float(D.min()), float(D.max())),
                     metrics=dict(best.metrics))
    fit.warnings = design_warnings(N, D) + fit_warnings(fit, law)
    return fit


def compute(N: Any, D: Any) -> np.ndarray:
    """C = 6 N D (the convention of `ScalingFit.optimum`)."""
    return FLOPS_PER_PARAM_TOKEN * np.asarray(N, dtype=float) * np.asarray(D, dtype=float)


def plot_fit(ax_or_path: Any, table: Mapping[str, Any], fits: Mapping[str, ScalingFit], *,
             size_column: str = "size", title: str = "", interval: bool = True) -> Optional[Path]:
    """Loss against D (log) for each model size (points), with each fit's line per size.

    `table` has columns N, D, loss (and `size_column` to label the sizes; else N labels them). Draws
    on a matplotlib Axes, or writes a PNG when given a path (returned). Line styles tell fits apart
    (e.g. "independent" vs "branches"); the first fit's bootstrap band is shaded when `interval`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    frame = pd.DataFrame({k: np.asarray(table[k]) for k in ("N", "D", "loss")})
    frame["label"] = np.asarray(table[size_column]) if size_column in table else [f"N={n:.3g}" for n in frame["N"]]
    path = None if hasattr(ax_or_path, "plot") else Path(ax_or_path)
    fig = None
    if path is not None:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
    else:
        ax = ax_or_path
    d_lo, d_hi = frame["D"].min(), frame["D"].max()
    grid = np.geomspace(d_lo / 1.5, d_hi * 1.5, 60)
    styles = ["-", "--", ":", "-."]
    for i, (n, group) in enumerate(frame.groupby("N", sort=True)):
        color = f"C{i % 10}"
        ax.scatter(group["D"], group["loss"], color=color, zorder=3, label=f"{group['label'].iloc[0]} (N={n:.3g})")
        for j, (name, fit) in enumerate(fits.items()):
            ax.plot(grid, fit.predict(n, grid), styles[j % len(styles)], color=color, alpha=0.8,
                    label=name if i == 0 else None)
            if interval and j == 0 and fit.n_boot:
                lo, hi = fit.predict_interval(n, grid)
                ax.fill_between(grid, lo, hi, color=color, alpha=0.12, linewidth=0)
    ax.set_xscale("log")
    ax.set_xlabel("D (training tokens)")
    ax.set_ylabel("final val loss")
    ax.set_title(title or "loss vs D per size, with the Approach-3 fit")
    ax.legend(fontsize=7)
    if path is None:
        return None
    from harness.files import save_figure

    return save_figure(fig, path)
