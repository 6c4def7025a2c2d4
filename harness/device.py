"""What `train.device=auto` and `train.precision=auto` mean on this machine: one rule, used by the
runtime (to pick the device) and by the run identity (so `auto` and its explicit equivalent hash
and resume alike, and a run never silently continues on other hardware)."""

from __future__ import annotations

from harness.config import TrainConfig


def resolve_device(requested: str) -> str:
    """auto -> cuda when a GPU is visible, else cpu; an explicit device is kept as given."""
    if requested != "auto":
        return requested
    import torch  # here, not at the top: the identity (and so `collect`) must not pay for torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_precision(requested: str, device: str) -> str:
    """auto -> bf16 autocast on CUDA, fp32 on CPU (no bf16 hardware there; it is ~3x slower)."""
    if requested != "auto":
        return requested
    return "bf16" if resolve_device(device) == "cuda" else "fp32"


def resolve_hardware(train_cfg: TrainConfig) -> None:
    """Replace `auto` in train.device / train.precision by what it means here (in place)."""
    train_cfg.device = resolve_device(train_cfg.device)
    train_cfg.precision = resolve_precision(train_cfg.precision, train_cfg.device)
