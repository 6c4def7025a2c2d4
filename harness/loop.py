"""The training loop: one optimizer step at a time, with hooks for everything else.

Per step t (counted from 1): set the LR from the schedule, take the batch that is a pure function
of (seed, t), run forward/backward over micro-batches, stop on a non-finite loss, clip, step, and
evaluate at eval steps; then every hook sees the step's curve row. Writing the curve, checkpoints,
status.json, the progress bar, the wandb mirror, the plot and preemption are hooks (harness/hooks.py,
harness/tracking/): the loop knows none of them, nor the parallel mode (harness/parallel.py).
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.checkpoint import load_checkpoint
from harness.config import ConfigError, RunConfig
from harness.data.batches import train_batch, val_batches
from harness.data.mixture import is_mixture, tokens_per_source, val_sets
from harness.data.repetition import epochs
from harness.data.tokens import TokenData
from harness.models import mup
from harness.models.flops import flops_per_token
from harness.optim.routing import build_optimizer, set_lr, step_flops
from harness.schedules import Schedule, build_schedule
from harness.outcome import NonFiniteLossError
from harness.parallel import OptimizerFactory, ParallelModel, wrap
from harness.prune import Pruner
from harness.runtime import Runtime

__all__ = ["Hook", "Trainer", "ComputeBudget", "NonFiniteLossError", "evaluate", "evaluate_sources", "eval_steps"]


class Hook:
    """Something `Trainer.fit` calls at fixed points. Override what you need; hooks run in list
    order, on every rank (train.py adds the ones that only write files on rank 0 alone)."""

    def on_start(self, trainer: Trainer) -> None:
        """Before the first step of this launch (after any resume: `trainer.step` is where it starts)."""

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After each optimizer step; `row` is the step's curve row, `trainer.step` the step."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last step: the run is complete."""

    def on_error(self, trainer: Trainer, err: BaseException) -> None:
        """The loop or a hook raised `err` (it is re-raised after every hook has seen it)."""

    def close(self) -> None:
        """Always, last (also when on_start never ran)."""


@dataclass(frozen=True)
class ComputeBudget:
    """Tokens and training FLOPs after a number of steps: the one place they are computed (curve rows
    and status.json). FLOPs per token follow harness/models/flops.py.

    Three FLOP counts, all cumulative:
    * `flops`: the model's training FLOPs, tokens x FLOPs/token (6N + attention). Left as it is (not
      including the optimizer) so that it stays the C of the scaling laws (C = 6ND and isoFLOP fits,
      public curves, runs recorded before optimizer FLOPs were counted).
    * `optimizer_flops`: steps x the optimizer's FLOPs per step (harness.optim.routing.step_flops:
      Muon's Newton-Schulz and SOAP's rotations and eigenbasis refreshes; ~14 per parameter for AdamW).
    * `total_flops`: the sum, the axis on which optimizers are compared at matched compute.
    """

    tokens_per_step: int
    flops_per_token: float
    optimizer_flops_per_step: float = 0.0

    @classmethod
    def of(cls, cfg: RunConfig, optimizer_flops_per_step: float = 0.0) -> ComputeBudget:
        return cls(cfg.train.batch_size * cfg.train.seq_len, float(flops_per_token(cfg.model, cfg.train.seq_len)),
                   float(optimizer_flops_per_step))

    def tokens(self, step: int) -> int:
        return step * self.tokens_per_step

    def flops(self, step: int) -> float:
        return self.tokens(step) * self.flops_per_token

    def optimizer_flops(self, step: int) -> float:
        return step * self.optimizer_flops_per_step

    def total_flops(self, step: int) -> float:
        return self.flops(step) + self.optimizer_flops(step)

    def columns(self, step: int) -> dict[str, Any]:
        """The curve row / status.json fields: tokens and the three FLOP counts after `step` steps."""
        return {"tokens": self.tokens(step), "flops": self.flops(step),
                "optimizer_flops": self.optimizer_flops(step), "total_flops": self.total_flops(step)}


def eval_steps(total_steps: int, eval_every: int, boundaries: list[int]) -> set[int]:
    """Log-spaced early (1, 2, 4, ...), every `eval_every`, at and just after each schedule phase
    boundary, a few points inside a final cooldown, and the last step."""
    steps = {total_steps}
    power = 1
    while power <= total_steps:
        steps.add(power)
        power *= 2
    steps.update(range(eval_every, total_steps + 1, eval_every))
    for b in boundaries:
        steps.update({b, min(b + 1, total_steps)})
    if len(boundaries) >= 2 and boundaries[-2] < total_steps:
        start = boundaries[-2]  # the cooldown (or final decay) start: resolve its shape
        span = total_steps - start
        steps.update(start + round(span * k / 4) for k in range(1, 4))
    return {s for s in steps if 1 <= s <= total_steps}


def cross_entropy(logits_BTV: torch.Tensor, targets_BT: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    # Upcast: bf16 logits lose too much precision in the log-softmax.
    return F.cross_entropy(logits_BTV.float().flatten(0, 1), targets_BT.flatten(), reduction=reduction)


@torch.no_grad()
def evaluate(model: Any, batches: Sequence[torch.Tensor], rt: Runtime) -> float:
    """Mean val cross-entropy per target token over all the fixed val windows (each rank takes a
    share of the batches). Summed per token, not averaged per batch, so it does not depend on how
    the windows are split into batches (a smaller last batch weighs no more than its tokens)."""
    model.train(False)
    total = torch.zeros(2, device=rt.device, dtype=torch.float64)  # [sum of losses, tokens]
    for i in range(rt.rank, len(batches), rt.world_size):
        batch = rt.to_device(batches[i])
        with rt.autocast():
            losses = cross_entropy(model(batch[:, :-1]), batch[:, 1:], reduction="none")
        total += torch.stack([losses.double().sum(), torch.tensor(losses.numel(), device=rt.device,
                                                                   dtype=torch.float64)])
    if rt.distributed:
        dist.all_reduce(total)
    model.train(True)
    return float(total[0] / total[1])


def evaluate_sources(model: Any, val: dict[str, Sequence[torch.Tensor]], weights: Sequence[float],
                     rt: Runtime) -> dict[str, float]:
    """A mixture's val columns: `val_loss/<name>` on each source's fixed val set (`evaluate`), and
    `val_loss`, their mean weighted by `weights` (the sampling weights of the step: the loss of the
    mix being trained on)."""
    per_source = {f"val_loss/{name}": evaluate(model, batches, rt) for name, batches in val.items()}
    mixed = sum(float(w) * loss for w, loss in zip(weights, per_source.values()))
    return {"val_loss": mixed, **per_source}


def expert_load_columns(load_LE: torch.Tensor | None) -> dict[str, Any]:
    """Curve columns for a MoE's per-layer expert load (fraction of routed tokens per expert):
    `expert_load_l{i}` (the fractions), `expert_load_max_over_mean_l{i}` (1 = perfectly balanced)
    and `expert_load_max_over_mean` (the worst layer). Empty for dense models."""
    if load_LE is None:
        return {}
    ratio_L = load_LE.max(-1).values / load_LE.mean(-1)
    columns: dict[str, Any] = {"expert_load_max_over_mean": float(ratio_L.max())}
    for i, (load_E, ratio) in enumerate(zip(load_LE.tolist(), ratio_L.tolist())):
        columns[f"expert_load_max_over_mean_l{i}"] = ratio
        columns[f"expert_load_l{i}"] = [round(x, 6) for x in load_E]
    return columns


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def param_counts(model: nn.Module) -> dict[str, int]:
    """Parameter counts of a model as built (before FSDP swaps its parameters for sharded ones)."""
    return {"params": model.num_params(), "params_non_embedding": model.num_params(include_embedding=False),
            "params_active": model.num_active_params()}  # per token: < params for a MoE


class Trainer:
    """Trains `model` (as built, on rt.device) as `cfg` says. State: the step, model + optimizer
    (owned by a ParallelModel), RNG, and the last train / val loss (so a run resumed at its last
    step still reports them)."""

    def __init__(self, cfg: RunConfig, rt: Runtime, data: TokenData, model: nn.Module):
        tc = cfg.train
        self.cfg, self.rt, self.data = cfg, rt, data
        self.total_steps = tc.steps
        self.compute = ComputeBudget.of(cfg, step_flops(model, cfg.optim))
        self.unique_tokens = data.unique_tokens  # the training split: `epochs` = tokens / this
        self.counts = {**param_counts(model), "flops_per_token": self.compute.flops_per_token,
                       "optimizer_flops_per_step": self.compute.optimizer_flops_per_step}
        model.loss_chunk = tc.loss_chunk  # chunked readout + CE inside the forward (0: outside, whole logits)
        model.fused_ce = tc.fused_ce  # liger: the readout + CE as liger-kernel's fused kernel, inside the forward
        # muP's per-role LR and weight-decay factors (empty, i.e. all 1, unless model.mup.enabled).
        multipliers = mup.optimizer_multipliers(cfg.model, cfg.optim)
        self.model: ParallelModel = self.wrap(model, lambda runner: build_optimizer(
            runner, cfg.optim, rt.device, **multipliers))
        # Sparse pre-training (train.prune, harness/prune.py); None when off: the loop is then unchanged.
        self.pruner = Pruner(tc.prune, model, tc.steps) if tc.prune.enabled else None
        self.schedule: Schedule = build_schedule(cfg.schedule, total_steps=tc.steps, peak_lr=cfg.optim.lr,
                                                 batch_size=tc.batch_size,
                                                 tokens_per_step=self.compute.tokens_per_step)
        self.rank_batch = tc.batch_size // rt.world_size
        self.micro_batch = tc.micro_batch_size or self.rank_batch
        if self.rank_batch % self.micro_batch:
            raise ConfigError(f"train.micro_batch_size: {self.micro_batch} must divide the per-rank batch "
                              f"{self.rank_batch} (batch_size / world size)")
        # One fixed set of windows (per source for a mixture), evaluated in micro-batch sized chunks.
        self.mixture = is_mixture(data)
        if self.mixture:
            self.val_by_source = {name: list(windows.split(self.micro_batch)) for name, windows in
                                  val_sets(data, n_sequences=tc.eval_sequences, seq_len=tc.seq_len).items()}
            self.source_tokens = np.zeros(len(data.names), dtype=np.int64)  # cumulative, up to self.step
        else:
            (val_windows,) = val_batches(data, batch_size=tc.eval_sequences, seq_len=tc.seq_len, n_batches=1)
            self.val = list(val_windows.split(self.micro_batch))
        self.last_val_columns: dict[str, float] = {}  # a mixture's val_loss/<name> of the last eval
        # Pinned checkpoints (train.checkpoint_at, e.g. branch points) also get a val loss.
        self.eval_at = eval_steps(tc.steps, tc.eval_every, self.schedule.phase_boundaries()) | set(tc.checkpoint_at)
        self.step = 0
        self.last_loss: float = float("nan")
        self.last_val_loss: float | None = None
        self.last_checkpoint: str | None = None  # file name of the checkpoint last saved or loaded
        self.at_head = True  # the row hooks see is the newest step computed (see fit)

    def wrap(self, model: nn.Module, make_optimizer: OptimizerFactory) -> ParallelModel:
        """`model` as the run's parallel mode runs it, with its optimizer (harness/parallel.py);
        DiLoCo's trainer (harness/diloco.py) returns its replicas and outer model instead."""
        return wrap(model, self.cfg.train, self.rt, make_optimizer)

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs (collective under FSDP: every rank calls it)."""
        state = {"step": self.step, **self.model.state_dict(), "rng": rng_state(),
                 "last_loss": self.last_loss, "last_val_loss": self.last_val_loss}
        if self.pruner is not None:
            state["prune_masks"] = self.pruner.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state)
        if self.pruner is not None:
            self.pruner.load_state_dict(state.get("prune_masks"))
        set_rng_state(state["rng"])
        self.step = int(state["step"])
        # Checkpoints written before these were kept lack them: the losses are then unknown.
        self.last_loss = state.get("last_loss", float("nan"))
        self.last_val_loss = state.get("last_val_loss")

    def resume(self, checkpoint: Path | None) -> int | None:
        """Continue from `checkpoint` (None: a fresh start); returns the step resumed from."""
        if checkpoint is None:
            return None
        self.load_state_dict(load_checkpoint(checkpoint))
        self.last_checkpoint = checkpoint.name
        return self.step

    def summary(self) -> dict[str, Any]:
        """Where the run stands: step, tokens (with the training split's unique tokens and the epochs
        over it), FLOPs and the last train / val loss."""
        tokens = self.compute.tokens(self.step)
        return {"step": self.step, **self.compute.columns(self.step), "unique_tokens": self.unique_tokens,
                "epochs": epochs(tokens, self.unique_tokens),
                "final_loss": self.last_loss, "final_val_loss": self.last_val_loss,
                **{f"final_{k}": v for k, v in self.last_val_columns.items() if k != "val_loss"},
                **(self.source_token_columns() if self.mixture else {})}

    # ---- mixtures ------------------------------------------------------------------------
    def source_token_columns(self) -> dict[str, int]:
        """`tokens/<name>`: tokens each source gave this run's steps 1..self.step."""
        return {f"tokens/{name}": int(n) for name, n in zip(self.data.names, self.source_tokens)}

    def count_source_tokens(self, step: int) -> None:
        """Add step `step`'s rows (drawn as its batch draws them) to the per-source token counts."""
        tc = self.cfg.train
        self.source_tokens += tokens_per_source(self.data, seed=tc.seed, first_step=step, last_step=step,
                                                batch_size=tc.batch_size, seq_len=tc.seq_len)

    def evaluate_now(self, step: int) -> dict[str, Any]:
        """The val columns of the model as it is after `step`: `val_loss` (plus `val_loss/<name>` per
        source of a mixture, and `val_loss` the mixture by the step's weights)."""
        if not self.mixture:
            return {"val_loss": evaluate(self.model, self.val, self.rt)}
        self.last_val_columns = evaluate_sources(self.model, self.val_by_source, self.data.weights_at(step), self.rt)
        return dict(self.last_val_columns)

    # ---- one step ----------------------------------------------------------------------
    def device_step(self, step: int) -> dict[str, Any]:
        """One optimizer step, nothing fetched from the device: its curve row with the loss, the
        gradient norm and the aux terms still tensors under "_device" (`fetch` makes them floats and
        checks them). The step is taken even when they are not finite: `fetch` then stops the run
        at this step, before any later state is saved."""
        tc, rt = self.cfg.train, self.rt
        multiplier = self.schedule.multiplier(step)
        set_lr(self.model.optimizer, multiplier)
        if self.pruner is not None:
            self.pruner.before_step(step)
        batch = train_batch(self.data, seed=tc.seed, step=step, batch_size=tc.batch_size, seq_len=tc.seq_len)
        rows = rt.to_device(batch[rt.rank * self.rank_batch:(rt.rank + 1) * self.rank_batch])
        loss_sum, aux_sums = self.accumulate_gradients(self.model, rows)
        if self.pruner is not None:
            self.pruner.mask_gradients()  # pruned weights get no gradient: clipping sees the live ones
        on_device = {"loss": rt.mean_across_ranks(loss_sum),
                     # ParallelModel.clip_grad_norm's clipping, without its float(): no host sync here.
                     "grad_norm": torch.nn.utils.clip_grad_norm_(self.model.runner.parameters(),
                                                                 tc.grad_clip if tc.grad_clip > 0 else math.inf),
                     **{k: rt.mean_across_ranks(v) for k, v in aux_sums.items()}}  # e.g. aux_loss, z_loss
        self.model.optimizer_step()
        pruned = {}
        if self.pruner is not None:
            self.pruner.after_step()
            pruned = self.pruner.columns()  # params_live, sparsity
        return {**self.step_columns(step, multiplier), **pruned, "_device": on_device}

    def step_columns(self, step: int, multiplier: float) -> dict[str, Any]:
        """The host-side columns of step `step`'s row, once its optimizer step is taken (a mixture's
        per-source token counts advance here)."""
        if self.mixture:
            self.count_source_tokens(step)
        return {
            "step": step,
            **self.compute.columns(step),  # tokens, flops, optimizer_flops, total_flops
            **(self.source_token_columns() if self.mixture else {}),  # tokens/<name>, cumulative
            "unique_tokens": self.unique_tokens,
            "epochs": epochs(self.compute.tokens(step), self.unique_tokens),
            "lr": self.cfg.optim.lr * multiplier,
        }

    def accumulate_gradients(self, model: ParallelModel, rows: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Forward and backward of `model` over `rows` (on the device) in micro-batches of
        `self.micro_batch`: gradients accumulate in the model; returns the mean CE and the MoE aux
        terms, still on the device."""
        tc, rt = self.cfg.train, self.rt
        n_micro = len(rows) // self.micro_batch
        loss_sum = torch.zeros((), device=rt.device)
        aux_sums: dict[str, torch.Tensor] = {}
        for i in range(n_micro):
            micro = rows[i * self.micro_batch:(i + 1) * self.micro_batch]
            with model.accumulating(last_micro_batch=i == n_micro - 1), rt.autocast():
                if tc.loss_chunk or tc.fused_ce != "none":  # the loss inside the (possibly compiled) forward
                    loss = model.runner(micro[:, :-1], targets=micro[:, 1:]) / n_micro
                else:
                    loss = cross_entropy(model(micro[:, :-1]), micro[:, 1:]) / n_micro
                # MoE aux terms (weighted) of this forward: backpropagated with the CE, logged apart.
                aux = {k: v / n_micro for k, v in model.aux_losses().items()}
            (loss + sum(aux.values()) if aux else loss).backward()
            loss_sum += loss.detach()
            for k, v in aux.items():
                aux_sums[k] = aux_sums.get(k, 0) + v.detach().float()
        return loss_sum, aux_sums

    def fetch(self, pending: Sequence[dict[str, Any]], seconds: float) -> tuple[list[dict[str, Any]], NonFiniteLossError | None]:
        """The rows of `pending` steps with their numbers fetched in one transfer, and `tokens_per_s`
        over the `seconds` they took together; cut before the first step whose loss or gradient norm
        is not finite, with the error that stops the run there (else None)."""
        flat = torch.stack([_local(v).detach().float().reshape(()) for row in pending
                            for v in row["_device"].values()]).tolist()
        rows, error, i = [], None, 0
        tokens_per_s = self.compute.tokens_per_step * len(pending) / max(seconds, 1e-9)
        for pending_row in pending:
            row = {k: v for k, v in pending_row.items() if k != "_device"}
            values = dict(zip(pending_row["_device"], flat[i:i + len(pending_row["_device"])]))
            i += len(values)
            if not (math.isfinite(values["loss"]) and math.isfinite(values["grad_norm"])):
                error = NonFiniteLossError(row["step"], values["loss"], values["grad_norm"], self.last_checkpoint)
                break
            aux = {k: v for k, v in values.items() if k not in ("loss", "grad_norm")}
            rows.append({**row, "loss": values["loss"], "grad_norm": values["grad_norm"],
                         "tokens_per_s": tokens_per_s, **aux})  # aux terms: never part of `loss`
        return rows, error

    def train_step(self, step: int) -> dict[str, Any]:
        """One optimizer step with its numbers fetched; returns its curve row (without the val loss)."""
        start = time.perf_counter()
        rows, error = self.fetch([self.device_step(step)], time.perf_counter() - start)
        if error is not None:
            raise error
        rows[0]["tokens_per_s"] = self.compute.tokens_per_step / max(time.perf_counter() - start, 1e-9)
        return rows[0]

    def fetch_due(self, step: int, n_pending: int) -> bool:
        """Fetch the pending steps' numbers now: every `train.fetch_every` steps, and at every step
        where a hook may save state or the loop evaluates (checkpoint, pinned, eval and last steps),
        so a checkpoint never holds a step whose loss was not checked."""
        tc = self.cfg.train
        return (n_pending >= tc.fetch_every or step == self.total_steps or step in self.eval_at
                or step % tc.checkpoint_every == 0 or step in tc.checkpoint_at)

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, hooks: Sequence[Hook]) -> None:
        """Train from `self.step` to the last step. Any error reaches every hook's on_error, then propagates.

        The numbers of a step (loss, gradient norm) are fetched from the device every
        `train.fetch_every` steps (and at checkpoint and eval steps), all at once: between fetches the
        host only queues work. Hooks then see each step's row in order; `at_head` is False while they
        see a step older than the model's state (preemption waits for the head)."""
        self.model.train()
        try:
            for hook in hooks:
                hook.on_start(self)
            computed, pending = self.step, []
            if self.mixture:  # resumed (or branched) at self.step: the counts of steps 1..self.step
                tc = self.cfg.train
                self.source_tokens = tokens_per_source(self.data, seed=tc.seed, first_step=1, last_step=self.step,
                                                       batch_size=tc.batch_size, seq_len=tc.seq_len)
            window_start = time.perf_counter()
            while computed < self.total_steps:
                computed += 1
                pending.append(self.device_step(computed))
                if not self.fetch_due(computed, len(pending)):
                    continue
                rows, error = self.fetch(pending, time.perf_counter() - window_start)
                pending = []
                for row in rows:
                    step = row["step"]
                    self.at_head = step == computed
                    if step in self.eval_at:  # eval steps are fetch points: the model is at this step
                        row.update(self.evaluate_now(step))
                        self.last_val_loss = row["val_loss"]
                        row.update(expert_load_columns(self.model.expert_load()))
                    self.step, self.last_loss = step, row["loss"]
                    for hook in hooks:
                        hook.on_step(self, row)
                if error is not None:
                    raise error
                window_start = time.perf_counter()
            for hook in hooks:
                hook.on_end(self)
        except BaseException as err:
            for hook in hooks:
                hook.on_error(self, err)
            raise
        finally:
            for hook in hooks:
                hook.close()


def _local(value: torch.Tensor) -> torch.Tensor:
    """A plain tensor (FSDP's gradient norm is a DTensor)."""
    return value.full_tensor() if hasattr(value, "full_tensor") else value
