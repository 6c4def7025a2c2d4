"""K models of one shape as one: parameters stacked along a leading run axis, one vmapped forward.

`torch.func.stack_module_state` stacks the K members' parameters into [K, ...] leaves;
`torch.func.functional_call` runs the shared module skeleton with one run's slice, and `vmap` maps
it over the run axis, so every matmul becomes one batched matmul over the K runs and every
elementwise op one pass over all of them. Gradients come from ordinary autograd through the vmapped
forward (vmap records the physical batched ops), so backward is batched too.

The loss of the stack is the sum of the K runs' losses: each run's parameters only reach its own
loss, so each slice of a gradient is exactly that run's gradient.

The model's hand-written autograd Functions (harness/models/fused_ops.py) cannot run under vmap;
inside the stack, vmap-aware twins run instead (harness/batched/stacked_ops.py, through
`fused_ops.replaced_by`): the same arithmetic on the runs' stacked tensors, attention included (runs
folded into its batch). Derived buffers (RoPE tables) are equal across runs and passed unstacked.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from harness.loop import cross_entropy
from harness.batched.flat import FlatStack
from harness.batched.stacked_ops import STACKED_OPS
from harness.models import fused_ops

class StackedModel:
    """The K runs' parameters as `params[name]`: [K, ...] leaf tensors (requires_grad), on the
    members' device, views into `flat` (harness/batched/flat.py: one [K, N] buffer per dtype, laid
    out in `order`), their gradients likewise. Member modules are not touched; `write_back` copies
    one run out."""

    def __init__(self, members: Sequence[nn.Module], order: Sequence[str] | None = None):
        params, _ = stack_module_state(list(members))
        self.flat = FlatStack({n: p.detach() for n, p in params.items()}, order)
        # The module's own order (named_parameters): the gradient norm sums per-tensor norms in it,
        # as torch's clip_grad_norm_ does for a separate run (another order rounds differently).
        self.params: dict[str, torch.Tensor] = {n: self.flat.params[n] for n in params}
        # The buffers of member 0 (RoPE tables: the same for every run of this shape).
        self.buffers = {n: b for n, b in members[0].named_buffers()}
        self.skeleton = copy.deepcopy(members[0]).to("meta")
        self._loss = vmap(self._one_loss, in_dims=(0, 0, 0))
        self._token_losses = vmap(self._one_token_losses, in_dims=(0, 0, 0))

    @property
    def runs(self) -> int:
        return next(iter(self.params.values())).shape[0]

    # ---- one run, as vmap sees it --------------------------------------------------------
    def _logits(self, params: dict[str, torch.Tensor], inputs_BT: torch.Tensor) -> torch.Tensor:
        return functional_call(self.skeleton, (params, self.buffers), (inputs_BT,))

    def _one_loss(self, params: dict[str, torch.Tensor], inputs_BT: torch.Tensor,
                  targets_BT: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self._logits(params, inputs_BT), targets_BT)

    def _one_token_losses(self, params: dict[str, torch.Tensor], inputs_BT: torch.Tensor,
                          targets_BT: torch.Tensor) -> torch.Tensor:
        return cross_entropy(self._logits(params, inputs_BT), targets_BT, reduction="none")

    # ---- the stack -----------------------------------------------------------------------
    def losses(self, windows_KBW: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of each run on its own windows [K, B, T+1] -> [K] (differentiable)."""
        with fused_ops.replaced_by(STACKED_OPS):
            return self._loss(self.params, windows_KBW[:, :, :-1], windows_KBW[:, :, 1:])

    @torch.no_grad()
    def token_losses(self, windows_BW: torch.Tensor) -> torch.Tensor:
        """Per-token cross-entropy of every run on the same windows [B, T+1] -> [K, B*T] (eval)."""
        shared = windows_BW.expand(self.runs, *windows_BW.shape)
        with fused_ops.replaced_by(STACKED_OPS):
            return self._token_losses(self.params, shared[:, :, :-1], shared[:, :, 1:])

    @torch.no_grad()
    def clip_grad_norms(self, max_norms: Sequence[float]) -> torch.Tensor:
        """Each run's gradient clipped to its own max norm, as torch.nn.utils.clip_grad_norm_ clips
        a separate run's (coefficient max / (norm + 1e-6), at most 1); returns the [K] norms before
        clipping. The norm is one reduction over each run's row of the flat gradient buffer (torch
        takes the norm of per-tensor norms: equal up to rounding)."""
        per_tensor_PK = torch.stack([torch.linalg.vector_norm(p.grad.flatten(1), 2, dim=1) for p in self.params.values()])
        total_K = torch.linalg.vector_norm(per_tensor_PK, 2, dim=0)
        limit_K = torch.tensor(list(max_norms), dtype=torch.float64).to(total_K.dtype).to(total_K.device)
        if not all(math.isinf(m) for m in max_norms):  # no run clips: skip a pass over the buffer
            coef_K1 = torch.clamp(limit_K / (total_K + 1e-6), max=1.0).view(-1, 1)
            for g in self.flat.grad.values():
                g.mul_(coef_K1.to(g.dtype))
        return total_K
    @torch.no_grad()
    def write_back(self, k: int, member: nn.Module) -> None:
        """Copy run k's slice into its member module (before its checkpoint is written)."""
        for name, p in member.named_parameters():
            p.copy_(self.params[name][k])

    def keep(self, rows: Sequence[int]) -> None:
        """Keep only the runs at `rows`, in that order."""
        self.flat = self.flat.keep(rows)
        self.params = {n: self.flat.params[n] for n in self.params}
