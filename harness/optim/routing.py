"""Optimizer construction: one routing rule maps parameter roles to optimizer groups.

Every parameter carries a role from construction (harness.models.roles: EMBEDDING, HIDDEN,
READOUT, VECTOR). `route()` is the single rule that decides, per parameter, which optimizer
updates it and whether it is weight-decayed:

| optim.name | HIDDEN 2-D matrices | EMBEDDING, READOUT, VECTOR (and any non-2-D HIDDEN) |
|------------|---------------------|-----------------------------------------------------|
| adamw      | AdamW               | AdamW                                               |
| adam       | Adam                | Adam                                                |
| muon       | torch.optim.Muon    | AdamW (optim.betas, optim.eps)                      |
| lion       | Lion                | Lion                                                |
| sgd        | SGD (+momentum)     | SGD (+momentum)                                     |
| nadamw     | NAdamW              | NAdamW                                              |
| ademamix   | AdEMAMix            | AdEMAMix                                            |
| soap       | SOAP                | SOAP (1-D: Adam inside SOAP, as in the reference)   |

Weight decay applies to every role except those in `optim.no_decay_roles` (default: vector, i.e.
norm gains and biases). Parameters are grouped by (role, optimizer); each group keeps `role`,
`optimizer`, `name` and `base_lr`. The training loop sets `lr = base_lr * schedule multiplier` every
step (`set_lr`), so LR ratios between groups survive every schedule.

LR convention for Muon: by default (`optim.muon_adjust_lr=match_rms_adamw`, Moonshot's "Muon is
Scalable") torch scales each matrix's LR by 0.2 * sqrt(max(fan_out, fan_in)), which matches the
update RMS of AdamW, so one `optim.lr` (and `optim.weight_decay`) serves both the Muon and the AdamW
parts. `optim.muon_lr` overrides the Muon part's base LR (e.g. 0.02 with `muon_adjust_lr=original`,
Keller Jordan's convention).

muP hooks: `param_groups(..., lr_multipliers={role: factor}, wd_multipliers={role: factor})` multiply a
role's base LR and weight decay (default 1 for every role); harness.models.mup supplies the factors
(harness.loop.Trainer passes them), nothing else changes.

The optimizers themselves (fields, validation, torch construction) are registered classes in
harness/optimizers.py; this module only routes parameters to them and steps them together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

import torch
from torch import nn

from harness.models.roles import ParamRole, spec_of
from harness.optimizers import OPTIMIZERS, OptimConfig


# ---- the routing rule ------------------------------------------------------------------------

@dataclass(frozen=True)
class Route:
    optimizer: str
    decay: bool


def route(role: ParamRole, param: torch.Tensor, cfg: OptimConfig) -> Route:
    """Which optimizer updates a parameter of this role and shape, and whether it is decayed."""
    is_matrix = role is ParamRole.HIDDEN and param.ndim == 2
    optimizer = cfg.fallback().name if cfg.hidden_matrices_only and not is_matrix else cfg.name
    return Route(optimizer=optimizer, decay=role.value not in cfg.no_decay_roles)


def _config_of(optimizer: str, cfg: OptimConfig) -> OptimConfig:
    """The config of one part: `cfg` itself, or its fallback for the parameters it does not take."""
    return cfg if optimizer == cfg.name else cfg.fallback()


def param_groups(model: nn.Module, cfg: OptimConfig,
                 lr_multipliers: Mapping[ParamRole, float] | None = None,
                 wd_multipliers: Mapping[ParamRole, float] | None = None) -> list[dict]:
    """Trainable parameters grouped by (role, optimizer), in a fixed order (role, then optimizer).

    Each group: params, weight_decay (cfg.weight_decay times the role's wd multiplier, or 0 per the
    rule), base_lr (the optimizer's base LR times the role's LR multiplier), role, optimizer, name
    ("<optimizer>.<role>").
    """
    lr_multipliers = lr_multipliers or {}
    wd_multipliers = wd_multipliers or {}
    buckets: dict[tuple[ParamRole, str], list[torch.Tensor]] = defaultdict(list)
    decays: dict[tuple[ParamRole, str], bool] = {}
    for param in model.parameters():
        if not param.requires_grad:
            continue
        role = spec_of(param).role
        r = route(role, param, cfg)
        buckets[(role, r.optimizer)].append(param)
        decays[(role, r.optimizer)] = r.decay  # a function of the role alone
    order = list(ParamRole)
    groups = []
    for role, optimizer in sorted(buckets, key=lambda k: (order.index(k[0]), k[1])):
        groups.append({
            "params": buckets[(role, optimizer)],
            "weight_decay": cfg.weight_decay * wd_multipliers.get(role, 1.0) if decays[(role, optimizer)] else 0.0,
            "base_lr": _config_of(optimizer, cfg).base_lr * lr_multipliers.get(role, 1.0),
            "role": role.value,
            "optimizer": optimizer,
            "name": f"{optimizer}.{role.value}",
        })
    return groups


class MultiOptimizer(torch.optim.Optimizer):
    """Several optimizers over disjoint parameters (e.g. Muon + AdamW), stepped together as one.

    `param_groups` and `state` are the parts' own objects (shared, not copied), so `set_lr`,
    `zero_grad`, `state_dict`/`load_state_dict` and torch.distributed.checkpoint all see one
    ordinary optimizer whose groups are the parts' groups in order.
    """

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = parts
        super().__init__([{"params": g["params"]} for part in parts for g in part.param_groups], {})
        self.param_groups = [g for part in parts for g in part.param_groups]
        self._link()

    def _link(self) -> None:
        """Point every part at its slice of our groups and at our (shared) state."""
        start = 0
        for part in self.parts:
            n = len(part.param_groups)
            part.param_groups = self.param_groups[start:start + n]
            part.state = self.state
            start += n

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for part in self.parts:
            part.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)  # replaces self.state and self.param_groups
        self._link()


def build_optimizer(model: nn.Module, cfg: OptimConfig, device: torch.device,
                    lr_multipliers: Mapping[ParamRole, float] | None = None,
                    wd_multipliers: Mapping[ParamRole, float] | None = None) -> torch.optim.Optimizer:
    """The optimizer `cfg` describes over `model`'s parameters, routed by `route()`.

    One optimizer when every group goes to the same one; a `MultiOptimizer` (e.g. Muon + AdamW) else.
    """
    OPTIMIZERS.get(cfg.name)  # an unknown name fails here, naming the choices
    cfg.validate()
    groups = param_groups(model, cfg, lr_multipliers, wd_multipliers)
    by_optimizer: dict[str, list[dict]] = {}
    for group in groups:
        by_optimizer.setdefault(group["optimizer"], []).append(group)
    # Stable order: the configured optimizer first, then the fallback.
    names = sorted(by_optimizer, key=lambda n: (n != cfg.name, n))
    parts = [_config_of(name, cfg).build(by_optimizer[name], device) for name in names]
    return parts[0] if len(parts) == 1 else MultiOptimizer(parts)


def step_flops(model: nn.Module, cfg: OptimConfig) -> float:
    """FLOPs of one optimizer step over `model`'s trainable parameters: each part of the routing
    (e.g. Muon's matrices and its AdamW fallback) priced by its own `step_flops`."""
    shapes: dict[str, list[tuple[int, ...]]] = defaultdict(list)
    for param in model.parameters():
        if param.requires_grad:
            shapes[route(spec_of(param).role, param, cfg).optimizer].append(tuple(param.shape))
    return sum(_config_of(name, cfg).step_flops(part) for name, part in sorted(shapes.items()))


def set_lr(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * multiplier
