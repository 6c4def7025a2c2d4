"""AdamW over stacked parameters: K runs' tensors [K, ...] stepped at once, each run with its own
LR, weight decay, betas and eps.

The arithmetic is that of torch.optim.AdamW's foreach path (the one separate CPU runs use), op for
op, with each per-run scalar a [K, 1, ...] tensor where torch uses a Python float; the scalars are
computed in float64 and rounded to the parameter dtype, as torch rounds its Python floats. So a run
in a batch takes the same update as its separate run, up to the last bit of a few kernels.

    p   <- p * (1 - lr * wd)
    m   <- lerp(m, g, 1 - beta1)
    v   <- v * beta2 + (1 - beta2) g g
    p   <- p - (lr / (1 - beta1^t)) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


@dataclass(frozen=True)
class RunHyper:
    """One run's AdamW settings for one parameter (its group's, after muP multipliers)."""

    base_lr: float
    weight_decay: float
    beta1: float
    beta2: float
    eps: float


class StackedAdamW:
    """State: `step_count` (shared: all runs step together), and per parameter `exp_avg`,
    `exp_avg_sq` of the stacked shape. Parameters with the same per-run settings (a role's group in
    every run) share their per-run scalar tensors: a handful of small host-to-device copies per step."""

    def __init__(self, params: dict[str, torch.Tensor], hyper: dict[str, Sequence[RunHyper]]):
        self.params = params
        self.step_count = 0
        self.exp_avg = {name: torch.zeros_like(p) for name, p in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in params.items()}
        self.hyper = {name: tuple(hyper[name]) for name in params}

    def _scalars(self, rows: Sequence[Sequence[float]], like: torch.Tensor) -> torch.Tensor:
        """Per-run scalars [S, K] (float64 on the host) -> [S, K] in `like`'s dtype on its device."""
        return torch.tensor(rows, dtype=torch.float64).to(like.dtype).to(like.device, non_blocking=True)

    @torch.no_grad()
    def step(self, multipliers: Sequence[float]) -> None:
        """One update with run k's LR = base_lr x multipliers[k] (its schedule at this step)."""
        self.step_count += 1
        t = self.step_count
        per_group: dict[tuple[tuple[RunHyper, ...], torch.dtype, torch.device], torch.Tensor] = {}
        for name, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            hs = self.hyper[name]
            key = (hs, p.dtype, p.device)
            if key not in per_group:
                lrs = [h.base_lr * m for h, m in zip(hs, multipliers)]
                per_group[key] = self._scalars([
                    [1 - lr * h.weight_decay for lr, h in zip(lrs, hs)],       # 0: decay factor
                    [1 - h.beta1 for h in hs],                                 # 1: lerp weight
                    [h.beta2 for h in hs],                                     # 2
                    [1 - h.beta2 for h in hs],                                 # 3
                    [(lr / (1 - h.beta1 ** t)) * -1 for lr, h in zip(lrs, hs)],  # 4: step size
                    [(1 - h.beta2 ** t) ** 0.5 for h in hs],                   # 5: sqrt bias correction 2
                    [h.eps for h in hs],                                       # 6
                ], p)
            s_SK = per_group[key].view(7, -1, *([1] * (p.ndim - 1)))
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            if any(h.weight_decay for h in hs):
                p.mul_(s_SK[0])
            m.lerp_(g, s_SK[1])
            v.mul_(s_SK[2])
            v.addcmul_(g * s_SK[3], g)
            denom = v.sqrt().div_(s_SK[5]).add_(s_SK[6])
            p.addcdiv_(m * s_SK[4], denom)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def keep(self, rows: Sequence[int], params: dict[str, torch.Tensor]) -> None:
        """Keep only the runs at `rows` (in that order), whose parameters are now `params`."""
        self.params = params
        index = torch.tensor(list(rows), device=next(iter(params.values())).device)
        for name in list(self.exp_avg):
            self.exp_avg[name] = self.exp_avg[name].index_select(0, index)
            self.exp_avg_sq[name] = self.exp_avg_sq[name].index_select(0, index)
            self.hyper[name] = tuple(self.hyper[name][i] for i in rows)
