"""Sparse pre-training: gradual magnitude pruning of the block linear weights (train.prune).

What is pruned: every attention and MLP matrix (the parameters of role HIDDEN with two dimensions,
harness/models/roles.py); never the embedding, the readout or the norm gains and biases. This is
the "prunable parameters in the linear layers" of Jin et al. 2025 ("The Journey Matters").

When: Zhu & Gupta's (2017) cubic schedule over the window [t0, t1] = (start_frac, end_frac) x
train.steps (PruneConfig.window):

    s(t) = 0                                       t <= t0
    s(t) = s_f * (1 - (1 - (t - t0) / (t1 - t0))^3)   t0 < t < t1   (fast early, slow near the end)
    s(t) = s_f                                     t >= t1

The masks are recomputed at t0 + k * every inside the window and at t1, before that step's forward,
so step t's tokens train the model with the sparsity the masks had when it started.

How: per matrix, the round(s * numel) weights of smallest magnitude are pruned (layer-wise, uniform
sparsity). Chosen over one global threshold because the residual output projections start at
1/sqrt(2 * n_layers) of the other matrices' scale (harness/models/roles.py): a global magnitude cut
made early would empty them first, for a reason that is the init, not what was learned. Layer-wise
also makes the live count a host-side number (no device sync). A weight once pruned stays pruned
(masks only grow), so the live count never rises.

Held at zero: the gradients of pruned weights are zeroed before clipping (as if the forward used
W * mask, so the gradient norm and Adam's moments see live weights only), and the pruned weights are
zeroed again after every optimizer step (decoupled weight decay and Adam's old moments could move
them). The masks are part of the checkpoint (`prune_masks`: bool tensors, loaded weights_only), so a
resumed run continues bit-identically.

The curve gets `params_live` (the non-embedding parameters live during the step: the model's
non-embedding count minus the pruned weights) and `sparsity` (pruned fraction of the prunable
weights) per step; harness/collect.py turns them into N_avg (token-weighted average) and N_final.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.config import PruneConfig
from harness.models.roles import ParamRole, spec_of


def sparsity_at(step: int, steps: int, cfg: PruneConfig) -> float:
    """The cubic schedule's target sparsity for `step` of `steps` (see the module docstring)."""
    first, last = cfg.window(steps)
    if step <= first:
        return 0.0
    if step >= last:
        return cfg.final_sparsity
    remaining = 1.0 - (step - first) / (last - first)
    return cfg.final_sparsity * (1.0 - remaining ** 3)


def is_update_step(step: int, steps: int, cfg: PruneConfig) -> bool:
    """Masks are recomputed every `cfg.every` steps from the window's start, and at its end."""
    first, last = cfg.window(steps)
    return first < step <= last and ((step - first) % cfg.every == 0 or step == last)


def prunable_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    """The attention and MLP matrices, by name: role HIDDEN, two dimensions."""
    return {name: p for name, p in model.named_parameters()
            if spec_of(p).role is ParamRole.HIDDEN and p.dim() == 2}


class Pruner:
    """The masks of one run and the three points where the loop applies them (harness/loop.py):
    `before_step` (recompute at update steps), `mask_gradients` (before clipping), `after_step`
    (after the optimizer step)."""

    def __init__(self, cfg: PruneConfig, model: nn.Module, total_steps: int):
        self.cfg, self.total_steps = cfg, total_steps
        self.params = prunable_parameters(model)
        if not self.params:
            raise ValueError(f"{type(model).__name__} has no attention/MLP matrices (role HIDDEN) to prune")
        self.masks = {name: torch.ones_like(p, dtype=torch.bool) for name, p in self.params.items()}
        self.pruned = {name: 0 for name in self.params}  # host-side counts: no device sync per step
        self.prunable = sum(p.numel() for p in self.params.values())
        self.non_embedding = model.num_params(include_embedding=False)

    # ---- the loop's hooks --------------------------------------------------------------
    @torch.no_grad()
    def before_step(self, step: int) -> None:
        """At an update step, prune each matrix to the schedule's sparsity by magnitude."""
        if not is_update_step(step, self.total_steps, self.cfg):
            return
        target = sparsity_at(step, self.total_steps, self.cfg)
        for name, p in self.params.items():
            k = round(target * p.numel())
            if k <= self.pruned[name]:
                continue
            # Already-pruned weights score -1: they stay pruned and are counted in k.
            score = torch.where(self.masks[name], p.detach().abs().float(), torch.full_like(p, -1.0, dtype=torch.float32))
            order = torch.argsort(score.flatten(), stable=True)
            mask = torch.ones(p.numel(), dtype=torch.bool, device=p.device)
            mask[order[:k]] = False
            self.masks[name] = mask.view_as(p)
            self.pruned[name] = k
            p.mul_(self.masks[name])

    @torch.no_grad()
    def mask_gradients(self) -> None:
        for name, p in self.params.items():
            if p.grad is not None and self.pruned[name]:
                p.grad.mul_(self.masks[name])

    @torch.no_grad()
    def after_step(self) -> None:
        for name, p in self.params.items():
            if self.pruned[name]:
                p.mul_(self.masks[name])

    # ---- what the curve and checkpoints get -----------------------------------------------
    def columns(self) -> dict[str, Any]:
        """`params_live` and `sparsity` of the masks in force (during the step just taken)."""
        pruned = sum(self.pruned.values())
        return {"params_live": self.non_embedding - pruned, "sparsity": pruned / self.prunable}

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: mask.detach().cpu().clone() for name, mask in self.masks.items()}

    def load_state_dict(self, masks: dict[str, torch.Tensor] | None) -> None:
        """Masks of a checkpoint (None: one written without pruning, e.g. a dense parent: all live)."""
        if masks is None:
            return
        if set(masks) != set(self.params):
            raise ValueError(f"prune_masks name {sorted(set(masks) ^ set(self.params))[:3]} do not match this "
                             "model's prunable matrices")
        for name, p in self.params.items():
            self.masks[name] = masks[name].to(device=p.device, dtype=torch.bool)
            self.pruned[name] = int((~self.masks[name]).sum())
