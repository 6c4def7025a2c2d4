"""The model's fused ops (harness/models/fused_ops.py) for a stack of runs under vmap.

vmap cannot run the hand-written autograd Functions of fused_ops directly. Each op here is an
autograd.Function with a `vmap` rule that takes the runs' physical [K, ...] tensors and applies a
stacked twin of the fused op: the same arithmetic, op for op, with the run axis in front (a weight
[K, ...] broadcast per run, bmm where the original uses mm, the weight gradient summed per run).
So a run in a stack computes what its separate run computes, bit for bit in fp32 on CPU where the
kernels agree (tests/test_batched.py), and the stack keeps the fused ops' speed.

Used through `fused_ops.replaced_by(STACKED_OPS)` around the vmapped forward (harness/batched/stack.py).
"""

from __future__ import annotations

from typing import Any, Optional

import torch

from harness.models import fused_ops


def _batched_first(x: torch.Tensor, dim: Optional[int], size: int) -> torch.Tensor:
    return x.movedim(dim, 0) if dim is not None else x.expand(size, *x.shape)


def _per_run(weight_KD: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[K, D] -> [K, 1, ..., 1, D], broadcasting over `like`'s middle dims."""
    return weight_KD.view(weight_KD.shape[0], *([1] * (like.ndim - 2)), weight_KD.shape[-1])


class _StackedRMSNorm(torch.autograd.Function):
    """fused_ops._RMSNorm with one weight per run: x [K, ..., D], weight [K, D]."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight_KD: torch.Tensor, eps: float) -> torch.Tensor:
        x_hat, rstd = fused_ops.rms_normalize(x, eps)
        ctx.save_for_backward(x_hat, weight_KD, rstd)
        ctx.x_dtype = x.dtype
        return x_hat.to(x.dtype) * _per_run(weight_KD, x)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x_hat, weight_KD, rstd = ctx.saved_tensors
        grad_x_hat = grad_y * _per_run(weight_KD, grad_y)
        mean_dot = (grad_x_hat * x_hat).mean(-1, keepdim=True)
        grad_x = torch.addcmul(grad_x_hat, x_hat, mean_dot, value=-1.0).mul_(rstd)
        grad_weight_KD = (grad_y * x_hat).flatten(1, -2).sum(1)
        return grad_x.to(ctx.x_dtype), grad_weight_KD.to(weight_KD.dtype), None


class _StackedSwiGLUGateUp(torch.autograd.Function):
    """fused_ops._SwiGLUGateUp with one fused weight per run: x [K, N, D], weight [K, 2F, D]."""

    @staticmethod
    def forward(ctx: Any, x_KND: torch.Tensor, weight_K2FD: torch.Tensor) -> torch.Tensor:
        compute_dtype = fused_ops._autocast_dtype(x_KND)
        x_KND = x_KND.to(compute_dtype)
        w_gate_KFD, w_up_KFD = weight_K2FD.to(compute_dtype).chunk(2, dim=1)
        gate_KNF = torch.bmm(x_KND, w_gate_KFD.transpose(1, 2))
        up_KNF = torch.bmm(x_KND, w_up_KFD.transpose(1, 2))
        act_KNF = torch.nn.functional.silu(gate_KNF)
        ctx.save_for_backward(x_KND, w_gate_KFD, w_up_KFD, gate_KNF, up_KNF, act_KNF)
        ctx.weight_dtype = weight_K2FD.dtype
        return act_KNF * up_KNF

    @staticmethod
    def backward(ctx: Any, grad_h_KNF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_KND, w_gate_KFD, w_up_KFD, gate_KNF, up_KNF, act_KNF = ctx.saved_tensors
        grad_h_KNF = grad_h_KNF.to(act_KNF.dtype)
        grad_up_KNF = grad_h_KNF * act_KNF
        grad_gate_KNF = torch.ops.aten.silu_backward(grad_h_KNF * up_KNF, gate_KNF)
        grad_w_K2FD = torch.cat([torch.bmm(grad_gate_KNF.transpose(1, 2), x_KND),
                                 torch.bmm(grad_up_KNF.transpose(1, 2), x_KND)], dim=1)
        grad_x_KND = torch.bmm(grad_gate_KNF, w_gate_KFD).baddbmm_(grad_up_KNF, w_up_KFD)
        return grad_x_KND, grad_w_K2FD.to(ctx.weight_dtype)


# ---- the vmap-facing Functions: their vmap rule calls the stacked twins above ------------------

class _VmapOnly(torch.autograd.Function):
    """Base: these run only under vmap (the rule below is what runs); outside it, call fused_ops."""

    @staticmethod
    def setup_context(ctx: Any, inputs: Any, output: Any) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, *grads: Any) -> Any:
        raise RuntimeError("harness.batched.stacked_ops run under torch.func.vmap only")


class RMSNormOp(_VmapOnly):
    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return fused_ops.composite_rms_norm(x, weight, eps)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple:
        x = _batched_first(x, in_dims[0], info.batch_size)
        weight = _batched_first(weight, in_dims[1], info.batch_size)
        return _StackedRMSNorm.apply(x, weight, eps), 0


class SwiGLUGateUpOp(_VmapOnly):
    @staticmethod
    def forward(x_ND: torch.Tensor, weight_2FD: torch.Tensor) -> torch.Tensor:
        return fused_ops.composite_swiglu_gate_up(x_ND, weight_2FD)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, x_ND: torch.Tensor, weight_2FD: torch.Tensor) -> tuple:
        x_KND = _batched_first(x_ND, in_dims[0], info.batch_size)
        weight_K2FD = _batched_first(weight_2FD, in_dims[1], info.batch_size)
        return _StackedSwiGLUGateUp.apply(x_KND, weight_K2FD), 0


class SplitHeadsOp(_VmapOnly):
    @staticmethod
    def forward(qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int, cos_TE2: Optional[torch.Tensor],
                sin_TE2: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        return fused_ops.composite_split_heads(qkv_BTNE, n_heads, n_kv_heads, cos_TE2, sin_TE2)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int,
             cos_TE2: Optional[torch.Tensor], sin_TE2: Optional[torch.Tensor]) -> tuple:
        if in_dims[3] is not None or in_dims[4] is not None:
            raise ValueError("split_heads under vmap: the RoPE tables must be shared (unbatched) across runs")
        qkv_KBTNE = _batched_first(qkv_BTNE, in_dims[0], info.batch_size)
        K, B = qkv_KBTNE.shape[:2]
        # Weight-free and per-row: the runs fold into the batch, and the fused op runs as it is.
        heads = fused_ops._SplitHeads.apply(qkv_KBTNE.flatten(0, 1), n_heads, n_kv_heads, cos_TE2, sin_TE2)
        return tuple(h.unflatten(0, (K, B)) for h in heads), (0, 0, 0)


def _sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: Optional[float]) -> torch.Tensor:
    """fused_ops.causal_attention's kernel call (called directly: the replacement is active here)."""
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale,
                                                            enable_gqa=k.shape[-3] != q.shape[-3])


class CausalAttentionOp(_VmapOnly):
    @staticmethod
    def forward(q_BHTE: torch.Tensor, k_BKTE: torch.Tensor, v_BKTE: torch.Tensor, scale: Optional[float]) -> torch.Tensor:
        return _sdpa(q_BHTE, k_BKTE, v_BKTE, scale)

    @staticmethod
    def vmap(info: Any, in_dims: tuple, q_BHTE: torch.Tensor, k_BKTE: torch.Tensor, v_BKTE: torch.Tensor,
             scale: Optional[float]) -> tuple:
        q, k, v = (_batched_first(x, d, info.batch_size) for x, d in zip((q_BHTE, k_BKTE, v_BKTE), in_dims))
        K, B = q.shape[:2]
        # Attention is per (sequence, head): the runs fold into the batch, one kernel call for all
        # (CPU flash attention has no vmap rule; vmap would call it once per run).
        y = _sdpa(q.flatten(0, 1), k.flatten(0, 1), v.flatten(0, 1), scale)
        return y.unflatten(0, (K, B)), 0


class StackedOps:
    """What `fused_ops.replaced_by` calls inside the stack's vmapped forward."""

    @staticmethod
    def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return RMSNormOp.apply(x, weight, eps)

    @staticmethod
    def split_heads(qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int, cos_TE2: Optional[torch.Tensor] = None,
                    sin_TE2: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return SplitHeadsOp.apply(qkv_BTNE, n_heads, n_kv_heads, cos_TE2, sin_TE2)

    @staticmethod
    def causal_attention(q_BHTE: torch.Tensor, k_BKTE: torch.Tensor, v_BKTE: torch.Tensor,
                         scale: Optional[float]) -> torch.Tensor:
        return CausalAttentionOp.apply(q_BHTE, k_BKTE, v_BKTE, scale)

    @staticmethod
    def swiglu_gate_up(x_BTD: torch.Tensor, weight_2FD: torch.Tensor) -> torch.Tensor:
        h_NF = SwiGLUGateUpOp.apply(x_BTD.reshape(-1, x_BTD.shape[-1]), weight_2FD)
        return h_NF.view(*x_BTD.shape[:-1], h_NF.shape[-1])


STACKED_OPS = StackedOps()
