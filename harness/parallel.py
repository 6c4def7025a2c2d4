"""The model as a run uses it: wrapped for data parallelism and compilation, with its optimizer.

`wrap()` reads `train.parallel` once and returns a `ParallelModel`, which runs the forward pass,
steps the optimizer and owns the state of both, so the training loop never asks which mode it is in:

- none: the model as built (optionally torch.compile'd).
- ddp:  DistributedDataParallel under torchrun (gloo on CPU, NCCL on CUDA).
- diloco: not here: M replicas of the model with their inner optimizers and an outer model with the
        outer optimizer (harness/diloco.py DilocoModel, a ParallelModel built by DilocoTrainer.wrap).
- fsdp: FSDP2 `fully_shard` per transformer block, then the root (NCCL on CUDA, gloo on CPU);
        compute in the autocast dtype with fp32 master weights and fp32 gradient reduction.
        Its state is gathered and scattered by `ShardedModel` (a collective: every rank calls it).

Checkpoints always hold full (unsharded) tensors keyed like the unwrapped model, so a run can
resume under a different world size and `harness.export` reads them without torch.distributed.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import nn

from harness.config import TrainConfig
from harness.models.roles import spec_of, tag
from harness.runtime import Runtime

OptimizerFactory = Callable[[nn.Module], torch.optim.Optimizer]


class ParallelModel:
    """A model (as built: `module`), what runs it (`runner`: DDP / compiled / the module itself) and its
    optimizer. State: {"model": full tensors on CPU, "optimizer": optimizer.state_dict() on CPU}."""

    def __init__(self, module: nn.Module, runner: nn.Module, make_optimizer: OptimizerFactory):
        self.module, self.runner = module, runner
        # Built over the runner's parameters: after FSDP's swap, and under the names the runner uses.
        self.optimizer = make_optimizer(runner)

    def __call__(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.runner(input_ids)

    def accumulating(self, last_micro_batch: bool) -> contextlib.AbstractContextManager:
        """Skip DDP's gradient all-reduce on all but the last micro-batch of a step."""
        if last_micro_batch or not hasattr(self.runner, "no_sync"):
            return contextlib.nullcontext()
        return self.runner.no_sync()

    def train(self, mode: bool = True) -> None:
        self.runner.train(mode)

    def clip_grad_norm(self, max_norm: float) -> float:
        return float(torch.nn.utils.clip_grad_norm_(self.runner.parameters(), max_norm))

    def optimizer_step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.module.after_optimizer_step()  # MoE: expert load of this step, aux-free bias update

    # The model's own per-forward extras (MoE aux losses and expert load; empty for dense models).
    def aux_losses(self) -> dict[str, torch.Tensor]:
        return self.module.aux_losses()

    def expert_load(self) -> torch.Tensor | None:
        return self.module.expert_load()

    def state_dict(self) -> dict[str, Any]:
        return {"model": {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()},
                "optimizer": _to_cpu(self.optimizer.state_dict())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])


class ShardedModel(ParallelModel):
    """FSDP2: each rank holds a shard; state is gathered to full tensors (and scattered back on load)."""

    def state_dict(self) -> dict[str, Any]:
        from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                             get_optimizer_state_dict)

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return {"model": get_model_state_dict(self.module, options=options),
                "optimizer": get_optimizer_state_dict(self.module, self.optimizer, options=options)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        set_state_dict(self.module, self.optimizer, model_state_dict=state["model"],
                       optim_state_dict=state["optimizer"], options=StateDictOptions(full_state_dict=True))


def wrap(module: nn.Module, cfg: TrainConfig, rt: Runtime, make_optimizer: OptimizerFactory) -> ParallelModel:
    """Wrap `module` (already on rt.device) for `cfg.parallel` and `cfg.compile`; build its optimizer."""
    runner: nn.Module = module
    kind = ParallelModel
    if cfg.parallel == "ddp" and rt.distributed:
        from torch.nn.parallel import DistributedDataParallel

        runner = DistributedDataParallel(module, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None)
    elif cfg.parallel == "diloco":
        raise ValueError("train.parallel=diloco: the run's trainer is harness.diloco.DilocoTrainer, which "
                         "builds the replicas (harness.train.new_trainer picks it)")
    elif cfg.parallel == "fsdp":
        _fully_shard(module, rt)
        kind = ShardedModel
    if cfg.compile:
        runner = torch.compile(runner)
    return kind(module, runner, make_optimizer)


def _fully_shard(module: nn.Module, rt: Runtime) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # Compute in the run's autocast dtype (bf16 on GPUs), reduce gradients in fp32; fp32 throughout
    # when the run is fp32 (CPU), so FSDP matches single-process numerics there.
    policy = MixedPrecisionPolicy(param_dtype=rt.autocast_dtype, reduce_dtype=torch.float32)
    # fully_shard swaps every parameter for a new (DTensor) one: carry the role tags across,
    # since the optimizer routes parameters by role (harness.optim.routing).
    tags = {name: spec_of(p) for name, p in module.named_parameters()}
    for block in _blocks(module):
        fully_shard(block, mp_policy=policy)
    fully_shard(module, mp_policy=policy)
    for name, p in module.named_parameters():
        tag(p, tags[name])


def _blocks(model: nn.Module) -> list[nn.Module]:
    for name in ("blocks", "layers", "h"):
        blocks = getattr(model, name, None)
        if isinstance(blocks, nn.ModuleList):
            return list(blocks)
    raise TypeError(f"{type(model).__name__} has no ModuleList of blocks named blocks/layers/h to shard")


def _to_cpu(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().clone()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_to_cpu(v) for v in obj]
    return obj
