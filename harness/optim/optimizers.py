"""Optimizer construction: one rule routes parameters to groups.

Each group carries `base_lr`; the training loop sets `lr = base_lr * schedule multiplier` every
step, so groups keep their LR ratios under any schedule.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.config import OptimConfig


def param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """Split trainable parameters into a decayed and an undecayed group by tensor rank.

    Matrices (and embeddings) get weight decay; vectors (norm gains, biases) do not, unless
    `decay_min_ndim` says otherwise. Empty groups are dropped.
    """
    decay, no_decay = [], []
    for param in model.parameters():
        if not param.requires_grad:
            continue
        (decay if param.ndim >= cfg.decay_min_ndim else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay, "base_lr": cfg.lr, "name": "decay"},
        {"params": no_decay, "weight_decay": 0.0, "base_lr": cfg.lr, "name": "no_decay"},
    ]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device) -> torch.optim.Optimizer:
    cfg.validate()
    groups = param_groups(model, cfg)
    fused = cfg.fused if cfg.fused is not None else device.type == "cuda"
    # foreach and fused are mutually exclusive; foreach is the fast path on CPU.
    kwargs = {"fused": True} if fused else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
