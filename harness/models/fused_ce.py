"""Readout + cross-entropy by liger-kernel's fused linear cross-entropy (train.fused_ce=liger, CUDA).

The chunked torch path (harness/models/chunked_ce.py) still writes each chunk's fp32 logits and
runs the log-sum-exp, softmax-minus-one-hot and scaling as separate elementwise kernels (~10% of a
124M step on an H200, docs/BENCHMARKS.md). Liger's Triton kernel does all of that in one pass over
each chunk's bf16 logits, in place, and computes the gradients of h and W in the forward (no
recomputed readout matmul in backward).

Numerics: the readout matmul in the autocast dtype (bf16 on GPUs), the softmax in fp32 inside the
kernel, the mean over all N rows (no ignore_index: every target counts), as the torch paths. The
weight gradient accumulates in fp32 (the parameter's dtype under autocast).

liger-kernel is imported on first use only: it imports triton, which a CPU machine lacks.
TrainConfig.validate refuses fused_ce=liger on an explicit CPU run; `require_runnable` refuses it
where the run starts (harness/runtime.py: the device resolved, before anything is written) when that
device is not a GPU or the kernels do not import.
"""

from __future__ import annotations

import math
import os

import torch

from harness.checks import ConfigError


def require_runnable(device: torch.device) -> None:
    """Refuse train.fused_ce=liger on the device a run resolved to, unless it is a GPU with triton and
    liger-kernel importable (checked without importing them)."""
    import importlib.util

    from harness.config import FUSED_CE_FIX

    if device.type != "cuda":
        raise ConfigError(f"train.fused_ce: liger needs a CUDA GPU but this run resolved to {device.type}; "
                          f"{FUSED_CE_FIX}")
    missing = [name for name in ("triton", "liger_kernel") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"train.fused_ce: liger needs {' and '.join(missing)}, not importable here; {FUSED_CE_FIX}")


def liger_chunk_mem_const(n_rows: int, d_model: int, vocab_size: int, chunk_rows: int) -> int:
    """Liger's `chunk_mem_const` that gives chunks of about `chunk_rows` rows (0: liger's default, 1).

    liger-kernel 0.8.5 bounds a chunk's logits to chunk_mem_const x N x D elements: with the default
    1, a 32 x 1024 batch of the 124M model (D 768, V 50,304) runs in 64 chunks of 512 rows, whose
    small GEMMs waste the GPU. train.loss_chunk keeps its meaning (rows per chunk) under liger too.
    """
    if chunk_rows <= 0:
        return 1
    return max(1, math.ceil(vocab_size * min(chunk_rows, n_rows) / (n_rows * d_model)))


@torch.compiler.disable
def _liger_mean_cross_entropy(h_ND: torch.Tensor, weight_VD: torch.Tensor, targets_N: torch.Tensor,
                              chunk_mem_const: int) -> torch.Tensor:
    # Outside torch.compile on purpose: liger launches its own Triton kernels and syncs on the
    # number of non-ignored targets (`.item()`), which would break the graph there anyway; so the
    # compiled forward ends at the final norm and this runs eagerly (its backward too).
    from liger_kernel.transformers.functional import liger_fused_linear_cross_entropy

    return liger_fused_linear_cross_entropy(h_ND, weight_VD, targets_N, reduction="mean",
                                            chunk_mem_const=chunk_mem_const)


def liger_readout_cross_entropy(h_BTD: torch.Tensor, weight_VD: torch.Tensor, targets_BT: torch.Tensor,
                                chunk_rows: int = 0) -> torch.Tensor:
    """Mean next-token cross-entropy of the logits h W^T, by liger's fused kernel, in chunks of
    about `chunk_rows` rows (0: liger's own memory budget, N x D logits)."""
    # Triton's interpreter (TRITON_INTERPRET=1) runs the kernels on the CPU, slowly: the CPU test of
    # this path (tests/test_fused_ce.py) uses it; anything else needs the GPU.
    if h_BTD.device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        raise ConfigError(f"train.fused_ce: liger runs on CUDA only, this forward is on {h_BTD.device}; "
                          "use train.fused_ce=none (with train.loss_chunk for a chunked loss)")
    h_ND = h_BTD.flatten(0, -2)
    const = liger_chunk_mem_const(h_ND.shape[0], h_ND.shape[1], weight_VD.shape[0], chunk_rows)
    return _liger_mean_cross_entropy(h_ND, weight_VD, targets_BT.flatten(), const)
