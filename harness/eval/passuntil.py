"""PassUntil (Hu et al., "Unlock Predictable Scaling from Emergent Abilities"): sample each item
until its first pass, or a cap, so that pass rates far below 1/samples-per-item are measurable.

The estimate assumes one pass probability p per sample across items (the quantity the paper's
scaling law predicts). Item i draws K_i samples and passes on the last one or hits the cap; the
likelihood is p^S (1-p)^(T-S) with S passes in T draws in all, whatever the stopping rule, so the
maximum-likelihood rate is S / T and its interval is the likelihood-ratio one
(2 [l(p_hat) - l(p)] <= chi2_1 quantile), which stays sensible at S = 0 (lower bound 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

from scipy.optimize import brentq
from scipy.stats import chi2


@dataclass(frozen=True)
class PassUntilEstimate:
    passes: int    # items that passed (one pass each: sampling stops there)
    samples: int   # samples drawn over all items
    items: int
    rate: float    # pass probability per sample, S / T
    lo: float
    hi: float
    level: float


def _loglik(p: float, s: int, t: int) -> float:
    out = 0.0
    if s:
        out += s * math.log(p) if p > 0 else -math.inf
    if t - s:
        out += (t - s) * math.log1p(-p) if p < 1 else -math.inf
    return out


def estimate(draws: Sequence[int], passed: Sequence[bool], level: float = 0.95) -> PassUntilEstimate:
    """Rate and likelihood-ratio interval from each item's number of draws and whether it passed."""
    if len(draws) != len(passed) or not draws:
        raise ValueError("passuntil: give one (draws, passed) pair per item, at least one item")
    if any(d < 1 for d in draws):
        raise ValueError("passuntil: every item needs at least one draw")
    s, t = int(sum(bool(p) for p in passed)), int(sum(draws))
    rate = s / t
    cut = _loglik(rate, s, t) - chi2.ppf(level, 1) / 2
    f = lambda p: _loglik(p, s, t) - cut  # noqa: E731  (> 0 inside the interval)
    tiny = 1e-300
    lo = 0.0 if s == 0 else brentq(f, tiny, rate)
    hi = 1.0 if s == t else brentq(f, rate if s else tiny, 1 - 1e-16)
    return PassUntilEstimate(s, t, len(draws), rate, lo, hi, level)


# sampler(item indices, k) -> for each item, k pass/fail outcomes of fresh samples, in draw order.
Sampler = Callable[[Sequence[int], int], list[list[bool]]]


def pass_until(sampler: Sampler, n_items: int, max_samples: int, batch: int = 16,
               level: float = 0.95) -> PassUntilEstimate:
    """Draw samples in rounds of `batch` per unsolved item, until each item's first pass or
    `max_samples` draws; samples after an item's first pass in a round are not counted."""
    if max_samples < 1 or batch < 1:
        raise ValueError(f"passuntil: max_samples ({max_samples}) and batch ({batch}) must be >= 1")
    draws, passed = [0] * n_items, [False] * n_items
    while True:
        live = [i for i in range(n_items) if not passed[i] and draws[i] < max_samples]
        if not live:
            break
        k = min(batch, max(max_samples - draws[i] for i in live))
        for i, outcomes in zip(live, sampler(live, k)):
            room = max_samples - draws[i]
            for j, ok in enumerate(outcomes[:room]):
                if ok:
                    draws[i] += j + 1
                    passed[i] = True
                    break
            else:
                draws[i] += min(len(outcomes), room)
    return estimate(draws, passed, level)
