"""Hand-written backward passes for the memory-bound elementwise parts of a block.

In eager mode on CPU the matmuls and attention of a small model are as fast as they will get; what
is left is elementwise work, where each op is one pass over memory. Autograd's generic backward of
a composite (RMSNorm, RoPE on a fused QKV output) takes many passes, plus a `cat` each time a
fused tensor was split. These Functions compute the same values in fewer passes and write their
gradients straight into the fused layout.

Each public function has a `composite_*` twin written in plain differentiable ops. Under
torch.compile the twin is used instead: Inductor fuses plain ops itself and sees through them,
where a custom Function with out= writes would only get in its way. Tests check that both agree,
values and gradients.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Optional

import torch


def rms_normalize(x: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_hat, rstd): x_hat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps) over the last dim."""
    # Accumulate in at least float32 (also for bf16 inputs), as Hugging Face's RMSNorm does.
    x_acc = x.to(torch.promote_types(x.dtype, torch.float32))
    # vector_norm reads x once with no [N, D] temporary (x.pow(2).mean() would write one).
    norm = torch.linalg.vector_norm(x_acc, dim=-1, keepdim=True)
    rstd = torch.rsqrt(norm.square_().div_(x.shape[-1]).add_(eps))
    return x_acc * rstd, rstd


class _RMSNorm(torch.autograd.Function):
    """y = x_hat * w with x_hat = x * rstd, rstd = 1 / sqrt(mean(x^2) + eps) over the last dim."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        x_hat, rstd = rms_normalize(x, eps)
        # x_hat is kept rather than x: backward needs it, and recomputing it would cost a pass.
        ctx.save_for_backward(x_hat, weight, rstd)
        ctx.x_dtype = x.dtype
        return x_hat.to(x.dtype) * weight

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        x_hat, weight, rstd = ctx.saved_tensors
        grad_x_hat = grad_y * weight
        # d/dx of x*rstd projects out the component along x_hat: dx = rstd * (g - x_hat * mean(g * x_hat)).
        mean_dot = (grad_x_hat * x_hat).mean(-1, keepdim=True)
        grad_x = torch.addcmul(grad_x_hat, x_hat, mean_dot, value=-1.0).mul_(rstd)
        grad_weight = (grad_y * x_hat).flatten(0, -2).sum(0)
        return grad_x.to(ctx.x_dtype), grad_weight.to(weight.dtype), None


# Set by `replaced_by()`: functorch transforms (vmap over stacked runs, harness/batched/) cannot
# run these autograd.Functions as they are; the stack supplies vmap-aware versions of the three.
_REPLACEMENT: list[Any] = [None]


@contextlib.contextmanager
def replaced_by(ops: Any) -> Iterator[None]:
    """Inside this block rms_norm, split_heads, swiglu_gate_up and causal_attention call `ops`' methods
    of those names."""
    previous = _REPLACEMENT[0]
    _REPLACEMENT[0] = ops
    try:
        yield
    finally:
        _REPLACEMENT[0] = previous


def _use_composite() -> bool:
    return torch.compiler.is_compiling()


def composite_rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.nn.functional.rms_norm(x, weight.shape, weight, eps)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    if _REPLACEMENT[0] is not None:
        return _REPLACEMENT[0].rms_norm(x, weight, eps)
    if _use_composite():
        return composite_rms_norm(x, weight, eps)
    return _RMSNorm.apply(x, weight, eps)


def _rotate_into(out: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """out = x rotated by the angles (cos, sin), in the "rotate half" pairing (i with i + E/2).

    First half:  x1*cos - x2*sin;  second half: x2*cos + x1*sin. Calling it with -sin undoes it.
    Written with out= so the result lands in `out` (a slice of a larger buffer) without a cat.
    """
    x1, x2 = x.chunk(2, dim=-1)
    out1, out2 = out.chunk(2, dim=-1)
    torch.mul(x1, cos, out=out1)
    out1.addcmul_(x2, sin, value=-1.0)
    torch.mul(x2, cos, out=out2)
    out2.addcmul_(x1, sin)


class _SplitHeads(torch.autograd.Function):
    """Fused QKV output [B, T, H + 2K, E] -> q [B, H, T, E], k and v [B, K, T, E], q and k rotated.

    Forward writes all heads, in one pass, into one [B, H + 2K, T, E] buffer: the layout in which
    the CPU attention kernel is fastest. Backward writes the q/k/v gradients straight into one
    [B, T, H + 2K, E] buffer (the rotation's backward is the rotation by the opposite angle),
    where autograd would chain transposes, cats and a dozen elementwise passes.
    """

    @staticmethod
    def forward(ctx: Any, qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int,
                cos_TE2: Optional[torch.Tensor], sin_TE2: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        B, T, N, E = qkv_BTNE.shape
        n_rotated = n_heads + n_kv_heads
        heads_BNTE = torch.empty((B, N, T, E), dtype=qkv_BTNE.dtype, device=qkv_BTNE.device)
        src_BNTE = qkv_BTNE.transpose(1, 2)
        if cos_TE2 is None:
            heads_BNTE.copy_(src_BNTE)
        else:
            _rotate_into(heads_BNTE[:, :n_rotated], src_BNTE[:, :n_rotated], cos_TE2, sin_TE2)
            heads_BNTE[:, n_rotated:].copy_(src_BNTE[:, n_rotated:])
        ctx.save_for_backward(cos_TE2, sin_TE2)
        ctx.split = (n_heads, n_kv_heads, n_kv_heads)
        return heads_BNTE.split(ctx.split, dim=1)

    @staticmethod
    def backward(ctx: Any, grad_q: torch.Tensor, grad_k: torch.Tensor, grad_v: torch.Tensor) -> tuple:
        cos_TE2, sin_TE2 = ctx.saved_tensors
        B, H, T, E = grad_q.shape
        N = sum(ctx.split)
        grad_qkv_BTNE = torch.empty((B, T, N, E), dtype=grad_q.dtype, device=grad_q.device)
        grad_q_dst, grad_k_dst, grad_v_dst = grad_qkv_BTNE.transpose(1, 2).split(ctx.split, dim=1)
        if cos_TE2 is None:
            grad_q_dst.copy_(grad_q)
            grad_k_dst.copy_(grad_k)
        else:
            neg_sin = -sin_TE2
            _rotate_into(grad_q_dst, grad_q, cos_TE2, neg_sin)
            _rotate_into(grad_k_dst, grad_k, cos_TE2, neg_sin)
        grad_v_dst.copy_(grad_v)
        return grad_qkv_BTNE, None, None, None, None


def composite_split_heads(qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int,
                          cos_TE2: Optional[torch.Tensor] = None,
                          sin_TE2: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    qkv_BNTE = qkv_BTNE.transpose(1, 2)
    q, k, v = qkv_BNTE.split([n_heads, n_kv_heads, n_kv_heads], dim=1)
    if cos_TE2 is None:
        return q, k, v

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)
        return torch.cat((x1 * cos_TE2 - x2 * sin_TE2, x2 * cos_TE2 + x1 * sin_TE2), dim=-1)

    return rotate(q), rotate(k), v


def split_heads(qkv_BTNE: torch.Tensor, n_heads: int, n_kv_heads: int,
                cos_TE2: Optional[torch.Tensor] = None,
                sin_TE2: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """q [B,H,T,E], k [B,K,T,E], v [B,K,T,E] from qkv [B,T,H+2K,E]; q and k rotated when cos/sin [T,E/2] are given."""
    if _REPLACEMENT[0] is not None:
        return _REPLACEMENT[0].split_heads(qkv_BTNE, n_heads, n_kv_heads, cos_TE2, sin_TE2)
    if _use_composite():
        return composite_split_heads(qkv_BTNE, n_heads, n_kv_heads, cos_TE2, sin_TE2)
    return _SplitHeads.apply(qkv_BTNE, n_heads, n_kv_heads, cos_TE2, sin_TE2)


def causal_attention(q_BHTE: torch.Tensor, k_BKTE: torch.Tensor, v_BKTE: torch.Tensor,
                     scale: Optional[float]) -> torch.Tensor:
    """Causal scaled-dot-product attention (grouped-query when k/v have fewer heads than q)."""
    if _REPLACEMENT[0] is not None:
        return _REPLACEMENT[0].causal_attention(q_BHTE, k_BKTE, v_BKTE, scale)
    return torch.nn.functional.scaled_dot_product_attention(q_BHTE, k_BKTE, v_BKTE, is_causal=True, scale=scale,
                                                            enable_gqa=k_BKTE.shape[1] != q_BHTE.shape[1])


def _autocast_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a matmul on x would run in: autocast's, when it is on for x's device."""
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return x.dtype


class _SwiGLUGateUp(torch.autograd.Function):
    """h = silu(x W_gate^T) * (x W_up^T) with W = [W_gate; W_up] one fused [2F, D] parameter.

    The two halves of W are contiguous row blocks, so two matmuls give gate and up as contiguous
    tensors (elementwise ops on the strided halves of one [N, 2F] product are up to 2x slower), and
    backward writes both weight gradients into one [2F, D] buffer and accumulates the input gradient
    in place (addmm_), with no cat and no extra add.
    """

    @staticmethod
    def forward(ctx: Any, x_ND: torch.Tensor, weight_2FD: torch.Tensor) -> torch.Tensor:
        compute_dtype = _autocast_dtype(x_ND)
        x_ND = x_ND.to(compute_dtype)
        w_gate_FD, w_up_FD = weight_2FD.to(compute_dtype).chunk(2, dim=0)
        gate_NF = x_ND @ w_gate_FD.t()
        up_NF = x_ND @ w_up_FD.t()
        act_NF = torch.nn.functional.silu(gate_NF)
        ctx.save_for_backward(x_ND, w_gate_FD, w_up_FD, gate_NF, up_NF, act_NF)
        ctx.weight_dtype = weight_2FD.dtype
        return act_NF * up_NF

    @staticmethod
    def backward(ctx: Any, grad_h_NF: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_ND, w_gate_FD, w_up_FD, gate_NF, up_NF, act_NF = ctx.saved_tensors
        grad_h_NF = grad_h_NF.to(act_NF.dtype)
        grad_up_NF = grad_h_NF * act_NF
        grad_gate_NF = torch.ops.aten.silu_backward(grad_h_NF * up_NF, gate_NF)
        F_ = gate_NF.shape[1]
        grad_w_2FD = torch.empty((2 * F_, x_ND.shape[1]), dtype=x_ND.dtype, device=x_ND.device)
        torch.mm(grad_gate_NF.t(), x_ND, out=grad_w_2FD[:F_])
        torch.mm(grad_up_NF.t(), x_ND, out=grad_w_2FD[F_:])
        grad_x_ND = torch.mm(grad_gate_NF, w_gate_FD).addmm_(grad_up_NF, w_up_FD)
        return grad_x_ND, grad_w_2FD.to(ctx.weight_dtype)


def composite_swiglu_gate_up(x_BTD: torch.Tensor, weight_2FD: torch.Tensor) -> torch.Tensor:
    gate_BTF, up_BTF = torch.nn.functional.linear(x_BTD, weight_2FD).chunk(2, dim=-1)
    return torch.nn.functional.silu(gate_BTF) * up_BTF


def swiglu_gate_up(x_BTD: torch.Tensor, weight_2FD: torch.Tensor) -> torch.Tensor:
    """silu(x W_gate^T) * (x W_up^T) for x [..., D] and the fused [W_gate; W_up] weight; returns [..., F]."""
    if _REPLACEMENT[0] is not None:
        return _REPLACEMENT[0].swiglu_gate_up(x_BTD, weight_2FD)
    if _use_composite():
        return composite_swiglu_gate_up(x_BTD, weight_2FD)
    h_NF = _SwiGLUGateUp.apply(x_BTD.reshape(-1, x_BTD.shape[-1]), weight_2FD)
    return h_NF.view(*x_BTD.shape[:-1], h_NF.shape[-1])
