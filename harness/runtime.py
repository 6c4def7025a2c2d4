"""Where and how a run executes: device, precision, determinism, threads, data parallelism."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from harness.config import ConfigError, TrainConfig
from harness.device import resolve_device, resolve_precision


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: plain fp32
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def to_device(self, batch: torch.Tensor) -> torch.Tensor:
        """A host batch on the run's device without a host sync: a copy from pageable memory makes
        the host wait for the stream, which would undo train.fetch_every's queueing, so on CUDA the
        batch is pinned first (the caching host allocator keeps the buffer until the copy is done)."""
        if self.device.type != "cuda":
            return batch.to(self.device)
        return batch.pin_memory().to(self.device, non_blocking=True)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def mean_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if not self.distributed:
            return value
        total = value.clone()
        dist.all_reduce(total)  # SUM: gloo has no AVG
        return total / self.world_size


def _pick_device(cfg: TrainConfig, local_rank: int) -> torch.device:
    if resolve_device(cfg.device) == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("train.device: 'cuda' requested but no GPU is visible; use auto or cpu")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def _autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    return torch.bfloat16 if resolve_precision(cfg.precision, device.type) == "bf16" else None


def set_determinism(enabled: bool) -> None:
    if enabled:
        # Required by cuBLAS for deterministic matmuls; harmless on CPU.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def setup_runtime(cfg: TrainConfig) -> Runtime:
    """Initialise threads, determinism, the device and (under torchrun) the process group."""
    if cfg.num_threads > 0:
        torch.set_num_threads(cfg.num_threads)
    elif "SLURM_CPUS_PER_TASK" in os.environ and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(int(os.environ["SLURM_CPUS_PER_TASK"]))
    set_determinism(cfg.deterministic)

    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.parallel == "none" and world_size > 1:
        raise ConfigError("train.parallel: launched with WORLD_SIZE>1 (torchrun) but parallel=none; "
                          "set train.parallel=ddp or fsdp")
    device = _pick_device(cfg, local_rank)
    if cfg.fused_ce == "liger":
        from harness.models.fused_ce import require_runnable

        require_runnable(device)
    if cfg.parallel != "none" and not dist.is_initialized() and "RANK" in os.environ:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if cfg.batch_size % world_size:
        raise ConfigError(f"train.batch_size: {cfg.batch_size} is not divisible by the world size {world_size}")
    return Runtime(device=device, autocast_dtype=_autocast_dtype(cfg, device), rank=rank,
                   world_size=world_size, local_rank=local_rank)


def teardown_runtime(rt: Runtime) -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
