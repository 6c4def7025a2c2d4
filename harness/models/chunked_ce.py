"""Readout + cross-entropy in chunks of rows: the [N, V] fp32 logits never exist whole.

For a 124M model at batch 32 x 1024 with a 50k vocabulary the fp32 logits are 6.6 GB (plus their
gradient); the readout matmul itself is cheap next to moving them. Here rows (tokens) are taken
`chunk` at a time, and when gradients are wanted each chunk's gradient is made in the forward, while
its logits are at hand (as Liger-Kernel's fused linear cross-entropy does): softmax minus one-hot,
then d h = G W and d W += G^T h. Backward only scales the saved d h, d W by the incoming gradient.
So the readout matmul runs once, not again in backward (a recompute would cost 2 N D V FLOPs, a
third of the readout's 6 N D V: ~9% of a 124M model's step), and peak memory is one chunk's logits
plus d h [N, D] and d W [V, D] (fp32). Under no_grad (evaluation) only the loss is computed.

Numerics follow the unchunked path (harness.loop.cross_entropy on the model's logits): the matmul
in the autocast dtype (bf16 on GPUs), the softmax in fp32, the mean over all N rows. Equal up to
float rounding (tests/test_loss_chunking.py).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.models.fused_ops import _autocast_dtype


class _ChunkedReadoutCE(torch.autograd.Function):
    """mean_n CE(h_n W^T, target_n) over h [N, D], W [V, D], targets [N]; gradients made in forward."""

    @staticmethod
    def forward(ctx: Any, h_ND: torch.Tensor, weight_VD: torch.Tensor, targets_N: torch.Tensor,
                chunk: int, with_grad: bool) -> torch.Tensor:
        compute_dtype = _autocast_dtype(h_ND)
        h_ND_c, w_VD_c = h_ND.to(compute_dtype), weight_VD.to(compute_dtype)
        n = h_ND.shape[0]
        total = torch.zeros((), dtype=torch.float32, device=h_ND.device)
        if with_grad:
            grad_h_ND = torch.empty_like(h_ND_c)
            grad_w_VD = torch.zeros(w_VD_c.shape, dtype=torch.float32, device=w_VD_c.device)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            logits_CV = (h_ND_c[rows] @ w_VD_c.t()).float()
            lse_C = torch.logsumexp(logits_CV, dim=-1)
            target_logit_C = logits_CV.gather(1, targets_N[rows, None]).squeeze(1)
            total += (lse_C - target_logit_C).sum()
            if with_grad:
                # d mean-CE / d logits = (softmax - one_hot(target)) / N, for each of this chunk's rows.
                grad_CV = logits_CV.sub_(lse_C[:, None]).exp_()
                grad_CV[torch.arange(grad_CV.shape[0], device=grad_CV.device), targets_N[rows]] -= 1.0
                grad_CV = grad_CV.div_(n).to(compute_dtype)
                grad_h_ND[rows] = grad_CV @ w_VD_c
                grad_w_VD += (grad_CV.t() @ h_ND_c[rows]).float()
        if with_grad:
            ctx.save_for_backward(grad_h_ND, grad_w_VD)
        ctx.dtypes = (h_ND.dtype, weight_VD.dtype)
        return total / n

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None, None]:
        grad_h_ND, grad_w_VD = ctx.saved_tensors
        h_dtype, w_dtype = ctx.dtypes
        scale = grad_loss.float()
        return (grad_h_ND.float().mul_(scale).to(h_dtype), grad_w_VD.mul(scale).to(w_dtype), None, None, None)


def chunked_readout_cross_entropy(h_BTD: torch.Tensor, weight_VD: torch.Tensor, targets_BT: torch.Tensor,
                                  chunk: int) -> torch.Tensor:
    """Mean next-token cross-entropy of the logits h W^T, `chunk` rows (tokens) at a time."""
    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    with_grad = torch.is_grad_enabled() and (h_BTD.requires_grad or weight_VD.requires_grad)
    return _ChunkedReadoutCE.apply(h_BTD.flatten(0, -2), weight_VD, targets_BT.flatten(), chunk, with_grad)
