"""Learning-rate schedules as pure functions of the optimizer step.

Convention: steps are counted from 1 (step t is the t-th optimizer update) and a schedule returns
the multiplier m(t) applied to every parameter group's base LR for that update, so groups with
different base LRs (muP, per-class LRs) keep their ratios under every schedule.

Every schedule starts with a linear warmup, m(t) = t / W for t <= W, up to the value the schedule
has at the end of warmup. After warmup, p = (t - W) / (T - W) in (0, 1] is the fraction of the
post-warmup steps done.

| name     | after warmup                                                                     |
|----------|----------------------------------------------------------------------------------|
| constant | 1                                                                                |
| cosine   | r + (1 - r)(1 + cos(pi p)) / 2                                                   |
| linear   | 1 - (1 - r) p                                                                    |
| wsd      | 1 until the cooldown (the last `decay_fraction` of all T steps), then a cooldown |
| power    | min(1, a * B * n^b / peak_lr), n = tokens seen after step t (Shen et al. 2024)   |
| wsds     | WSD-S: WSD cycles ending at `wsds_cycle_ends`, back to 1 after each cooldown     |

r is `min_lr_ratio`. WSD cooldown shapes over q in (0, 1] (the fraction of the cooldown done):
linear 1 - (1 - r) q; sqrt 1 - (1 - r) sqrt(q) (Hägele et al. 2024's "1-sqrt"); cosine
r + (1 - r)(1 + cos(pi q)) / 2; exp r^q (geometric, as in the MPL paper's WSD runs).

WSD-S (Wen et al. 2024, "River Valley"): cycle k spans (e_{k-1}, e_k] (e_0 = warmup end); it is
at 1 until its last `decay_fraction` of steps, which cool down as in WSD; the next cycle restarts
at 1 from the decayed weights. One run thus gives a decayed model at every e_k.

Power scheduler: B is the batch size in sequences and n the tokens seen, as in the paper's
eta = min(eta_max, beta * a * n^b); defaults a = 4.6, b = -0.51. With `power_decay_fraction` > 0
the last fraction of the steps is a cooldown (shape `cooldown`) from the value reached there down
to r times that value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.config import ScheduleConfig


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


@dataclass(frozen=True)
class Schedule:
    """A schedule bound to a run's length (and, for `power`, its batch geometry)."""

    cfg: ScheduleConfig
    total_steps: int
    peak_lr: float
    batch_size: int = 1
    tokens_per_step: int = 1

    @property
    def warmup_steps(self) -> int:
        return self.cfg.warmup_steps

    @property
    def decay_start(self) -> int:
        """Last step before the cooldown (wsd, or power with a final decay); total_steps if none."""
        if self.cfg.name == "wsd":
            fraction = self.cfg.decay_fraction
        elif self.cfg.name == "power":
            fraction = self.cfg.power_decay_fraction
        else:
            return self.total_steps
        decay_steps = round(fraction * self.total_steps)
        return max(self.warmup_steps, self.total_steps - decay_steps)

    def _wsds_cycle(self, step: int) -> tuple[int, int]:
        """(start, end] of the WSD-S cycle holding `step`."""
        start = self.warmup_steps
        for end in self.cfg.wsds_cycle_ends:
            if step <= end:
                return start, end
            start = end
        return start, self.total_steps

    def phase_boundaries(self) -> list[int]:
        """Steps where the schedule changes regime: end of warmup, start of cooldown(s), end."""
        points = {self.warmup_steps, self.decay_start, self.total_steps}
        if self.cfg.name == "wsds":
            start = self.warmup_steps
            for end in self.cfg.wsds_cycle_ends:
                points |= {end - round(self.cfg.decay_fraction * (end - start)), end}
                start = end
        return sorted(p for p in points if 1 <= p <= self.total_steps)

    def multiplier(self, step: int) -> float:
        if step < 1:
            raise ValueError(f"steps count from 1, got {step}")
        warmup = self.warmup_steps
        after_warmup = self._after_warmup(max(step, warmup))
        if step <= warmup:
            return after_warmup * step / warmup
        return after_warmup

    def lr(self, step: int) -> float:
        return self.peak_lr * self.multiplier(step)

    def _after_warmup(self, step: int) -> float:
        """The schedule's value at `step` >= warmup, ignoring the warmup ramp."""
        cfg, warmup, total = self.cfg, self.warmup_steps, self.total_steps
        span = max(total - warmup, 1)
        p = min(max((step - warmup) / span, 0.0), 1.0)
        r = cfg.min_lr_ratio
        if cfg.name == "constant":
            return 1.0
        if cfg.name == "cosine":
            return r + (1.0 - r) * 0.5 * (1.0 + math.cos(math.pi * p))
        if cfg.name == "linear":
            return 1.0 - (1.0 - r) * p
        if cfg.name == "wsd":
            return self._with_cooldown(step, 1.0)
        if cfg.name == "wsds":
            start, end = self._wsds_cycle(step)
            decay_start = max(start, end - round(cfg.decay_fraction * (end - start)))
            if step <= decay_start:
                return 1.0
            q = (step - decay_start) / max(end - decay_start, 1)
            return cooldown_multiplier(cfg.cooldown, min(q, 1.0), cfg.min_lr_ratio)
        if cfg.name == "power":
            return self._with_cooldown(step, self._power_value(min(step, self.decay_start)))
        raise ValueError(f"unknown schedule {cfg.name!r}")

    def _with_cooldown(self, step: int, plateau: float) -> float:
        start = self.decay_start
        if step <= start:
            return plateau
        q = (step - start) / max(self.total_steps - start, 1)
        return plateau * cooldown_multiplier(self.cfg.cooldown, min(q, 1.0), self.cfg.min_lr_ratio)

    def _power_value(self, step: int) -> float:
        tokens_seen = max(step, 1) * self.tokens_per_step
        lr = self.cfg.power_a * self.batch_size * tokens_seen**self.cfg.power_b
        return min(1.0, lr / self.peak_lr)


def build_schedule(cfg: ScheduleConfig, *, total_steps: int, peak_lr: float, batch_size: int = 1,
                   tokens_per_step: int = 1) -> Schedule:
    cfg.validate()
    return Schedule(cfg=cfg, total_steps=total_steps, peak_lr=peak_lr, batch_size=batch_size,
                    tokens_per_step=tokens_per_step)
