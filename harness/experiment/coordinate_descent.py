"""Coordinate descent over a hyperparameter grid, one round at a time (Wen et al. 2025; marin's
optimizer_sweep): a pure function of the losses known so far, so planning, re-planning and the
report all replay the same walk.

    walk = descend(grid, start, loss_of, threshold=3e-3, max_rounds=6)
    walk.rounds      [[point, ...], ...]: round 0 is [start]; round r the one-axis neighbours of
                     the centre after round r-1 (points seen before are not repeated)
    walk.state       "converged" | "waiting" (a needed loss is unknown) | "max_rounds"
    walk.best        the centre: the best point found; walk.best_loss its loss
    walk.grid        each axis' values, extended where the walk reached an end
    walk.extended    {axis: [values added]}; walk.edges: axes whose optimum sits on a bound that
                     cannot be extended (0, or a non-numeric value)

Each round perturbs every axis by one grid step each way from the centre, every other axis held;
the centre moves to the best of them when it beats the centre by more than `threshold`, otherwise
the walk has converged. A centre at an end of an axis's grid does not make it optimal: the grid
gains one more geometric step beyond that end (x * ratio of the last two values, 3 significant
digits; for values in (0, 1) on axes named like momentum or beta, the step is geometric in 1 - x,
so 0.95, 0.98 extends to 0.992, never to 1). A bound at 0 and non-numeric values are not extended
(they are reported in `edges` instead). A diverged run's loss is +inf: the worst, never the best.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence

Point = tuple[tuple[str, Any], ...]  # ((axis, value), ...) in the grid's axis order: hashable

CONVERGED, WAITING, MAX_ROUNDS = "converged", "waiting", "max_rounds"
ONE_MINUS_AXES = ("momentum", "beta")


def point(values: Mapping[str, Any], axes: Sequence[str]) -> Point:
    return tuple((a, values[a]) for a in axes)


def _round3(x: float) -> float:
    return float(f"{x:.3g}")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def extend_value(axis: str, values: Sequence[Any], side: int) -> Optional[Any]:
    """One geometric step beyond the low (side -1) or high (side +1) end of `values`; None when the
    end cannot be extended (a 0 bound, a non-numeric or single-valued axis)."""
    ordered = list(values)
    if len(ordered) < 2 or not all(_is_number(v) for v in ordered):
        return None
    end, inner = (ordered[0], ordered[1]) if side < 0 else (ordered[-1], ordered[-2])
    if any(k in axis.lower() for k in ONE_MINUS_AXES) and all(0 < v < 1 for v in ordered):
        gap_end, gap_inner = 1 - end, 1 - inner
        return _round3(1 - gap_end * gap_end / gap_inner) if gap_inner > 0 else None
    if end <= 0 or inner <= 0:
        return None  # 0 is a natural bound (no weight decay, no warmup): nothing lies beyond it
    new = end * end / inner
    if isinstance(end, int) and isinstance(inner, int):
        new = int(round(new))
        return new if new != end else None
    return _round3(new)


@dataclass
class Walk:
    rounds: list[list[Point]] = field(default_factory=list)
    state: str = WAITING
    best: Optional[Point] = None
    best_loss: Optional[float] = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    extended: dict[str, list[Any]] = field(default_factory=dict)
    edges: list[str] = field(default_factory=list)

    @property
    def points(self) -> list[Point]:
        return [p for r in self.rounds for p in r]

    @property
    def moves(self) -> int:
        return max(0, len(self.rounds) - 1)


def neighbours(center: Point, grid: dict[str, list[Any]], extended: dict[str, list[Any]]) -> list[Point]:
    """The one-axis neighbours of `center` (one grid step each way), extending an axis at its end."""
    out = []
    values = dict(center)
    for axis, value in center:
        axis_values = grid[axis]
        for side in (-1, 1):
            j = axis_values.index(value) + side  # looked up each side: the low side may have grown the list
            if 0 <= j < len(axis_values):
                new = axis_values[j]
            else:
                new = extend_value(axis, axis_values, side)
                if new is None or new in axis_values:
                    continue
                if side < 0:
                    axis_values.insert(0, new)
                else:
                    axis_values.append(new)
                extended.setdefault(axis, []).append(new)
            out.append(tuple((a, new if a == axis else values[a]) for a, _ in center))
    return out


def descend(grid: Mapping[str, Sequence[Any]], start: Mapping[str, Any],
            loss_of: Callable[[Point], Optional[float]], threshold: float, max_rounds: int) -> Walk:
    """Replay the walk as far as the known losses allow (see the module docstring)."""
    axes = list(grid)
    walk = Walk(grid={a: sorted(grid[a]) if all(_is_number(v) for v in grid[a]) else list(grid[a]) for a in axes})
    for a in axes:
        if start[a] not in walk.grid[a]:
            raise ValueError(f"start {a}={start[a]!r} is not a value of its grid {walk.grid[a]}")
    center = point(start, axes)
    seen = {center}
    walk.rounds.append([center])
    while True:
        center_loss = loss_of(center)
        walk.best, walk.best_loss = center, center_loss
        if center_loss is None:
            walk.state = WAITING
            return walk
        if walk.moves >= max_rounds:
            walk.state = MAX_ROUNDS
            return walk
        around = neighbours(center, walk.grid, walk.extended)
        fresh = [p for p in around if p not in seen]
        seen.update(fresh)
        if fresh:
            walk.rounds.append(fresh)
        losses = {p: loss_of(p) for p in around}
        if any(v is None for v in losses.values()):
            walk.state = WAITING
            return walk
        best = min(around, key=lambda p: losses[p]) if around else center
        if around and center_loss - losses[best] > threshold:
            center = best
            continue
        walk.state = CONVERGED
        walk.edges = _edges(center, walk.grid)
        return walk


def _edges(center: Point, grid: Mapping[str, list[Any]]) -> list[str]:
    """Axes whose converged value is an end of its (extended) grid: a bound the walk could not pass."""
    return [axis for axis, value in center if len(grid[axis]) > 1 and value in (grid[axis][0], grid[axis][-1])]


def is_finite(x: Optional[float]) -> bool:
    return x is not None and math.isfinite(x)
