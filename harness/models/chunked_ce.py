"""Readout + cross-entropy in chunks of rows: the [N, V] fp32 logits never exist whole.

For a 124M model at batch 32 x 1024 with a 50k vocabulary the fp32 logits are 6.6 GB (plus their
gradient); the readout matmul itself is cheap next to moving them. Here rows (tokens) are taken
`chunk` at a time: forward keeps only each row's log-sum-exp; backward recomputes the chunk's
logits and turns them straight into the softmax-minus-one-hot gradient. Peak memory is one chunk's
logits, at the price of one more readout matmul (2 N D V FLOPs, ~1/3 of the readout's 6 N D V).

Numerics follow the unchunked path (harness.loop.cross_entropy on the model's logits): the matmul
in the autocast dtype (bf16 on GPUs), the softmax in fp32, the mean over all N rows. Equal up to
float rounding (tests/test_loss_chunking.py).
"""

from __future__ import annotations

from typing import Any

import torch

from harness.models.fused_ops import _autocast_dtype


class _ChunkedReadoutCE(torch.autograd.Function):
    """mean_n CE(h_n W^T, target_n) over h [N, D], W [V, D], targets [N]."""

    @staticmethod
    def forward(ctx: Any, h_ND: torch.Tensor, weight_VD: torch.Tensor, targets_N: torch.Tensor,
                chunk: int) -> torch.Tensor:
        compute_dtype = _autocast_dtype(h_ND)
        h_ND_c, w_VD_c = h_ND.to(compute_dtype), weight_VD.to(compute_dtype)
        n = h_ND.shape[0]
        lse_N = torch.empty(n, dtype=torch.float32, device=h_ND.device)
        total = torch.zeros((), dtype=torch.float32, device=h_ND.device)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            logits_CV = (h_ND_c[rows] @ w_VD_c.t()).float()
            lse_C = torch.logsumexp(logits_CV, dim=-1)
            lse_N[rows] = lse_C
            total += (lse_C - logits_CV.gather(1, targets_N[rows, None]).squeeze(1)).sum()
        ctx.save_for_backward(h_ND_c, w_VD_c, targets_N, lse_N)
        ctx.chunk, ctx.dtypes = chunk, (h_ND.dtype, weight_VD.dtype)
        return total / n

    @staticmethod
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None, None]:
        h_ND_c, w_VD_c, targets_N, lse_N = ctx.saved_tensors
        n, chunk = h_ND_c.shape[0], ctx.chunk
        scale = grad_loss.float() / n
        grad_h_ND = torch.empty_like(h_ND_c)
        grad_w_VD = torch.zeros(w_VD_c.shape, dtype=torch.float32, device=w_VD_c.device)
        for start in range(0, n, chunk):
            rows = slice(start, min(start + chunk, n))
            logits_CV = (h_ND_c[rows] @ w_VD_c.t()).float()
            # d CE / d logits = softmax - one_hot(target), for each of this chunk's rows.
            grad_CV = logits_CV.sub_(lse_N[rows, None]).exp_()
            grad_CV[torch.arange(grad_CV.shape[0], device=grad_CV.device), targets_N[rows]] -= 1.0
            grad_CV = grad_CV.mul_(scale).to(h_ND_c.dtype)
            grad_h_ND[rows] = grad_CV @ w_VD_c
            grad_w_VD += (grad_CV.t() @ h_ND_c[rows]).float()
        h_dtype, w_dtype = ctx.dtypes
        return grad_h_ND.to(h_dtype), grad_w_VD.to(w_dtype), None, None


def chunked_readout_cross_entropy(h_BTD: torch.Tensor, weight_VD: torch.Tensor, targets_BT: torch.Tensor,
                                  chunk: int) -> torch.Tensor:
    """Mean next-token cross-entropy of the logits h W^T, `chunk` rows (tokens) at a time."""
    if chunk <= 0:
        raise ValueError(f"chunk must be a positive number of rows, got {chunk}")
    return _ChunkedReadoutCE.apply(h_BTD.flatten(0, -2), weight_VD, targets_BT.flatten(), chunk)
