"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), Algorithm 2.

Per parameter, with gradient g, momentum m (zeros at the start), betas (b1, b2), LR lr and
weight decay wd:

    u = sign(b1 * m + (1 - b1) * g)     # the update: sign of the interpolated momentum
    p = p * (1 - lr * wd) - lr * u      # decoupled weight decay, as in AdamW
    m = b2 * m + (1 - b2) * g           # the momentum tracks the gradient with the slower b2

Every coordinate moves by exactly lr (before decay), so Lion's LR is typically 3-10x smaller than
AdamW's and its weight decay 3-10x larger (the product lr * wd is what matters).
"""

from __future__ import annotations

from typing import Iterable

import torch


class Lion(torch.optim.Optimizer):
    def __init__(self, params: Iterable, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99),
                 weight_decay: float = 0.0) -> None:
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        if not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd = group["lr"], group["weight_decay"]
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                state = self.state[p]
                if "exp_avg" not in state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                exp_avg = state["exp_avg"]
                update = (exp_avg * beta1 + grad * (1.0 - beta1)).sign_()
                if wd != 0:
                    p.mul_(1.0 - lr * wd)
                p.add_(update, alpha=-lr)
                exp_avg.mul_(beta2).add_(grad, alpha=1.0 - beta2)
        return loss
