"""The critical mixture ratio (CMR) of continued pre-training (Gu et al. 2024, "CMR Scaling Law:
Predicting Critical Mixture Ratios for Continual Pre-training of Language Models", arXiv 2407.17467).

The setting: a base model trained on general data continues on a mix with a share r of domain data
(the mixture ratio) for T tokens. The domain loss falls faster the larger r; the general loss falls a
little at small r and rises at large r (forgetting). The paper formalises the trade-off as: minimise
the domain loss subject to the general loss staying within a tolerance of where it started; a ratio
is *feasible* when it keeps that constraint, and the CMR is the largest feasible ratio (the most
domain data the model can take without losing general ability). The paper finds loss a power law in
the ratio and the tokens, and the CMR itself predictable in T (R_CMR = b0 + b1 T^s).

What this module implements (the paper's text was not available here beyond its abstract and
summaries, so the exact surface is ASSUMED, in the spirit of "loss is a power law in the mixture
ratio and the tokens"):

    L_s(r, T) = L_s0 + (T / T_ref)^p_s * (a_s + b_s * r^q_s)        for each source s (general, domain)

L_s0 is the base model's loss on s (at T = 0; measured, not fitted), T the continued-training tokens,
T_ref a fixed unit (the sweep's smallest T), and (p, q, a, b) fitted per source with the harness's
multi-start Huber fitter on log loss. For the general source, a < 0 is the gain from more general
data and b > 0 the forgetting, growing as r^q; both scale with T^p. The general-loss constraint
L_g(r, T) <= L_g0 + tolerance then has the closed-form boundary

    r_CMR(T) = ((tolerance * (T / T_ref)^-p - a) / b)^(1/q)

(r_CMR is the largest feasible ratio at budget T). Its interval is a bootstrap over the sweep's
(r, T) points. `fit_cmr` refuses (CMRError) when the general fit did not converge, when no ratio in
(0, 1] is feasible, or when b <= 0 (no forgetting seen: every ratio is feasible, the CMR is not
identified by this sweep), and warns loudly when the CMR falls outside the sampled ratios (then it
is an extrapolation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from harness.fit.laws.base import Law, Param, batch_theta


class CMRError(ValueError):
    """The sweep does not determine a critical mixture ratio; the message says why and what to change."""


class CMRLossLaw(Law):
    """L(r, T) = L0 + (T/T_ref)^p (a + b r^q) for one source: columns ratio, T, L0 (see the module docstring)."""

    name = "cmr"
    target = "loss"
    required_columns: tuple[str, ...] = ("ratio", "T", "L0")
    params = (
        Param("p", 0.01, 2.0, (0.2, 0.5, 1.0)),
        Param("q", 0.1, 5.0, (0.5, 1.0, 2.0)),
        # No exact zeros among the starts: the fitter scales each parameter by its start's magnitude
        # (1 at zero), and a unit first step in a or b drives the loss negative and stalls L-BFGS-B.
        Param("a", -20.0, 20.0, (-0.5, -0.05, -0.005, 0.01)),
        Param("b", -20.0, 20.0, (-0.5, -0.01, 0.01, 0.5)),
    )

    def __init__(self, t_ref: float | None = None):
        self.t_ref = t_ref  # None: the smallest T of the data `prepare` sees

    def prepare(self, table: Any) -> dict[str, np.ndarray]:
        data = {c: np.asarray(table[c], dtype=float) for c in self.required_columns}
        if np.any(data["T"] <= 0) or np.any(data["ratio"] < 0) or np.any(data["ratio"] > 1):
            raise CMRError("cmr: needs T > 0 (continued-training tokens) and ratio in [0, 1] (domain share)")
        if self.t_ref is None:
            self.t_ref = float(data["T"].min())
        return {**data, "t": data["T"] / self.t_ref}

    def predict(self, theta: np.ndarray, data: Mapping[str, Any]) -> np.ndarray:
        th, single = batch_theta(theta)
        p, q, a, b = (th[:, i:i + 1] for i in range(4))
        with np.errstate(all="ignore"):
            out = data["L0"][None, :] + data["t"][None, :] ** p * (a + b * data["ratio"][None, :] ** q)
        return out[0] if single else out

    def jacobian(self, theta: np.ndarray, data: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """Analytic: finite differences scale their step by |theta|, which is 0 at the a = 0 / b = 0 starts."""
        p, q, a, b = (float(v) for v in theta)
        t, r = data["t"], data["ratio"]
        tp = t ** p
        with np.errstate(divide="ignore", invalid="ignore"):
            rq = r ** q
            drq_dq = np.where(r > 0, rq * np.log(np.where(r > 0, r, 1.0)), 0.0)
        inner = a + b * rq
        pred = data["L0"] + tp * inner
        jac = np.stack([np.log(t) * tp * inner, tp * b * drq_dq, tp, tp * rq], axis=1)
        return pred, jac

    def critical_ratio(self, theta: Sequence[float], tokens: float, tolerance: float = 0.0) -> float:
        """The largest r with L(r, tokens) <= L0 + tolerance (nan when b <= 0 or none is feasible)."""
        p, q, a, b = (float(v) for v in theta)
        t = tokens / float(self.t_ref or tokens)
        if b <= 0:
            return float("nan")
        inner = (tolerance * t ** -p - a) / b
        return float(inner ** (1.0 / q)) if inner >= 0 else float("nan")


@dataclass
class CMRResult:
    cmr: float  # the critical mixture ratio at `tokens` (domain share)
    interval: tuple[float, float]  # bootstrap percentile interval at `level`
    level: float
    tokens: float  # the continued-training budget T the CMR is for
    tolerance: float
    general: dict[str, Any]  # FitResult.to_json() of the general-loss law
    domain: dict[str, Any] | None  # of the domain-loss law (None when not fitted)
    t_ref: float
    n_boot_ok: int
    sampled_ratios: tuple[float, float]
    cmr_by_tokens: dict[float, float] = field(default_factory=dict)  # the CMR at each sampled T
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"cmr": self.cmr, "interval": list(self.interval), "level": self.level, "tokens": self.tokens,
                "tolerance": self.tolerance, "t_ref": self.t_ref, "n_boot_ok": self.n_boot_ok,
                "sampled_ratios": list(self.sampled_ratios),
                "cmr_by_tokens": {str(k): v for k, v in self.cmr_by_tokens.items()},
                "general": self.general, "domain": self.domain, "warnings": self.warnings}


def _fit(table: Mapping[str, np.ndarray], loss: np.ndarray, t_ref: float, *, n_refine: int = 4):
    from harness.fit.fitter import fit_law

    law = CMRLossLaw(t_ref=t_ref)
    return law, fit_law(law, law.prepare(table), loss, n_refine=n_refine)


def fit_cmr(ratio: Sequence[float], tokens: Sequence[float], general_loss: Sequence[float], general_base: float,
            domain_loss: Sequence[float] | None = None, domain_base: float | None = None, *,
            tolerance: float = 0.0, budget: float | None = None, n_boot: int = 200, level: float = 0.95,
            seed: int = 0) -> CMRResult:
    """Fit the general (and domain) loss surfaces of a mixture sweep and the CMR at `budget` tokens
    (default the largest sampled T), with a bootstrap interval over the sweep's points."""
    r, T, g = (np.asarray(v, dtype=float) for v in (ratio, tokens, general_loss))
    if not (r.shape == T.shape == g.shape) or r.size < 5:
        raise CMRError(f"cmr: needs >= 5 (ratio, T, loss) points of equal length, got {r.size}; sample more "
                       "ratios or token counts")
    if np.unique(r).size < 3:
        raise CMRError("cmr: needs at least 3 distinct mixture ratios to fit the ratio exponent")
    t_ref = float(T.min())
    budget = float(T.max()) if budget is None else float(budget)
    table = {"ratio": r, "T": T, "L0": np.full_like(r, general_base)}
    law, general = _fit(table, g, t_ref)
    if not general.converged:
        raise CMRError(f"cmr: the general-loss fit did not converge (objective {general.objective:.3g}); the CMR "
                       "would be meaningless. Sample more (ratio, T) points or longer continuations")
    b = general.params["b"]
    if b <= 0:
        raise CMRError(f"cmr: the general loss does not rise with the domain ratio (fitted b = {b:.3g} <= 0): no "
                       "forgetting within the sampled ratios, so every ratio is feasible and the CMR is not "
                       "identified. Sample larger domain ratios or more tokens")
    cmr = law.critical_ratio(general.theta, budget, tolerance)
    if not np.isfinite(cmr):
        raise CMRError(f"cmr: no domain ratio keeps the general loss within {tolerance} of the base at T={budget:g} "
                       "(even r = 0 loses general ability): raise the tolerance or check the base run")
    warnings = []
    r2 = general.metrics.get("r2", float("nan"))
    if not r2 >= 0.5:
        warnings.append(f"WARNING: the general-loss surface fits the sweep poorly (R² {r2:.2f} < 0.5): the CMR rests "
                        "on a law the data barely support; average seeds or train the proxies longer")
    # A parameter resting on its box (e.g. q = 5) is set by the box, not the data: the CMR it gives
    # is only as good as that arbitrary bound.
    from harness.fit.fit_checks import bound_problems

    warnings += [f"WARNING: general-loss surface: {p.message}" for p in bound_problems(law, general.theta)]
    lo_r, hi_r = float(r.min()), float(r.max())
    if not lo_r <= cmr <= hi_r:
        warnings.append(f"WARNING: the CMR {cmr:.3g} lies outside the sampled ratios [{lo_r:g}, {hi_r:g}]: it is an "
                        "extrapolation of the fitted surface, not a measurement; sample ratios around it")
    boots = []
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        pick = rng.integers(0, r.size, size=r.size)
        if np.unique(r[pick]).size < 3:
            continue
        try:
            boot_law, fit = _fit({k: v[pick] for k, v in table.items()}, g[pick], t_ref, n_refine=2)
        except Exception:  # noqa: BLE001 - a degenerate resample is skipped, and counted below
            continue
        value = boot_law.critical_ratio(fit.theta, budget, tolerance)
        if fit.converged and np.isfinite(value):
            boots.append(value)
    if n_boot and len(boots) < 0.8 * n_boot:
        warnings.append(f"WARNING: only {len(boots)} of {n_boot} bootstrap refits gave a CMR; the interval is "
                        "unreliable")
    alpha = (1 - level) / 2
    interval = (float(np.quantile(boots, alpha)), float(np.quantile(boots, 1 - alpha))) if boots else (np.nan, np.nan)
    domain = None
    if domain_loss is not None and domain_base is not None:
        d_table = {"ratio": r, "T": T, "L0": np.full_like(r, domain_base)}
        _, d_fit = _fit(d_table, np.asarray(domain_loss, dtype=float), t_ref)
        domain = d_fit.to_json()
        if not d_fit.converged or not d_fit.metrics.get("r2", float("nan")) >= 0.5:
            warnings.append(f"WARNING: the domain-loss surface fits poorly (R² {d_fit.metrics.get('r2', float('nan')):.2f}, "
                            f"converged {d_fit.converged}); its dashed curves in the report are unreliable")
    by_tokens = {float(t): law.critical_ratio(general.theta, float(t), tolerance) for t in np.unique(T)}
    return CMRResult(cmr=cmr, interval=interval, level=level, tokens=budget, tolerance=tolerance,
                     general=general.to_json(), domain=domain, t_ref=t_ref, n_boot_ok=len(boots),
                     sampled_ratios=(lo_r, hi_r), cmr_by_tokens=by_tokens, warnings=warnings)


@dataclass
class HoldoutCheck:
    """Forward-in-time check of one source's surface: fitted on T < T_max, scored on the T_max points."""

    source: str
    tokens: float
    n_fit: int
    n_held: int
    converged: bool
    mean_rel_error: float
    max_rel_error: float
    # Baseline that knows no law: each ratio's loss at the last fitted T, carried forward unchanged.
    persistence_mean_rel_error: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def holdout_check(source: str, ratio: Sequence[float], tokens: Sequence[float], loss: Sequence[float],
                  base: float) -> HoldoutCheck | None:
    """Fit the surface on every T below the largest and predict the largest T's points (an independent check
    of the assumed surface on the sweep's own data); None when the sweep has too few points for it."""
    r, T, y = (np.asarray(v, dtype=float) for v in (ratio, tokens, loss))
    t_max = float(T.max())
    fit_rows, held = T < t_max, T == t_max
    # 4 free parameters: ask for more fitted points than that, and for every held ratio to have been seen.
    if fit_rows.sum() < 6 or np.unique(T[fit_rows]).size < 2 or np.unique(r[fit_rows]).size < 3:
        return None
    table = {"ratio": r, "T": T, "L0": np.full_like(r, base)}
    law, fit = _fit({k: v[fit_rows] for k, v in table.items()}, y[fit_rows], float(T[fit_rows].min()))
    pred = law.predict(fit.theta, law.prepare({k: v[held] for k, v in table.items()}))
    rel = np.abs(pred - y[held]) / y[held]
    t_last = float(T[fit_rows].max())
    last = {float(rr): float(yy) for rr, tt, yy in zip(r, T, y) if tt == t_last}
    carried = np.array([last.get(float(rr), np.nan) for rr in r[held]])
    persistence = np.abs(carried - y[held]) / y[held]
    return HoldoutCheck(source=source, tokens=t_max, n_fit=int(fit_rows.sum()), n_held=int(held.sum()),
                        converged=bool(fit.converged), mean_rel_error=float(rel.mean()),
                        max_rel_error=float(rel.max()), persistence_mean_rel_error=float(np.nanmean(persistence)))
