"""Schedule optimization: the LR schedule a fitted curve law predicts to end at the lowest loss
(the multi-power law paper's result, Luo et al. 2025, sec. 5: a WSD-like schedule whose decay
shape is free beats cosine), written as a RUNNABLE `piecewise` schedule config.

    best = optimize_schedule(law, theta, total_steps=T, peak_lr=lr, warmup_steps=W)
    best.config            # PiecewiseSchedule (harness/schedules.py): what the trainer runs
    best.overrides()       # ["schedule=piecewise", "schedule.warmup_steps=W", "schedule.knot_fractions=[...]", ...]
    best.yaml()            # a conf/schedule/<name>.yaml file of it
    best.lrs               # its LR at every step 1..T (the trainer's own schedule code)
    best.predicted_final   # the law's final loss for it
    predicted_final(law, theta, lrs)   # the same for any LR sequence (e.g. cosine's, to compare)

The family (`DecayFamily`): warmup, then the peak LR until the decay starts at fraction s of the
post-warmup steps, then `n_knots` free knots evenly spaced over (s, 1) and the end value
`end_ratio` at 1, linear in between. Multipliers are monotone by construction: knot k is
r + (1 - r) u_1 ... u_k with every u in [0, 1], so the search box is [s_min, s_max] x [0, 1]^K.
WSD (any cooldown length, linear or approximately 1-sqrt / cosine) lies in it; so does a cosine
approximated by K + 1 segments when s = 0.

Search: L-BFGS-B (finite differences) from a few starts (decay start {0.5, 0.7, 0.85} x a linear
decay), keeping the best; the result is rounded to 4 decimals (the config's values) and its loss
is evaluated on the rounded config, so the reported loss is the written schedule's. Any curve law
works (harness/fit/registry.py CURVE_LAWS): the law sees the schedule as a curve without observed
loss, evaluated at its last step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from harness.fit.io import Curve
from harness.fit.laws.base import Law
from harness.schedules import PiecewiseSchedule, ScheduleConfig, build_schedule

DECIMALS = 4


def schedule_lrs(cfg: ScheduleConfig, *, total_steps: int, peak_lr: float) -> np.ndarray:
    """The LR at steps 1..total_steps, from the trainer's own schedule code."""
    run = build_schedule(cfg, total_steps=total_steps, peak_lr=peak_lr)
    return np.array([run.lr(t) for t in range(1, total_steps + 1)])


def predicted_final(law: Law, theta: np.ndarray, lrs: np.ndarray) -> float:
    """The law's loss at the last step of a run with these per-step LRs."""
    curve = Curve(name="schedule", path="<schedule>", step=np.arange(1, lrs.size + 1), lr=np.asarray(lrs, float),
                  loss=np.full(lrs.size, np.nan), min_step=int(lrs.size))
    with np.errstate(all="ignore"):
        value = np.asarray(law.predict(theta, law.prepare([curve])), dtype=float).ravel()[-1]
    return float(value) if np.isfinite(value) else math.inf


@dataclass(frozen=True)
class DecayFamily:
    """Stable, then a monotone decay through `n_knots` free knots to `end_ratio` (module docstring)."""

    n_knots: int = 4
    end_ratio: float = 0.0
    min_decay_start: float = 0.0
    max_decay_start: float = 0.95

    def __post_init__(self) -> None:
        if not 1 <= self.n_knots <= 12:
            raise ValueError(f"n_knots: got {self.n_knots}; use 1..12 free knots (4 is plenty)")
        if not 0 <= self.end_ratio < 1:
            raise ValueError(f"end_ratio: got {self.end_ratio}; the final LR as a fraction of the peak, in [0, 1)")
        if not 0 <= self.min_decay_start <= self.max_decay_start < 1:
            raise ValueError("min_decay_start / max_decay_start: need 0 <= min <= max < 1, got "
                             f"{self.min_decay_start} / {self.max_decay_start}")

    @property
    def bounds(self) -> list[tuple[float, float]]:
        return [(self.min_decay_start, self.max_decay_start)] + [(0.0, 1.0)] * self.n_knots

    def knots(self, z: Sequence[float]) -> tuple[list[float], list[float]]:
        """(knot_fractions, knot_multipliers), rounded to DECIMALS, from z = (s, u_1..u_K)."""
        s, u = float(z[0]), np.clip(np.asarray(z[1:], dtype=float), 0.0, 1.0)
        r = self.end_ratio
        inner = [s + (1 - s) * (k + 1) / (self.n_knots + 1) for k in range(self.n_knots)]
        values = [r + (1 - r) * float(np.prod(u[:k + 1])) for k in range(self.n_knots)]
        fractions = [0.0] + ([round(s, DECIMALS)] if round(s, DECIMALS) > 0 else []) + \
            [round(f, DECIMALS) for f in inner] + [1.0]
        multipliers = [1.0] + ([1.0] if round(s, DECIMALS) > 0 else []) + \
            [round(v, DECIMALS) for v in values] + [round(r, DECIMALS)]
        return fractions, multipliers

    def linear_start(self, s: float) -> np.ndarray:
        """z of a linear decay from s: knot k at 1 - (k+1)/(K+1) of the way, as ratios u."""
        targets = [1 - (k + 1) / (self.n_knots + 1) for k in range(self.n_knots)]
        u = [targets[0]] + [b / a for a, b in zip(targets, targets[1:])]
        return np.array([s, *u])


@dataclass
class OptimizedSchedule:
    config: PiecewiseSchedule
    total_steps: int
    peak_lr: float
    lrs: np.ndarray
    predicted_final: float
    # The law's final loss for reference schedules at the same steps and peak (name -> loss).
    references: dict[str, float] = field(default_factory=dict)

    def overrides(self) -> list[str]:
        """Run overrides that select this schedule (on top of conf/config.yaml)."""
        c = self.config
        return ["schedule=piecewise", f"schedule.warmup_steps={c.warmup_steps}",
                f"schedule.knot_fractions=[{','.join(repr(f) for f in c.knot_fractions)}]",
                f"schedule.knot_multipliers=[{','.join(repr(m) for m in c.knot_multipliers)}]"]

    def yaml(self, comment: str = "") -> str:
        """The schedule as a conf/schedule/<name>.yaml file (`schedule=<name>` then selects it)."""
        return piecewise_yaml(self.config, comment)

    def to_json(self) -> dict[str, Any]:
        return {"schedule": {"name": "piecewise", "warmup_steps": self.config.warmup_steps,
                             "knot_fractions": list(self.config.knot_fractions),
                             "knot_multipliers": list(self.config.knot_multipliers)},
                "total_steps": self.total_steps, "peak_lr": self.peak_lr,
                "predicted_final": self.predicted_final, "references": dict(self.references),
                "overrides": self.overrides()}


def piecewise_yaml(cfg: PiecewiseSchedule, comment: str = "") -> str:
    """A piecewise schedule as a conf/schedule/<name>.yaml file, `comment` on top."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += ["name: piecewise", f"warmup_steps: {cfg.warmup_steps}",
              f"knot_fractions: [{', '.join(repr(f) for f in cfg.knot_fractions)}]",
              f"knot_multipliers: [{', '.join(repr(m) for m in cfg.knot_multipliers)}]", ""]
    return "\n".join(lines)


def piecewise(fractions: list[float], multipliers: list[float], warmup_steps: int) -> PiecewiseSchedule:
    cfg = PiecewiseSchedule(warmup_steps=warmup_steps, knot_fractions=list(fractions),
                            knot_multipliers=list(multipliers))
    cfg.validate()
    return cfg


def optimize_schedule(law: Law, theta: np.ndarray, *, total_steps: int, peak_lr: float, warmup_steps: int,
                      family: DecayFamily | None = None,
                      references: dict[str, ScheduleConfig] | None = None) -> OptimizedSchedule:
    """The family member with the lowest predicted final loss (module docstring); `references`
    (name -> schedule config) are evaluated at the same steps and peak for comparison."""
    from scipy.optimize import minimize

    family = family or DecayFamily()
    if not 0 <= warmup_steps < total_steps:
        raise ValueError(f"warmup_steps: got {warmup_steps}; must be in [0, total_steps={total_steps})")

    def loss_of(z: np.ndarray) -> float:
        fractions, multipliers = family.knots(z)
        lrs = schedule_lrs(piecewise(fractions, multipliers, warmup_steps), total_steps=total_steps, peak_lr=peak_lr)
        return predicted_final(law, theta, lrs)

    # The rounding to DECIMALS makes the objective a staircase below 1e-4; finite-difference steps
    # are taken well above it.
    best_z, best_f = None, math.inf
    for s in (0.5, 0.7, 0.85):
        z0 = family.linear_start(min(max(s, family.min_decay_start), family.max_decay_start))
        res = minimize(lambda z: loss_of(z), z0, method="L-BFGS-B", bounds=family.bounds,
                       options={"eps": 2e-3, "maxiter": 200})
        for z, f in ((res.x, float(res.fun)), (z0, loss_of(z0))):
            if f < best_f:
                best_z, best_f = np.asarray(z, dtype=float), f
    fractions, multipliers = family.knots(best_z)
    cfg = piecewise(fractions, multipliers, warmup_steps)
    lrs = schedule_lrs(cfg, total_steps=total_steps, peak_lr=peak_lr)
    refs = {name: predicted_final(law, theta, schedule_lrs(ref, total_steps=total_steps, peak_lr=peak_lr))
            for name, ref in (references or {}).items()}
    return OptimizedSchedule(config=cfg, total_steps=total_steps, peak_lr=peak_lr, lrs=lrs,
                             predicted_final=predicted_final(law, theta, lrs), references=refs)
