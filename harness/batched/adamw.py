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
    """State: `step` (shared: all runs step together), and per parameter `exp_avg`, `exp_avg_sq`
    of the stacked shape."""

    def __init__(self, params: dict[str, torch.Tensor], hyper: dict[str, Sequence[RunHyper]]):
        self.params = params
        self.step_count = 0
        self.exp_avg = {name: torch.zeros_like(p) for name, p in params.items()}
        self.exp_avg_sq = {name: torch.zeros_like(p) for name, p in params.items()}
        self.hyper = {name: list(hyper[name]) for name in params}

    def _per_run(self, name: str, values: Sequence[float]) -> torch.Tensor:
        """[K] floats -> a [K, 1, ...] tensor in the parameter's dtype (rounded from float64)."""
        p = self.params[name]
        return torch.tensor(values, dtype=torch.float64).to(p.dtype).view(-1, *([1] * (p.ndim - 1))).to(p.device)

    @torch.no_grad()
    def step(self, multipliers: Sequence[float]) -> None:
        """One update with run k's LR = base_lr x multipliers[k] (its schedule at this step)."""
        self.step_count += 1
        t = self.step_count
        for name, p in self.params.items():
            g = p.grad
            if g is None:
                continue
            hs = self.hyper[name]
            lrs = [h.base_lr * m for h, m in zip(hs, multipliers)]
            if any(h.weight_decay for h in hs):
                p.mul_(self._per_run(name, [1 - lr * h.weight_decay for lr, h in zip(lrs, hs)]))
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m.lerp_(g, self._per_run(name, [1 - h.beta1 for h in hs]))
            v.mul_(self._per_run(name, [h.beta2 for h in hs]))
            v.addcmul_(g * self._per_run(name, [1 - h.beta2 for h in hs]), g)
            step_size = [(lr / (1 - h.beta1 ** t)) * -1 for lr, h in zip(lrs, hs)]
            denom = v.sqrt().div_(self._per_run(name, [(1 - h.beta2 ** t) ** 0.5 for h in hs]))
            denom.add_(self._per_run(name, [h.eps for h in hs]))
            p.addcdiv_(m * self._per_run(name, step_size), denom)

    def zero_grad(self) -> None:
        for p in self.params.values():
            p.grad = None

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only the runs at `rows` (in that order): after runs left the batch."""
        index = torch.tensor(list(rows), device=next(iter(self.params.values())).device)
        for name in list(self.exp_avg):
            self.exp_avg[name] = self.exp_avg[name].index_select(0, index)
            self.exp_avg_sq[name] = self.exp_avg_sq[name].index_select(0, index)
            self.hyper[name] = [self.hyper[name][i] for i in rows]
