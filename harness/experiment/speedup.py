"""Speedup of an optimizer over the baseline at matched data (and FLOPs, and wall-clock time), with
a bootstrap interval; pure numpy, testable on synthetic tables.

Per model size, the baseline's best final loss at each data budget D (one value per seed) is fitted
as L(D) = a D^-b + c. A variant reaching loss L at D has the baseline's effective data budget
D_eff = (a / (L - c))^(1/b), the D at which the baseline's law reaches L (infinite when L <= c:
the variant beats the baseline's asymptote), and **speedup = D_eff / D**.

Identification: the law has 3 parameters. With 3+ data multiples per size, b is fitted (least
squares on the seed means; a profile over b with a and c solved linearly). With 2 multiples it is
NOT identified: b is then fixed and its prior range is sampled in the bootstrap (`b_prior`, default
Chinchilla-like 0.2-0.4), a and c are solved through the 2 points; `Law.identified` says which and
the report says so. One multiple: no law, no speedup.

The interval: `n_boot` resamples, each redrawing the seeds of every baseline cell and of the
variant's cell (with replacement) and, given a pooled seed noise (`pooled_noise`), adding to each
cell's mean a draw of that noise (parametric: a few seeds alone understate it), refitting the law
(and drawing b from its prior when fixed), then D_eff / D; the percentile interval at `level`. A speedup is called only when the interval
excludes 1 (`called`).

Wall-clock: with the tokens/s each run measured (median over its steps, optimizer overhead
included), the baseline needs D_eff / tps_baseline seconds to reach the variant's loss and the
variant took D / tps_variant: wallclock speedup = speedup x tps_variant / tps_baseline, the
throughputs resampled with the seeds. Matched FLOPs: when FLOPs per token differ (an optimizer's
own work counted per token, the curve's optimizer_flops column), flops speedup = speedup x
fpt_baseline / fpt_variant; with equal FLOPs per token it equals the data speedup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

B_GRID = np.concatenate([np.linspace(0.02, 1.0, 99), np.linspace(1.02, 2.0, 50)])
DEFAULT_B_PRIOR = (0.2, 0.4)


@dataclass(frozen=True)
class Law:
    """L(D) = a D^-b + c for one size's baseline; `identified`: b was fitted (3+ data multiples)."""

    a: float
    b: float
    c: float
    identified: bool

    def loss(self, D: np.ndarray | float) -> np.ndarray:
        return self.a * np.asarray(D, dtype=float) ** -self.b + self.c

    def effective_data(self, loss: float) -> float:
        """The D at which this law reaches `loss` (inf below the asymptote c; 0 for a worse-than-
        anything loss when a <= 0)."""
        if not np.isfinite(loss):
            return 0.0
        if self.a <= 0:
            return np.inf if loss <= self.c else 0.0
        if loss <= self.c:
            return np.inf
        return float((self.a / (loss - self.c)) ** (1 / self.b))


def _solve_ac(D: np.ndarray, L: np.ndarray, b: float) -> tuple[float, float, float]:
    """a, c by least squares for a fixed b; and the squared error."""
    x = D ** -b
    X = np.stack([x, np.ones_like(x)], axis=1)
    (a, c), *_ = np.linalg.lstsq(X, L, rcond=None)
    return float(a), float(c), float(np.sum((X @ np.array([a, c]) - L) ** 2))


def fit_law(D: Sequence[float], loss: Sequence[float], b: Optional[float] = None,
            b_prior: tuple[float, float] = DEFAULT_B_PRIOR) -> Law:
    """Fit one size's baseline law to its cells' mean losses (one value per distinct D). With fewer
    than 3 distinct D, b is not identified: it is `b` if given, else the middle of `b_prior`."""
    D, loss = np.asarray(D, dtype=float), np.asarray(loss, dtype=float)
    if np.unique(D).size < 2:
        raise ValueError("fit_law: needs at least 2 data budgets D")
    if b is not None or np.unique(D).size < 3:
        b = float(b) if b is not None else float(np.mean(b_prior))
        a, c, _ = _solve_ac(D, loss, b)
        return Law(a=a, b=b, c=c, identified=False)
    fits = [(_solve_ac(D, loss, bb), bb) for bb in B_GRID]
    (a, c, _), bb = min(fits, key=lambda f: f[0][2])
    return Law(a=a, b=float(bb), c=c, identified=True)


@dataclass
class Cell:
    """One (variant, size, multiple): the final loss of each seed of its best config, and
    optionally each seed run's measured tokens/s and the FLOPs per token."""

    D: float
    losses: Sequence[float]
    tokens_per_s: Sequence[float] = ()
    flops_per_token: Optional[float] = None


@dataclass
class Speedup:
    speedup: float
    interval: tuple[float, float]
    wallclock: Optional[float] = None
    wallclock_interval: Optional[tuple[float, float]] = None
    flops: Optional[float] = None
    flops_interval: Optional[tuple[float, float]] = None
    law: Optional[Law] = None
    notes: list[str] = field(default_factory=list)

    @property
    def called(self) -> bool:
        """A speedup (or slowdown) is called only when its interval excludes 1."""
        lo, hi = self.interval
        return not (lo <= 1 <= hi)


def _quantiles(samples: np.ndarray, level: float) -> tuple[float, float]:
    # Sample values, not interpolations: an infinite D_eff (beyond the asymptote) stays a valid end.
    q = (1 - level) / 2
    return (float(np.quantile(samples, q, method="inverted_cdf")),
            float(np.quantile(samples, 1 - q, method="inverted_cdf")))


def _tps(cell: Cell, idx: np.ndarray) -> Optional[float]:
    tps = np.asarray(cell.tokens_per_s, dtype=float)
    return float(np.mean(tps[idx])) if tps.size == len(cell.losses) and tps.size else None


def pooled_noise(cells: Sequence[Cell]) -> tuple[Optional[float], int]:
    """The seed-to-seed std pooled over cells (each around its own mean) and its degrees of freedom."""
    groups = [np.asarray(c.losses, dtype=float) for c in cells if len(c.losses) >= 2]
    df = sum(len(g) - 1 for g in groups)
    if not df:
        return None, 0
    return float(np.sqrt(sum(np.sum((g - g.mean()) ** 2) for g in groups) / df)), df


def speedup(baseline: Mapping[float, Cell], variant: Cell, *, b: Optional[float] = None,
            b_prior: tuple[float, float] = DEFAULT_B_PRIOR, n_boot: int = 1000, level: float = 0.95,
            seed: int = 0, noise: Optional[tuple[float, int]] = None) -> Speedup:
    """The variant's speedup over one size's baseline cells ({D: Cell}) at the variant's D.

    `noise` = (sigma, df): a seed-to-seed std pooled over many cells (pooled_noise). With it, each
    resample also draws every cell's mean from mean + sigma' / sqrt(n) x N(0, 1), sigma' drawn from
    sigma's own sampling distribution (sigma^2 df / chi2_df): with 2-3 seeds per cell the plain
    bootstrap of a cell's seeds sees almost none of the noise (2 values resample to 3 means)."""
    Ds = sorted(baseline)
    if len(Ds) < 2:
        raise ValueError("speedup: the baseline needs at least 2 data budgets at this size")
    identified = b is None and len(Ds) >= 3
    rng = np.random.default_rng(seed)

    def one(base_idx: dict[float, np.ndarray], var_idx: np.ndarray, bb: Optional[float],
            jitter: Optional[np.ndarray] = None):
        jitter = np.zeros(len(Ds) + 1) if jitter is None else jitter
        means = [float(np.mean(np.asarray(baseline[d].losses, dtype=float)[base_idx[d]])) + jitter[i]
                 for i, d in enumerate(Ds)]
        law = fit_law(Ds, means, b=bb, b_prior=b_prior)
        var_loss = float(np.mean(np.asarray(variant.losses, dtype=float)[var_idx])) + jitter[-1]
        ratio = law.effective_data(var_loss) / variant.D
        base_tps = _tps(baseline[_nearest(Ds, variant.D)], base_idx[_nearest(Ds, variant.D)])
        var_tps = _tps(variant, var_idx)
        wall = ratio * var_tps / base_tps if base_tps and var_tps else None
        fpt_b = baseline[_nearest(Ds, variant.D)].flops_per_token
        flops = ratio * fpt_b / variant.flops_per_token if fpt_b and variant.flops_per_token else None
        return law, ratio, wall, flops

    full = {d: np.arange(len(baseline[d].losses)) for d in Ds}
    law, point, wall, flops = one(full, np.arange(len(variant.losses)), b)
    samples, walls, flopss = [], [], []
    for _ in range(n_boot):
        base_idx = {d: rng.integers(0, len(baseline[d].losses), len(baseline[d].losses)) for d in Ds}
        var_idx = rng.integers(0, len(variant.losses), len(variant.losses))
        bb = b if (b is not None or identified) else float(rng.uniform(*b_prior))
        jitter = None
        if noise is not None and noise[0] is not None and noise[1] > 0:
            sigma = noise[0] * np.sqrt(noise[1] / rng.chisquare(noise[1]))
            counts = [len(baseline[d].losses) for d in Ds] + [len(variant.losses)]
            jitter = rng.normal(0.0, 1.0, len(counts)) * sigma / np.sqrt(counts)
        _, r, w, f = one(base_idx, var_idx, bb, jitter)
        samples.append(r)
        walls.append(w)
        flopss.append(f)
    out = Speedup(speedup=point, interval=_quantiles(np.array(samples), level) if n_boot else (point, point),
                  wallclock=wall, flops=flops, law=law)
    if wall is not None and n_boot and all(w is not None for w in walls):
        out.wallclock_interval = _quantiles(np.array(walls, dtype=float), level)
    if flops is not None and n_boot and all(f is not None for f in flopss):
        out.flops_interval = _quantiles(np.array(flopss, dtype=float), level)
    if not law.identified:
        out.notes.append(f"b not identified ({len(Ds)} data multiples): fixed at {law.b:g}, drawn from "
                         f"[{b_prior[0]:g}, {b_prior[1]:g}] in the bootstrap" if b is None
                         else f"b fixed at {b:g} by the spec")
    if noise is None and (min(len(baseline[d].losses) for d in Ds) < 2 or len(variant.losses) < 2):
        out.notes.append("a cell has a single seed and no pooled noise was given: the interval misses seed noise")
    if not np.isfinite(point):
        out.notes.append("the variant's loss is below the baseline law's asymptote c: D_eff is unbounded")
    return out


def _nearest(Ds: Sequence[float], D: float) -> float:
    """The baseline cell whose D is closest (in log) to the variant's: its throughput and FLOPs/token."""
    return min(Ds, key=lambda d: abs(np.log(d / D)))


def power_law_in_N(N: Sequence[float], values: Sequence[float]) -> Optional[tuple[float, float]]:
    """value = k N^e fitted in log-log (least squares): (k, e); None with < 2 sizes or values <= 0."""
    N, values = np.asarray(N, dtype=float), np.asarray(values, dtype=float)
    if np.unique(N).size < 2 or np.any(values <= 0):
        return None
    e, logk = np.polyfit(np.log(N), np.log(values), 1)
    return float(np.exp(logk)), float(e)
