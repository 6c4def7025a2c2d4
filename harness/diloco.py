"""DiLoCo as a parallel mode: train.parallel=diloco, train.diloco.* (harness/config.py DilocoConfig).

Douillard et al. 2023, "DiLoCo: Distributed Low-Communication Training of Language Models";
Charles et al. 2025, "Communication-Efficient Language Model Training Scales Reliably and Robustly:
Scaling Laws for DiLoCo". M replicas of the model each take H inner steps of the run's optimizer
(any registered one, on the run's LR schedule) on their own share of every batch; then

    pseudo-gradient  Delta = theta_outer - mean_m(theta_m)         (one all-reduce of P numbers)
    outer step       theta_outer <- OuterOpt(theta_outer, Delta)   (SGD, Nesterov momentum by default)
    every replica    theta_m <- theta_outer                        (inner optimizer states are kept)

Semantics the rest of the harness relies on:

- Batch: train.batch_size is the GLOBAL batch. Step t's batch is the same `train_batch(seed, t)` as
  data-parallel training takes; replica m takes rows [m B/M, (m+1) B/M). Tokens and FLOPs per
  step therefore count all replicas and match a data-parallel run of the same batch and steps.
- Where replicas live: with W torchrun ranks (M divisible by W), rank r holds replicas
  [r M/W, (r+1) M/W); with one process all M are simulated in it. Each replica's numbers do not
  depend on where it lives, so simulated and torchrun runs give the same curve.
- Outer steps: after every H-th step, and after the last step (so a run always ends on the outer
  model). The curve row of such a step carries `outer_step` (1, 2, ...), the pseudo-gradient
  norm and the cumulative `comm_bytes`.
- Rows: `loss`, `grad_norm` (before clipping) and aux terms are means over the M replicas;
  `val_loss` is the OUTER model's (between outer steps: the last synchronized one).
- Communication (what a real deployment of M workers exchanges; one process moves nothing): an
  outer step all-reduces the parameters (and persistent float buffers, e.g. a MoE's expert bias)
  in fp32; a ring all-reduce costs each of the M workers 2 (M-1)/M of that size, so
  2 (M-1) * bytes in total per outer step. status.json holds it per outer step and in total, with
  what data-parallel training would have exchanged (the same all-reduce every step) beside it.
- Checkpoints: the outer model under "model" (what export and init_from read), the outer optimizer
  under "optimizer", and every replica's parameters and inner optimizer state under "replicas"
  (gathered from all ranks), so a resume is exact and may change the number of ranks.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from harness.config import ConfigError, RunConfig, TrainConfig
from harness.data.batches import train_batch
from harness.data.tokens import TokenData
from harness.loop import ComputeBudget, Trainer
from harness.models.roles import spec_of, tag
from harness.optim.routing import set_lr, step_flops
from harness.parallel import OptimizerFactory, ParallelModel, _to_cpu
from harness.runtime import Runtime

__all__ = ["DilocoModel", "DilocoTrainer", "comm_bytes_per_outer_step", "outer_steps_done"]


def outer_steps_done(step: int, inner_steps: int, total_steps: int) -> int:
    """Outer steps taken after `step` inner steps: one per `inner_steps`, plus one at the last step."""
    return step // inner_steps + (1 if step == total_steps and step % inner_steps else 0)


def is_outer_step(step: int, inner_steps: int, total_steps: int) -> bool:
    return step % inner_steps == 0 or step == total_steps


def comm_bytes_per_outer_step(replicas: int, synced_bytes: int) -> int:
    """Bytes all M workers send in total for one ring all-reduce of `synced_bytes` (2 (M-1)/M each)."""
    return 2 * (replicas - 1) * synced_bytes


def replica_copy(module: nn.Module) -> nn.Module:
    """An independent copy of `module` with its parameters' role tags (deepcopy drops them; the
    optimizer routes parameters by role)."""
    tags = {name: spec_of(p) for name, p in module.named_parameters()}
    twin = copy.deepcopy(module)
    for name, p in twin.named_parameters():
        tag(p, tags[name])
    return twin


def _persistent_float_buffers(module: nn.Module) -> list[str]:
    """Buffers a checkpoint holds (e.g. a MoE's expert bias), synced with the parameters; the
    non-persistent ones (RoPE tables) are constants."""
    params = {name for name, _ in module.named_parameters()}
    return [name for name, value in module.state_dict().items()
            if name not in params and torch.is_floating_point(value)]


class DilocoModel(ParallelModel):
    """The outer model (`module`, run by `runner` for eval, stepped by `optimizer`, the outer SGD) and
    this process's replicas (`replicas[i]` is global replica `replica_ids[i]`, a ParallelModel with
    its inner optimizer)."""

    def __init__(self, module: nn.Module, runner: nn.Module, cfg: TrainConfig, rt: Runtime,
                 make_optimizer: OptimizerFactory):
        dc = cfg.diloco
        self.n_replicas, self.rt = dc.replicas, rt
        super().__init__(module, runner, lambda runner: _outer_optimizer(runner, cfg))
        if dc.replicas % rt.world_size:
            raise ConfigError(f"train.diloco.replicas: {dc.replicas} replicas cannot be spread over "
                              f"{rt.world_size} ranks; give a multiple of the world size (or launch fewer ranks)")
        per_rank = dc.replicas // rt.world_size
        self.replica_ids = list(range(rt.rank * per_rank, (rt.rank + 1) * per_rank))
        self.replicas = []
        for _ in self.replica_ids:
            twin = replica_copy(module)
            self.replicas.append(ParallelModel(twin, torch.compile(twin) if cfg.compile else twin, make_optimizer))
        self.buffer_names = _persistent_float_buffers(module)
        self.synced_bytes = sum(p.numel() * 4 for p in module.parameters()) + \
            sum(module.get_buffer(n).numel() * 4 for n in self.buffer_names)  # fp32 on the wire

    @classmethod
    def build(cls, module: nn.Module, cfg: TrainConfig, rt: Runtime, make_optimizer: OptimizerFactory) -> DilocoModel:
        """`module` (as built, on rt.device) as the outer model, and this rank's replicas of it."""
        return cls(module, torch.compile(module) if cfg.compile else module, cfg, rt, make_optimizer)

    def train(self, mode: bool = True) -> None:
        self.runner.train(mode)
        for replica in self.replicas:
            replica.train(mode)

    # MoE extras: the replicas' (the outer model never runs a training forward).
    def aux_losses(self) -> dict[str, torch.Tensor]:
        return self.replicas[0].aux_losses()

    def expert_load(self) -> torch.Tensor | None:
        return self.replicas[0].expert_load()

    def _sum_across_ranks(self, value: torch.Tensor) -> torch.Tensor:
        if self.rt.distributed:
            dist.all_reduce(value)  # SUM: gloo has no AVG
        return value

    def replica_mean(self, values: list[torch.Tensor]) -> torch.Tensor:
        """The mean over all M replicas of one number per local replica."""
        return self._sum_across_ranks(torch.stack(values).sum()) / self.n_replicas

    @torch.no_grad()
    def outer_step(self) -> torch.Tensor:
        """Average the replicas (one all-reduce), step the outer model on the pseudo-gradient, restart
        every replica from it; returns the pseudo-gradient's norm (on the device)."""
        outer = list(self.module.parameters())
        flat = self._local_sum()  # parameters and persistent float buffers: one message
        mean = self._sum_across_ranks(flat) / self.n_replicas
        offset = 0
        for p in outer:
            n = p.numel()
            p.grad = (p.detach().float() - mean[offset:offset + n].view_as(p)).to(p.dtype)  # pseudo-gradient
            offset += n
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad) for p in outer]))
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        for name in self.buffer_names:  # buffers have no optimizer: the outer model takes their mean
            buf = self.module.get_buffer(name)
            buf.copy_(mean[offset:offset + buf.numel()].view_as(buf))
            offset += buf.numel()
        for replica in self.replicas:
            for p, q in zip(replica.module.parameters(), outer):
                p.copy_(q)
            for name in self.buffer_names:
                replica.module.get_buffer(name).copy_(self.module.get_buffer(name))
        return norm

    def _local_sum(self) -> torch.Tensor:
        """This rank's replicas summed, parameters then persistent float buffers, flattened in fp32."""
        parts = [torch.stack([p.detach().float().reshape(-1) for p in params]).sum(0)
                 for params in zip(*(r.module.parameters() for r in self.replicas))]
        for name in self.buffer_names:
            parts.append(torch.stack([r.module.get_buffer(name).float().reshape(-1) for r in self.replicas]).sum(0))
        return torch.cat(parts)

    # ---- state: the outer model and optimizer as ParallelModel's, plus every replica ----------
    def state_dict(self) -> dict[str, Any]:
        local = {i: replica.state_dict() for i, replica in zip(self.replica_ids, self.replicas)}
        if self.rt.distributed:  # every rank's replicas, in every rank's state (rank 0 writes it)
            gathered: list[Any] = [None] * self.rt.world_size
            dist.all_gather_object(gathered, local)
            local = {i: s for part in gathered for i, s in part.items()}
        return {**super().state_dict(), "replicas": [local[i] for i in range(self.n_replicas)]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        replicas = state.get("replicas")
        if replicas is None or len(replicas) != self.n_replicas:
            found = "no replica state" if replicas is None else f"{len(replicas)} replicas"
            raise ConfigError(f"train.diloco.replicas: the checkpoint holds {found}, this run has "
                              f"{self.n_replicas}; resume a DiLoCo run with its own replica count")
        super().load_state_dict(state)
        for i, replica in zip(self.replica_ids, self.replicas):
            replica.load_state_dict(replicas[i])


def _outer_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    dc = cfg.diloco
    return torch.optim.SGD(module.parameters(), lr=dc.outer_lr, momentum=dc.outer_momentum,
                           nesterov=dc.outer_optimizer == "nesterov")


class DilocoTrainer(Trainer):
    """The loop of harness/loop.py with a DiLoCo step: every local replica takes its inner step on its
    rows of the batch, then (every H steps and at the last) the outer step."""

    model: DilocoModel

    def __init__(self, cfg: RunConfig, rt: Runtime, data: TokenData, model: nn.Module):
        dc = cfg.train.diloco
        inner_flops = step_flops(model, cfg.optim)  # before the replicas exist: the model as built
        super().__init__(cfg, rt, data, model)
        self.dc = dc
        self.replica_batch = cfg.train.batch_size // dc.replicas
        self.micro_batch = cfg.train.micro_batch_size or self.replica_batch
        # Every replica steps its inner optimizer every step: M optimizer steps' FLOPs per step.
        self.compute = ComputeBudget.of(cfg, dc.replicas * inner_flops)
        self.counts.update({"optimizer_flops_per_step": self.compute.optimizer_flops_per_step,
                            "diloco_replicas": dc.replicas, "diloco_inner_steps": dc.inner_steps,
                            "comm_bytes_per_outer_step": comm_bytes_per_outer_step(dc.replicas, self.model.synced_bytes)})

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory) -> DilocoModel:
        return DilocoModel.build(model, self.cfg.train, self.rt, make_optimizer)

    def communication(self, step: int) -> dict[str, Any]:
        """status.json's DiLoCo fields after `step` steps (besides `counts`): the bytes exchanged."""
        per_outer = comm_bytes_per_outer_step(self.dc.replicas, self.model.synced_bytes)
        outer = outer_steps_done(step, self.dc.inner_steps, self.total_steps)
        return {"outer_steps": outer, "comm_bytes": outer * per_outer,  # per outer step: in `counts`
                # data-parallel training of M workers all-reduces as many bytes (gradients) every step
                "dp_comm_bytes": step * per_outer}

    def summary(self) -> dict[str, Any]:
        return {**super().summary(), **self.communication(self.step)}

    def device_step(self, step: int) -> dict[str, Any]:
        tc, rt, model = self.cfg.train, self.rt, self.model
        multiplier = self.schedule.multiplier(step)
        batch = train_batch(self.data, seed=tc.seed, step=step, batch_size=tc.batch_size, seq_len=tc.seq_len)
        losses, norms, aux_sums = [], [], {}
        clip = tc.grad_clip if tc.grad_clip > 0 else math.inf
        for i, replica in zip(model.replica_ids, model.replicas):
            set_lr(replica.optimizer, multiplier)
            rows = rt.to_device(batch[i * self.replica_batch:(i + 1) * self.replica_batch])
            loss, aux = self.accumulate_gradients(replica, rows)
            losses.append(loss)
            norms.append(torch.nn.utils.clip_grad_norm_(replica.runner.parameters(), clip))
            for k, v in aux.items():
                aux_sums.setdefault(k, []).append(v)
            replica.optimizer_step()
        on_device = {"loss": model.replica_mean(losses), "grad_norm": model.replica_mean(norms),
                     **{k: model.replica_mean(v) for k, v in aux_sums.items()}}
        row = self.step_columns(step, multiplier)  # tokens and FLOPs of all replicas (self.compute)
        if is_outer_step(step, self.dc.inner_steps, self.total_steps):
            on_device["pseudo_grad_norm"] = model.outer_step()
            comm = self.communication(step)
            row.update(outer_step=comm["outer_steps"], comm_bytes=comm["comm_bytes"])
        return {**row, "_device": on_device}
