"""Wrapping a model for data parallelism and compilation, and its state for checkpoints.

- none: the model as built (optionally torch.compile'd).
- ddp:  DistributedDataParallel under torchrun (gloo on CPU, NCCL on CUDA).
- fsdp: FSDP2 `fully_shard` per transformer block, then the root (NCCL on CUDA, gloo on CPU);
        compute in the autocast dtype with fp32 master weights and fp32 gradient reduction.

Checkpoints always hold full (unsharded) tensors keyed like the unwrapped model, so a run can
resume under a different world size and `harness.export` reads them without torch.distributed.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness.models.roles import spec_of, tag
from harness.runtime import Runtime


def _blocks(model: nn.Module) -> list[nn.Module]:
    for name in ("blocks", "layers", "h"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, nn.ModuleList):
            return list(blocks)
    raise TypeError(f"{type(model).__name__} has no ModuleList of blocks named blocks/layers/h to shard")


def wrap_model(raw_model: nn.Module, parallel: str, rt: Runtime, compile_model: bool) -> nn.Module:
    model: nn.Module = raw_model
    if parallel == "ddp" and rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(raw_model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    elif parallel == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        # Compute in the run's autocast dtype (bf16 on GPUs), reduce gradients in fp32; fp32 throughout
        # when the run is fp32 (CPU), so FSDP matches single-process numerics there.
        policy = MixedPrecisionPolicy(param_dtype=rt.autocast_dtype, reduce_dtype=torch.float32)
        # fully_shard swaps every parameter for a new (DTensor) one: carry the role tags across,
        # since the optimizer routes parameters by role (harness.optim.optimizers).
        tags = {name: spec_of(p) for name, p in raw_model.named_parameters()}
        for block in _blocks(raw_model):
            fully_shard(block, mp_policy=policy)
        fully_shard(raw_model, mp_policy=policy)
        for name, p in raw_model.named_parameters():
            tag(p, tags[name])
        model = raw_model
    if compile_model:
        model = torch.compile(model)
    return model


def model_state_dict(model: nn.Module, raw_model: nn.Module, parallel: str) -> dict[str, torch.Tensor]:
    if parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(raw_model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu().clone() for k, v in raw_model.state_dict().items()}


def optimizer_state_dict(model: nn.Module, optimizer: torch.optim.Optimizer, parallel: str) -> dict[str, Any]:
    if parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

        return get_optimizer_state_dict(_unwrap(model), optimizer,
                                        options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return _to_cpu(optimizer.state_dict())


def load_model_and_optimizer(model: nn.Module, raw_model: nn.Module, optimizer: torch.optim.Optimizer,
                             model_state: dict[str, Any], optim_state: dict[str, Any], parallel: str) -> None:
    if parallel == "fsdp":
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(raw_model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state,
                       options=StateDictOptions(full_state_dict=True))
        return
    raw_model.load_state_dict(model_state)
    optimizer.load_state_dict(optim_state)


def _unwrap(model: nn.Module) -> nn.Module:
    model = getattr(model, "_orig_mod", model)  # torch.compile
    return getattr(model, "module", model)  # DDP


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
