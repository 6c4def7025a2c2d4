"""Building blocks shared by the dense architectures.

Shape letters in names: B batch, T sequence, D d_model, H query heads, K key/value heads,
E head_dim, F MLP hidden width, V vocabulary.

All parameters are created through `linear`, `embedding`, `RMSNorm` and `layer_norm`, which tag
each one with its role and initial distribution (see `harness.models.roles`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from harness.models.fused_ops import causal_attention, rms_norm, split_heads, swiglu_gate_up
from harness.models.roles import InitKind, ParamRole, ParamSpec, tag

_ZEROS = ParamSpec(ParamRole.VECTOR, InitKind.ZEROS)
_ONES = ParamSpec(ParamRole.VECTOR, InitKind.ONES)


def residual_out_std(init_std: float, n_layers: int) -> float:
    """Init std of projections that write into the residual stream (GPT-2 / nanoGPT rule).

    Each of the 2*n_layers residual branches adds a term; scaling their outputs by 1/sqrt(2*n_layers)
    keeps the variance of the residual stream roughly independent of depth at init.
    """
    return init_std / math.sqrt(2 * n_layers)


def linear(d_in: int, d_out: int, *, role: ParamRole, std: float, bias: bool = False) -> nn.Linear:
    layer = nn.Linear(d_in, d_out, bias=bias)
    tag(layer.weight, ParamSpec(role, InitKind.NORMAL, std))
    if layer.bias is not None:
        tag(layer.bias, _ZEROS)
    return layer


def embedding(num: int, dim: int, *, std: float) -> nn.Embedding:
    emb = nn.Embedding(num, dim)
    tag(emb.weight, ParamSpec(ParamRole.EMBEDDING, InitKind.NORMAL, std))
    return emb


def layer_norm(dim: int, eps: float) -> nn.LayerNorm:
    norm = nn.LayerNorm(dim, eps=eps)
    tag(norm.weight, _ONES)
    tag(norm.bias, _ZEROS)
    return norm


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = tag(nn.Parameter(torch.ones(dim)), _ONES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_norm(x, self.weight, self.eps)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding in the "rotate half" layout used by Hugging Face Llama.

    Dimension i of a head is paired with dimension i + E/2 (not with its neighbour, as in the
    original interleaved RoPE), so weights move to and from `LlamaForCausalLM` without permutation.
    cos/sin are precomputed for `max_seq_len` positions at half width: both halves share them.
    """

    def __init__(self, head_dim: int, max_seq_len: int, theta: float) -> None:
        super().__init__()
        # float32 throughout, as Hugging Face computes them, so exported models agree to rounding.
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
        angles_TE2 = torch.outer(torch.arange(max_seq_len, dtype=torch.float32), inv_freq)
        # Non-persistent: derived from the config, so kept out of checkpoints.
        self.register_buffer("cos_TE2", angles_TE2.cos(), persistent=False)
        self.register_buffer("sin_TE2", angles_TE2.sin(), persistent=False)

    def tables(self, seq_len: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin for the first `seq_len` positions, [T, E/2]; .to() is a no-op unless under bf16."""
        return self.cos_TE2[:seq_len].to(dtype), self.sin_TE2[:seq_len].to(dtype)


class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with optional grouped-query heads and RoPE.

    Q, K and V come from one fused matmul (rows ordered [q heads | k heads | v heads]); one pass
    (`split_heads`) rotates q and k and lays all heads out as [B, heads, T, E] for the kernel.
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_kv_heads: int,
        *,
        std: float,
        out_std: float,
        bias: bool,
        rotary: Optional[RotaryEmbedding] = None,
        scale: Optional[float] = None,
    ) -> None:
        super().__init__()
        # Softmax scale of q.k; None is 1/sqrt(head_dim) (muP uses 1/head_dim, harness.models.mup).
        self.scale = scale
        self.n_heads = n_heads
        self.n_kv_heads = n_kv_heads
        self.head_dim = d_model // n_heads
        self.qkv = linear(d_model, (n_heads + 2 * n_kv_heads) * self.head_dim,
                          role=ParamRole.HIDDEN, std=std, bias=bias)
        self.out = linear(d_model, d_model, role=ParamRole.HIDDEN, std=out_std, bias=bias)
        # Held in a plain tuple so the shared rotary module is not registered once per layer.
        self._rotary = (rotary,)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        qkv_BTNE = self.qkv(x_BTD).view(B, T, -1, self.head_dim)
        rotary = self._rotary[0]
        cos_sin = rotary.tables(T, qkv_BTNE.dtype) if rotary is not None else (None, None)
        q_BHTE, k_BKTE, v_BKTE = split_heads(qkv_BTNE, self.n_heads, self.n_kv_heads, *cos_sin)
        y_BHTE = causal_attention(q_BHTE, k_BKTE, v_BKTE, self.scale)
        return self.out(y_BHTE.transpose(1, 2).reshape(B, T, D))


class SwiGLU(nn.Module):
    """silu(x W_gate) * (x W_up) then W_down; gate and up share one fused matmul ([gate | up] rows)."""

    def __init__(self, d_model: int, d_ff: int, *, std: float, out_std: float) -> None:
        super().__init__()
        self.gate_up = linear(d_model, 2 * d_ff, role=ParamRole.HIDDEN, std=std)
        self.down = linear(d_ff, d_model, role=ParamRole.HIDDEN, std=out_std)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        # gate_up is a Linear for its parameter (role, init, export); the fused op does its matmul.
        return self.down(swiglu_gate_up(x_BTD, self.gate_up.weight))


class GeluMLP(nn.Module):
    """GPT-2 MLP: tanh-approximated GELU between two biased matmuls."""

    def __init__(self, d_model: int, d_ff: int, *, std: float, out_std: float) -> None:
        super().__init__()
        self.up = linear(d_model, d_ff, role=ParamRole.HIDDEN, std=std, bias=True)
        self.down = linear(d_ff, d_model, role=ParamRole.HIDDEN, std=out_std, bias=True)

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        return self.down(F.gelu(self.up(x_BTD), approximate="tanh"))


class PreNormBlock(nn.Module):
    """x + attn(norm(x)), then x + mlp(norm(x)): the residual block of both GPT-2 and LLaMA."""

    def __init__(self, attn_norm: nn.Module, attn: nn.Module, mlp_norm: nn.Module, mlp: nn.Module) -> None:
        super().__init__()
        self.attn_norm = attn_norm
        self.attn = attn
        self.mlp_norm = mlp_norm
        self.mlp = mlp

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        x_BTD = x_BTD + self.attn(self.attn_norm(x_BTD))
        return x_BTD + self.mlp(self.mlp_norm(x_BTD))
