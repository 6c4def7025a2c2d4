"""The training loop. Reads top to bottom: set up, maybe resume, then one optimizer step at a time.

Per step t (counted from 1): set the LR from the schedule, take the batch that is a pure function
of (seed, t), run forward/backward over micro-batches, stop on a non-finite loss, clip, step,
append the curve row (with val loss at eval steps), checkpoint when due.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from harness.config import ConfigError, RunConfig
from harness.data.batches import train_batch, val_batches
from harness.data.tokens import TokenData
from harness.models import mup
from harness.models.flops import flops_per_token
from harness.optim.optimizers import build_optimizer, set_lr
from harness.optim.schedules import Schedule, build_schedule
from harness.preemption import Preempted, PreemptionWatcher
from harness.parallel import load_model_and_optimizer, model_state_dict, optimizer_state_dict
from harness.run import RunDir
from harness.runtime import Runtime
from harness.tracking.curve import CurveWriter
from harness.tracking.progress import ProgressBar


class NonFiniteLossError(RuntimeError):
    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str | None):
        self.step, self.loss, self.grad_norm, self.checkpoint = step, loss, grad_norm, checkpoint
        kept = f"the last good checkpoint ({checkpoint}) is kept" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"non-finite training loss at step {step} (loss={loss}, grad_norm={grad_norm}); {kept}. "
            "Lower optim.lr, add warmup (schedule.warmup_steps) or clipping (train.grad_clip)."
        )


@dataclass
class LoopResult:
    final_step: int
    final_loss: float
    final_val_loss: float | None
    resumed_from: int | None


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


def cross_entropy(logits_BTV: torch.Tensor, targets_BT: torch.Tensor) -> torch.Tensor:
    # Upcast: bf16 logits lose too much precision in the log-softmax.
    return F.cross_entropy(logits_BTV.float().flatten(0, 1), targets_BT.flatten())


@torch.no_grad()
def evaluate(model: nn.Module, batches: list[torch.Tensor], rt: Runtime) -> float:
    """Mean val cross-entropy over the fixed val batches (each rank takes a share)."""
    model.eval()
    total = torch.zeros(2, device=rt.device, dtype=torch.float64)
    for i in range(rt.rank, len(batches), rt.world_size):
        batch = batches[i].to(rt.device, non_blocking=True)
        with rt.autocast():
            loss = cross_entropy(model(batch[:, :-1]), batch[:, 1:])
        total += torch.stack([loss.double(), torch.ones((), device=rt.device, dtype=torch.float64)])
    if rt.distributed:
        dist.all_reduce(total)
    model.train()
    return float(total[0] / total[1])


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


class Trainer:
    def __init__(self, cfg: RunConfig, run: RunDir, rt: Runtime, data: TokenData,
                 raw_model: nn.Module, model: nn.Module,
                 on_row: Callable[[dict[str, Any]], None] | None = None):
        self.cfg, self.run, self.rt, self.data = cfg, run, rt, data
        self.raw_model, self.model = raw_model, model
        self.on_row = on_row
        tc = cfg.train
        self.tokens_per_step = tc.batch_size * tc.seq_len
        self.flops_per_token = float(flops_per_token(cfg.model, tc.seq_len))
        # muP's per-role LR and weight-decay factors (empty, i.e. all 1, unless model.mup.enabled).
        self.optimizer = build_optimizer(model, cfg.optim, rt.device,
                                         **mup.optimizer_multipliers(cfg.model, cfg.optim))
        self.schedule: Schedule = build_schedule(cfg.schedule, total_steps=tc.steps, peak_lr=cfg.optim.lr,
                                                 batch_size=tc.batch_size, tokens_per_step=self.tokens_per_step)
        self.rank_batch = tc.batch_size // rt.world_size
        self.micro_batch = tc.micro_batch_size or self.rank_batch
        if self.rank_batch % self.micro_batch:
            raise ConfigError(f"train.micro_batch_size: {self.micro_batch} must divide the per-rank batch "
                              f"{self.rank_batch} (batch_size / world size)")
        # One fixed set of windows, evaluated in micro-batch sized chunks.
        (val_windows,) = val_batches(data, batch_size=tc.eval_sequences, seq_len=tc.seq_len, n_batches=1)
        self.val = list(val_windows.split(self.micro_batch))
        self.eval_at = eval_steps(tc.steps, tc.eval_every, self.schedule.phase_boundaries())
        self.step = 0
        self.last_checkpoint: str | None = None
        self.last_aux: dict[str, float] = {}

    # ---- state -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": model_state_dict(self.model, self.raw_model, self.cfg.train.parallel),
            "optimizer": optimizer_state_dict(self.model, self.optimizer, self.cfg.train.parallel),
            "rng": rng_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_model_and_optimizer(self.model, self.raw_model, self.optimizer, state["model"], state["optimizer"],
                                 self.cfg.train.parallel)
        set_rng_state(state["rng"])
        self.step = int(state["step"])

    def maybe_resume(self, curve: CurveWriter) -> int | None:
        path = latest_checkpoint(self.run.checkpoint_dir)
        if path is None:
            if self.rt.is_main:
                curve.truncate_after(0)  # a fresh start: drop rows of a run that died before its first checkpoint
            return None
        self.load_state_dict(load_checkpoint(path))
        self.last_checkpoint = path.name
        if self.rt.is_main:
            curve.truncate_after(self.step)
        return self.step

    def save(self, curve: CurveWriter) -> None:
        state = self.state_dict()  # collective under FSDP: every rank takes part
        if self.rt.is_main:
            curve.sync()
            path = save_checkpoint(self.run.checkpoint_dir, self.step, state, self.cfg.train.keep_checkpoints)
            self.last_checkpoint = path.name
        self.rt.barrier()

    # ---- one step ----------------------------------------------------------------------
    def train_step(self, step: int) -> tuple[float, float]:
        tc, rt = self.cfg.train, self.rt
        batch = train_batch(self.data, seed=tc.seed, step=step, batch_size=tc.batch_size, seq_len=tc.seq_len)
        rows = batch[rt.rank * self.rank_batch:(rt.rank + 1) * self.rank_batch].to(rt.device, non_blocking=True)
        n_micro = self.rank_batch // self.micro_batch
        loss_sum = torch.zeros((), device=rt.device)
        aux_sums: dict[str, torch.Tensor] = {}
        for i in range(n_micro):
            micro = rows[i * self.micro_batch:(i + 1) * self.micro_batch]
            sync = i == n_micro - 1
            with self._no_sync(sync), rt.autocast():
                loss = cross_entropy(self.model(micro[:, :-1]), micro[:, 1:]) / n_micro
                # MoE aux terms (weighted) of this forward: backpropagated with the CE, logged apart.
                aux = {k: v / n_micro for k, v in self.raw_model.aux_losses().items()}
            (loss + sum(aux.values()) if aux else loss).backward()
            loss_sum += loss.detach()
            for k, v in aux.items():
                aux_sums[k] = aux_sums.get(k, 0) + v.detach().float()
        loss_value = float(rt.mean_across_ranks(loss_sum))
        self.last_aux = {k: float(rt.mean_across_ranks(v)) for k, v in aux_sums.items()}
        max_norm = tc.grad_clip if tc.grad_clip > 0 else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not (math.isfinite(loss_value) and math.isfinite(grad_norm)):
            raise NonFiniteLossError(step, loss_value, grad_norm, self.last_checkpoint)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.raw_model.after_optimizer_step()  # MoE: expert load of this step, aux-free bias update
        return loss_value, grad_norm

    def _no_sync(self, sync: bool) -> contextlib.AbstractContextManager:
        if sync or not hasattr(self.model, "no_sync"):
            return contextlib.nullcontext()
        return self.model.no_sync()

    def _preemption_agreed(self, requested: str | None) -> str | None:
        """Stop on every rank if any rank got the signal (ranks may receive it at different steps)."""
        if not self.rt.distributed:
            return requested
        flag = torch.tensor([1.0 if requested else 0.0], device=self.rt.device)
        dist.all_reduce(flag)
        return (requested or "SIGTERM") if flag.item() > 0 else None

    # ---- the loop ----------------------------------------------------------------------
    def fit(self) -> LoopResult:
        tc, rt = self.cfg.train, self.rt
        curve = CurveWriter(self.run.curve_file)
        resumed_from = self.maybe_resume(curve)
        if rt.is_main:
            curve.open()
        progress = ProgressBar(tc.steps, self.step, enabled=self.cfg.logging.progress and rt.is_main)
        loss = float("nan")
        last_val: float | None = None
        rate_ema: float | None = None
        self.model.train()
        watcher = PreemptionWatcher(tc.preempt_signals)
        try:
            watcher.__enter__()
            while self.step < tc.steps:
                step = self.step + 1
                multiplier = self.schedule.multiplier(step)
                set_lr(self.optimizer, multiplier)
                start = time.perf_counter()
                loss, grad_norm = self.train_step(step)
                elapsed = time.perf_counter() - start
                self.step = step
                tokens_per_s = self.tokens_per_step / max(elapsed, 1e-9)
                rate_ema = tokens_per_s if rate_ema is None else 0.9 * rate_ema + 0.1 * tokens_per_s
                row: dict[str, Any] = {
                    "step": step,
                    "tokens": step * self.tokens_per_step,
                    "flops": step * self.tokens_per_step * self.flops_per_token,
                    "lr": self.cfg.optim.lr * multiplier,
                    "loss": loss,
                    "grad_norm": grad_norm,
                    "tokens_per_s": tokens_per_s,
                }
                row.update(self.last_aux)  # e.g. aux_loss, z_loss: never part of `loss`
                if step in self.eval_at:
                    row["val_loss"] = last_val = evaluate(self.model, self.val, rt)
                    row.update(expert_load_columns(self.raw_model.expert_load()))
                if rt.is_main:
                    curve.append(row)
                    if self.on_row is not None:
                        self.on_row(row)
                progress.update(step, loss, rate_ema, row.get("val_loss"))
                saved = step % tc.checkpoint_every == 0 or step == tc.steps
                if saved:
                    self.save(curve)
                signal_name = self._preemption_agreed(watcher.requested)
                if signal_name is not None and step < tc.steps:
                    if not saved:
                        self.save(curve)
                    raise Preempted(step, signal_name)
        finally:
            watcher.__exit__()
            progress.close()
            curve.close()
        return LoopResult(final_step=self.step, final_loss=loss, final_val_loss=last_val, resumed_from=resumed_from)
