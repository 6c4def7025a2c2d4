"""Learning-rate schedules: one registered class per schedule, owning its fields, their validation,
its multiplier after warmup and its phase boundaries. Pure Python (harness.config imports it).

Convention: steps are counted from 1 (step t is the t-th optimizer update) and a schedule returns
the multiplier m(t) applied to every parameter group's base LR for that update, so groups with
different base LRs (muP, per-class LRs) keep their ratios under every schedule.

Every schedule starts with a linear warmup, m(t) = t / W for t <= W, up to the value the schedule
has at the end of warmup. W is `warmup_steps` when given, else round(`warmup_fraction` x T), so a
preset composes with runs of any length. After warmup, p = (t - W) / (T - W) in (0, 1] is the
fraction of the post-warmup steps done.

| name     | after warmup                                                                     |
|----------|----------------------------------------------------------------------------------|
| constant | 1                                                                                |
| cosine   | r + (1 - r)(1 + cos(pi p)) / 2                                                   |
| linear   | 1 - (1 - r) p                                                                    |
| wsd      | 1 until the cooldown (the last `decay_fraction` of all T steps), then a cooldown |
| wsdc     | WSD whose cooldown ends `tail_fraction` x T steps early, then constant r         |
| power    | min(1, a * B * n^b / peak_lr), n = tokens seen after step t (Shen et al. 2024)   |
| wsds     | WSD-S: WSD cycles ending at `wsds_cycle_ends`, back to 1 after each cooldown     |
| piecewise| linear interpolation through the knots (`knot_fractions` of p, `knot_multipliers`) |
| step     | 1, then `step_multipliers[i]` after step W + round(`step_fractions[i]` (T - W))   |

r is `min_lr_ratio`. Cooldown shapes over q in (0, 1] (the fraction of the cooldown done):
linear 1 - (1 - r) q; sqrt 1 - (1 - r) sqrt(q) (Hägele et al. 2024's "1-sqrt"); cosine
r + (1 - r)(1 + cos(pi q)) / 2; exp r^q (geometric, as in the MPL paper's WSD runs).

Adding a schedule: a class here with `@SCHEDULES.register("name")` that implements `after_warmup`
(and `phase_points` / `check_run` if it has phases or run-length rules), plus conf/schedule/name.yaml.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional

from harness.checks import ConfigError, one_of, require
from harness.registry import Registry

COOLDOWN_SHAPES = ("linear", "sqrt", "cosine", "exp")


def cooldown_multiplier(shape: str, q: float, floor: float) -> float:
    """Multiplier at fraction q in [0, 1] of a cooldown that goes from 1 down to `floor`."""
    if shape == "linear":
        return 1.0 - (1.0 - floor) * q
    if shape == "sqrt":
        return 1.0 - (1.0 - floor) * math.sqrt(q)
    if shape == "cosine":
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * q))
    if shape == "exp":
        return floor**q
    raise ValueError(f"unknown cooldown shape {shape!r}")


SCHEDULES: Registry["ScheduleConfig"] = Registry("schedule.name")


@dataclass
class ScheduleConfig(ABC):
    """Fields every schedule has: its name and the linear warmup. Subclasses are the schedules."""

    name: str = ""
    # Warmup length in steps; when null, `warmup_fraction` of train.steps (rounded to a step).
    warmup_steps: Optional[int] = None
    warmup_fraction: float = 0.0

    def validate(self) -> None:
        """Checks that need no run length (a wrong field names itself)."""
        require(type(self) is SCHEDULES.get(self.name), "schedule.name",
                f"{self.name!r} does not match the class {type(self).__name__}; build schedule configs "
                "with harness.config.schedule_config(name, ...)")
        if self.warmup_steps is not None:
            require(self.warmup_steps >= 0, "schedule.warmup_steps", "must be >= 0, or null to use warmup_fraction")
        require(0 <= self.warmup_fraction < 1, "schedule.warmup_fraction", "must be in [0, 1)")

    def check_run(self, total_steps: int) -> None:
        """Checks against the run length (train.steps)."""
        warmup = self.warmup(total_steps)
        field_name = "schedule.warmup_steps" if self.warmup_steps is not None else "schedule.warmup_fraction"
        require(warmup < total_steps, field_name,
                f"gives {warmup} warmup steps, which must be smaller than train.steps={total_steps}")

    def warmup(self, total_steps: int) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return round(self.warmup_fraction * total_steps)

    # ---- what each schedule implements ----
    @abstractmethod
    def after_warmup(self, step: int, run: "Schedule") -> float:
        """The multiplier at `step` >= the warmup's end, ignoring the warmup ramp."""

    def phase_points(self, run: "Schedule") -> set[int]:
        """Steps other than the warmup's end and the last step where the schedule changes regime."""
        return set()

    def decay_start(self, run: "Schedule") -> int:
        """Last step before the final cooldown; the last step if there is none."""
        return run.total_steps


@dataclass
class _DecaysTo(ScheduleConfig):
    """A schedule that ends at `min_lr_ratio` x the peak."""

    # Final LR as a fraction of the peak.
    min_lr_ratio: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(0 <= self.min_lr_ratio <= 1, "schedule.min_lr_ratio", "must be in [0, 1]")


@dataclass
class _Cooldown(_DecaysTo):
    """A schedule with a cooldown of shape `cooldown` down to `min_lr_ratio`."""

    cooldown: str = "linear"  # linear | sqrt | cosine | exp

    def validate(self) -> None:
        super().validate()
        one_of(self.cooldown, "schedule.cooldown", COOLDOWN_SHAPES)
        if self.cooldown == "exp":
            require(self.min_lr_ratio > 0, "schedule.min_lr_ratio",
                    "an exponential cooldown needs a positive floor (e.g. 0.1)")

    def cool(self, step: int, start: int, end: int) -> float:
        """Value at `step` of a cooldown over (start, end]: 1 before it, min_lr_ratio after it."""
        if step <= start:
            return 1.0
        q = (step - start) / max(end - start, 1)
        return cooldown_multiplier(self.cooldown, min(q, 1.0), self.min_lr_ratio)


@SCHEDULES.register("constant")
@dataclass
class ConstantSchedule(ScheduleConfig):
    name: str = "constant"

    def after_warmup(self, step: int, run: "Schedule") -> float:
        return 1.0


@SCHEDULES.register("cosine")
@dataclass
class CosineSchedule(_DecaysTo):
    name: str = "cosine"

    def after_warmup(self, step: int, run: "Schedule") -> float:
        r = self.min_lr_ratio
        return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * run.progress(step)))


@SCHEDULES.register("linear")
@dataclass
class LinearSchedule(_DecaysTo):
    name: str = "linear"

    def after_warmup(self, step: int, run: "Schedule") -> float:
        return 1.0 - (1.0 - self.min_lr_ratio) * run.progress(step)


@SCHEDULES.register("wsd")
@dataclass
class WSDSchedule(_Cooldown):
    """Warmup-stable-decay: the peak until the last `decay_fraction` of all steps, then a cooldown."""

    name: str = "wsd"
    decay_fraction: float = 0.2

    def validate(self) -> None:
        super().validate()
        require(0 <= self.decay_fraction <= 1, "schedule.decay_fraction", "must be in [0, 1]")

    def decay_start(self, run: "Schedule") -> int:
        return max(run.warmup_steps, run.total_steps - round(self.decay_fraction * run.total_steps))

    def after_warmup(self, step: int, run: "Schedule") -> float:
        return self.cool(step, self.decay_start(run), run.total_steps)

    def phase_points(self, run: "Schedule") -> set[int]:
        return {self.decay_start(run)}


@SCHEDULES.register("wsdc")
@dataclass
class WSDCSchedule(_Cooldown):
    """Warmup-stable-decay-constant (the PLM paper's schedule): WSD whose cooldown, over
    `decay_fraction` of all steps, ends `tail_fraction` of all steps before the end; the tail stays at
    the final LR (min_lr_ratio x peak)."""

    name: str = "wsdc"
    decay_fraction: float = 0.2
    tail_fraction: float = 0.1

    def validate(self) -> None:
        super().validate()
        require(0 <= self.decay_fraction <= 1, "schedule.decay_fraction", "must be in [0, 1]")
        require(0 <= self.tail_fraction <= 1, "schedule.tail_fraction", "must be in [0, 1]")
        require(self.decay_fraction + self.tail_fraction <= 1, "schedule.tail_fraction",
                f"decay_fraction + tail_fraction must be at most 1 (decay_fraction={self.decay_fraction})")

    def decay_end(self, run: "Schedule") -> int:
        return max(run.warmup_steps, run.total_steps - round(self.tail_fraction * run.total_steps))

    def decay_start(self, run: "Schedule") -> int:
        return max(run.warmup_steps, self.decay_end(run) - round(self.decay_fraction * run.total_steps))

    def after_warmup(self, step: int, run: "Schedule") -> float:
        return self.cool(step, self.decay_start(run), self.decay_end(run))

    def phase_points(self, run: "Schedule") -> set[int]:
        return {self.decay_start(run), self.decay_end(run)}


@SCHEDULES.register("wsds")
@dataclass
class WSDSSchedule(_Cooldown):
    """WSD-S (Wen et al. 2024, "River Valley"): cycle k spans (e_{k-1}, e_k] (e_0 = warmup end); it
    is at 1 until its last `decay_fraction` of steps, which cool down as in WSD; the next cycle
    restarts at 1 from the decayed weights. One run thus gives a decayed model at every e_k."""

    name: str = "wsds"
    # Each cycle cools down over this fraction of its own length.
    decay_fraction: float = 0.2
    # The steps at which each cooldown ends (the last must equal train.steps), or, when that list is
    # empty, the same as fractions of train.steps (the last must be 1.0).
    wsds_cycle_ends: list[int] = field(default_factory=list)
    wsds_cycle_fractions: list[float] = field(default_factory=list)

    def validate(self) -> None:
        super().validate()
        require(0 <= self.decay_fraction <= 1, "schedule.decay_fraction", "must be in [0, 1]")
        require(bool(self.wsds_cycle_ends) != bool(self.wsds_cycle_fractions), "schedule.wsds_cycle_ends",
                "give the cycle ends as steps (wsds_cycle_ends, e.g. [1000, 2000, 4000]) or as fractions of "
                "train.steps (wsds_cycle_fractions, e.g. [0.25, 0.5, 1.0]), not both")
        if self.wsds_cycle_ends:
            start = self.warmup_steps or 0
            require(all(b > a for a, b in zip([start] + self.wsds_cycle_ends, self.wsds_cycle_ends)),
                    "schedule.wsds_cycle_ends", "give increasing steps after the warmup, e.g. [1000, 2000, 4000]")
        else:
            fr = self.wsds_cycle_fractions
            require(all(b > a for a, b in zip([0.0] + fr, fr)) and fr[-1] == 1.0, "schedule.wsds_cycle_fractions",
                    "give increasing fractions of train.steps ending at 1.0, e.g. [0.25, 0.5, 1.0]")

    def cycle_ends(self, total_steps: int) -> list[int]:
        if self.wsds_cycle_ends:
            return list(self.wsds_cycle_ends)
        return [round(f * total_steps) for f in self.wsds_cycle_fractions]

    def check_run(self, total_steps: int) -> None:
        super().check_run(total_steps)
        ends = self.cycle_ends(total_steps)
        require(ends[-1] == total_steps, "schedule.wsds_cycle_ends",
                f"the last cycle must end at train.steps={total_steps}")
        require(all(b > a for a, b in zip([self.warmup(total_steps)] + ends, ends)), "schedule.wsds_cycle_fractions",
                f"the cycles of {total_steps} steps, {ends}, must be increasing steps after the warmup")

    def _cycles(self, run: "Schedule") -> list[tuple[int, int, int]]:
        """(start, decay start, end) of each cycle."""
        cycles, start = [], run.warmup_steps
        for end in self.cycle_ends(run.total_steps):
            cycles.append((start, max(start, end - round(self.decay_fraction * (end - start))), end))
            start = end
        return cycles

    def after_warmup(self, step: int, run: "Schedule") -> float:
        cycles = self._cycles(run)
        for start, decay_start, end in cycles:
            if step <= end:
                return self.cool(step, decay_start, end)
        start, decay_start, end = cycles[-1]
        return self.cool(step, decay_start, end)

    def phase_points(self, run: "Schedule") -> set[int]:
        return {p for _, decay_start, end in self._cycles(run) for p in (decay_start, end)}


@SCHEDULES.register("power")
@dataclass
class PowerSchedule(_Cooldown):
    """Power scheduler (Shen et al. 2024): B is the batch size in sequences and n the tokens seen,
    as in the paper's eta = min(eta_max, beta * a * n^b); defaults a = 4.6, b = -0.51. With
    `power_decay_fraction` > 0 the last fraction of the steps is a cooldown (shape `cooldown`) from
    the value reached there down to min_lr_ratio times that value."""

    name: str = "power"
    power_a: float = 4.6
    power_b: float = -0.51
    power_decay_fraction: float = 0.0

    def validate(self) -> None:
        super().validate()
        require(self.power_a > 0, "schedule.power_a", "must be positive")
        require(0 <= self.power_decay_fraction <= 1, "schedule.power_decay_fraction", "must be in [0, 1]")

    def decay_start(self, run: "Schedule") -> int:
        return max(run.warmup_steps, run.total_steps - round(self.power_decay_fraction * run.total_steps))

    def _power_value(self, step: int, run: "Schedule") -> float:
        tokens_seen = max(step, 1) * run.tokens_per_step
        lr = self.power_a * run.batch_size * tokens_seen**self.power_b
        return min(1.0, lr / run.peak_lr)

    def after_warmup(self, step: int, run: "Schedule") -> float:
        start = self.decay_start(run)
        return self._power_value(min(step, start), run) * self.cool(step, start, run.total_steps)

    def phase_points(self, run: "Schedule") -> set[int]:
        return {self.decay_start(run)}


def _increasing(values: list[float]) -> bool:
    return all(b > a for a, b in zip(values, values[1:]))


@SCHEDULES.register("piecewise")
@dataclass
class PiecewiseSchedule(ScheduleConfig):
    """Linear interpolation through (fraction, multiplier) knots over the post-warmup progress p:
    `knot_fractions` rise strictly from 0.0 to 1.0, `knot_multipliers` are the values there. Any
    monotone or non-monotone shape with a few kinks (a WSD with a free-form decay; what
    harness/fit/schedule_opt.py writes) is one of these. The warmup ramps to the first knot's value."""

    name: str = "piecewise"
    knot_fractions: list[float] = field(default_factory=lambda: [0.0, 1.0])
    knot_multipliers: list[float] = field(default_factory=lambda: [1.0, 0.0])

    def validate(self) -> None:
        super().validate()
        fr, m = list(self.knot_fractions), list(self.knot_multipliers)
        require(len(fr) >= 2 and fr[0] == 0.0 and fr[-1] == 1.0 and _increasing(fr), "schedule.knot_fractions",
                f"got {fr}; give strictly increasing fractions of the post-warmup steps from 0.0 to 1.0, "
                "e.g. [0.0, 0.6, 1.0]")
        require(len(m) == len(fr), "schedule.knot_multipliers",
                f"got {len(m)} value(s) for {len(fr)} knot_fractions; give one multiplier per knot")
        require(all(math.isfinite(v) and v >= 0 for v in m), "schedule.knot_multipliers",
                f"got {m}; multipliers must be finite and >= 0")

    def after_warmup(self, step: int, run: "Schedule") -> float:
        p = run.progress(step)
        fr, m = self.knot_fractions, self.knot_multipliers
        for i in range(1, len(fr)):
            if p <= fr[i]:
                w = (p - fr[i - 1]) / (fr[i] - fr[i - 1])
                return m[i - 1] + (m[i] - m[i - 1]) * w
        return m[-1]

    def knot_steps(self, run: "Schedule") -> list[int]:
        span = run.total_steps - run.warmup_steps
        return [run.warmup_steps + round(f * span) for f in self.knot_fractions]

    def phase_points(self, run: "Schedule") -> set[int]:
        return set(self.knot_steps(run)[1:-1])

    def decay_start(self, run: "Schedule") -> int:
        """The knot where the final stretch of non-increasing values begins."""
        m, steps = self.knot_multipliers, self.knot_steps(run)
        i = len(m) - 1
        while i > 0 and m[i - 1] > m[i]:
            i -= 1
        return steps[i] if i < len(m) - 1 else run.total_steps


@SCHEDULES.register("step")
@dataclass
class StepSchedule(ScheduleConfig):
    """Step decay: 1 until step b_1, then `step_multipliers[0]` until b_2, ... where
    b_i = W + round(`step_fractions[i]` x (T - W)) (fractions of the post-warmup steps; the step
    after b_i is the first at the new value). A "two-step decay": fractions [0.5, 0.75]."""

    name: str = "step"
    step_fractions: list[float] = field(default_factory=lambda: [0.5, 0.75])
    step_multipliers: list[float] = field(default_factory=lambda: [0.3, 0.1])

    def validate(self) -> None:
        super().validate()
        fr, m = list(self.step_fractions), list(self.step_multipliers)
        require(len(fr) >= 1 and _increasing(fr) and 0 < fr[0] and fr[-1] < 1, "schedule.step_fractions",
                f"got {fr}; give strictly increasing fractions in (0, 1) of the post-warmup steps, e.g. [0.5, 0.75]")
        require(len(m) == len(fr), "schedule.step_multipliers",
                f"got {len(m)} value(s) for {len(fr)} step_fractions; give the multiplier after each step")
        require(all(math.isfinite(v) and v >= 0 for v in m), "schedule.step_multipliers",
                f"got {m}; multipliers must be finite and >= 0")

    def step_ends(self, run: "Schedule") -> list[int]:
        span = run.total_steps - run.warmup_steps
        return [run.warmup_steps + round(f * span) for f in self.step_fractions]

    def after_warmup(self, step: int, run: "Schedule") -> float:
        value = 1.0
        for end, m in zip(self.step_ends(run), self.step_multipliers):
            if step > end:
                value = m
        return value

    def phase_points(self, run: "Schedule") -> set[int]:
        return set(self.step_ends(run))

    def decay_start(self, run: "Schedule") -> int:
        return self.step_ends(run)[0]


@dataclass(frozen=True)
class Schedule:
    """A schedule config bound to a run's length (and, for `power`, its batch geometry)."""

    cfg: ScheduleConfig
    total_steps: int
    peak_lr: float
    batch_size: int = 1
    tokens_per_step: int = 1

    @property
    def warmup_steps(self) -> int:
        return self.cfg.warmup(self.total_steps)

    @property
    def decay_start(self) -> int:
        return self.cfg.decay_start(self)

    def progress(self, step: int) -> float:
        """p = (step - W) / (T - W), clamped to [0, 1]: the fraction of the post-warmup steps done."""
        span = max(self.total_steps - self.warmup_steps, 1)
        return min(max((step - self.warmup_steps) / span, 0.0), 1.0)

    def phase_boundaries(self) -> list[int]:
        """Steps where the schedule changes regime: end of warmup, start/end of cooldown(s), end."""
        points = {self.warmup_steps, self.total_steps} | self.cfg.phase_points(self)
        return sorted(p for p in points if 1 <= p <= self.total_steps)

    def multiplier(self, step: int) -> float:
        if step < 1:
            raise ValueError(f"steps count from 1, got {step}")
        warmup = self.warmup_steps
        after_warmup = self.cfg.after_warmup(max(step, warmup), self)
        if step <= warmup:
            return after_warmup * step / warmup
        return after_warmup

    def lr(self, step: int) -> float:
        return self.peak_lr * self.multiplier(step)


def build_schedule(cfg: ScheduleConfig, *, total_steps: int, peak_lr: float, batch_size: int = 1,
                   tokens_per_step: int = 1) -> Schedule:
    cfg.validate()
    cfg.check_run(total_steps)
    return Schedule(cfg=cfg, total_steps=total_steps, peak_lr=peak_lr, batch_size=batch_size,
                    tokens_per_step=tokens_per_step)


__all__ = ["SCHEDULES", "ConfigError", "Schedule", "ScheduleConfig", "build_schedule", "cooldown_multiplier"]
