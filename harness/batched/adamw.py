"""AdamW over stacked parameters: K runs' tensors [K, ...] stepped at once, each run with its own
LR, weight decay, betas and eps.

The arithmetic is that of torch.optim.AdamW's foreach path (the one separate CPU runs use), op for
op, with each per-run scalar a [K, 1] tensor where torch uses a Python float; the scalars are
computed in float64 and rounded to the parameter dtype, as torch rounds its Python floats. So a run
in a batch takes the same update as its separate run, up to the last bit of a few kernels.

    p   <- p * (1 - lr * wd)
    m   <- lerp(m, g, 1 - beta1)
    v   <- v * beta2 + (1 - beta2) g g
    p   <- p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

The parameters, gradients and moments are flat [K, N] buffers (harness/batched/flat.py); parameters
with the same per-run settings are laid out next to each other, so a step is these few ops once per
such segment (a handful: decayed and undecayed roles), not once per parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from harness.batched.flat import FlatStack


@dataclass(frozen=True)
class RunHyper:
    """One run's AdamW settings for one parameter (its group's, after muP multipliers)."""

    base_lr: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float


@dataclass(frozen=True)
class Segment:
    """Columns [start, end) of the buffers of `dtype`: parameters whose runs share `hyper`."""

    dtype: torch.dtype
    start: int
    end: int
    hyper: tuple[RunHyper, ...]


def segments(flat: FlatStack, hyper: dict[str, Sequence[RunHyper]]) -> list[Segment]:
    """Adjacent parameters (in the flat layout) with equal per-run settings merged into one segment."""
    out: list[Segment] = []
    for name, span in flat.spans.items():
        hs = tuple(hyper[name])
        last = out[-1] if out else None
        if last and last.dtype == span.dtype and last.end == span.start and last.hyper == hs:
            out[-1] = Segment(span.dtype, last.start, span.end, hs)
        else:
            out.append(Segment(span.dtype, span.start, span.end, hs))
    return out


class StackedAdamW:
    """State: `step_count` (shared: all runs step together), and the moments `exp_avg_flat`,
    `exp_avg_sq_flat` laid out as the parameters ([K, N] per dtype), with per-parameter [K, ...]
    views `exp_avg[name]`, `exp_avg_sq[name]`."""

    def __init__(self, flat: FlatStack, hyper: dict[str, Sequence[RunHyper]]):
        self.step_count = 0
        self.hyper = {name: tuple(hyper[name]) for name in flat.spans}
        self._bind(flat, flat.zeros_like_data(), flat.zeros_like_data())

    def _bind(self, flat: FlatStack, exp_avg: dict[torch.dtype, torch.Tensor],
              exp_avg_sq: dict[torch.dtype, torch.Tensor]) -> None:
        self.flat, self.exp_avg_flat, self.exp_avg_sq_flat = flat, exp_avg, exp_avg_sq
        self.exp_avg = {name: flat.view(exp_avg, name) for name in flat.spans}
        self.exp_avg_sq = {name: flat.view(exp_avg_sq, name) for name in flat.spans}
        self.segments = segments(flat, self.hyper)

    @staticmethod
    def _scalars(rows: Sequence[Sequence[float]], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Per-run scalars [S, K] (float64 on the host) -> [S, K, 1] in `dtype` on `device`."""
        return torch.tensor(rows, dtype=torch.float64).to(dtype).to(device, non_blocking=True).unsqueeze(-1)

    @torch.no_grad()
    def step(self, multipliers: Sequence[float]) -> None:
        """One update with run k's LR = base_lr x multipliers[k] (its schedule at this step)."""
        self.step_count += 1
        t = self.step_count
        for seg in self.segments:
            hs = seg.hyper
            lrs = [h.base_lr * m for h, m in zip(hs, multipliers)]
            s_SK1 = self._scalars([
                [1 - lr * h.weight_decay for lr, h in zip(lrs, hs)],       # 0: decay factor
                [1 - h.beta1 for h in hs],                                 # 1: lerp weight
                [h.beta2 for h in hs],                                     # 2
                [1 - h.beta2 for h in hs],                                 # 3
                [(lr / (1 - h.beta1 ** t)) * -1 for lr, h in zip(lrs, hs)],  # 4: step size
                [(1 - h.beta2 ** t) ** 0.5 for h in hs],                   # 5: sqrt bias correction 2
                [h.eps for h in hs],                                       # 6
            ], seg.dtype, self.flat.device)
            cols = slice(seg.start, seg.end)
            p = self.flat.data[seg.dtype][:, cols]
            g = self.flat.grad[seg.dtype][:, cols]
            m, v = self.exp_avg_flat[seg.dtype][:, cols], self.exp_avg_sq_flat[seg.dtype][:, cols]
            if any(h.weight_decay for h in hs):
                p.mul_(s_SK1[0])
            m.lerp_(g, s_SK1[1])
            v.mul_(s_SK1[2])
            v.addcmul_(g * s_SK1[3], g)
            denom = v.sqrt().div_(s_SK1[5]).add_(s_SK1[6])
            p.addcdiv_(m * s_SK1[4], denom)

    def zero_grad(self) -> None:
        self.flat.zero_grad()

    def keep(self, rows: Sequence[int], flat: FlatStack) -> None:
        """Keep only the runs at `rows` (in that order), whose parameters are now `flat` (same layout)."""
        index = torch.tensor(list(rows), device=flat.device)
        self.hyper = {name: tuple(hs[i] for i in rows) for name, hs in self.hyper.items()}
        self._bind(flat, {dt: b.index_select(0, index) for dt, b in self.exp_avg_flat.items()},
                   {dt: b.index_select(0, index) for dt, b in self.exp_avg_sq_flat.items()})
