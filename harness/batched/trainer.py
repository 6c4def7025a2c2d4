"""The batched loop: K runs of one shape (harness/batched/compat.py) stepped as one stacked model.

Each run keeps a `MemberTrainer`: an ordinary harness.loop.Trainer built from the run's own config
(its schedule, eval steps, compute budget, parameter counts, and an optimizer over its own module),
so the hooks of harness/hooks.py (curve, checkpoints, status, plot, wandb) see it as they see a
separate run and write the same files. Its module and optimizer are only a view: between
checkpoints the numbers live in the stack (`StackedModel` + `StackedAdamW`), and a checkpoint copies
the run's slice back first (`MemberTrainer.state_dict`), so the file is the one its separate run
would write, and either trainer can resume it.

Per step t, for each run k: LR multiplier from its schedule, its own batch `train_batch(seed_k, t)`,
one vmapped forward/backward over all runs (micro-batches as in the separate loop), per-run gradient
clipping, one stacked AdamW step. A run whose loss or gradient norm is not finite fails alone (its
status says so, as a separate run's would); the others go on without it.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from harness.batched.adamw import RunHyper, StackedAdamW
from harness.batched.stack import StackedModel
from harness.data.batches import train_batch
from harness.data.repetition import epochs
from harness.loop import Hook, Trainer, rng_state
from harness.optim.routing import set_lr
from harness.outcome import NonFiniteLossError
from harness.preemption import Preempted, PreemptionWatcher
from harness.runtime import Runtime


class MemberTrainer(Trainer):
    """One run of a batch, as the hooks see it. Build it right after the run's model (seeded by its
    own train.seed): the RNG state it records then is the one its separate run's checkpoints hold
    (training draws no random numbers: batches come from train_batch's own generator)."""

    batch: "BatchedTrainer | None" = None

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.rng = rng_state()

    def state_dict(self) -> dict[str, Any]:
        if self.batch is not None:
            self.batch.write_back(self)
        state = super().state_dict()
        state["rng"] = self.rng
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng = state["rng"]


class BatchedTrainer:
    """Trains `members` (MemberTrainers of one shape, all at the same step) together."""

    def __init__(self, members: Sequence[MemberTrainer], rt: Runtime):
        if len({m.step for m in members}) != 1:
            raise ValueError(f"members start at different steps {[m.step for m in members]}; "
                             "resume them from one common step")
        self.members, self.rt = list(members), rt
        first = self.members[0]
        self.step, self.total_steps = first.step, first.total_steps
        self.micro_batch, self.batch_size = first.micro_batch, first.cfg.train.batch_size
        hyper = self._hyper()
        # Parameters with equal per-run AdamW settings side by side: the optimizer's few segments.
        kinds = list(dict.fromkeys(tuple(hs) for hs in hyper.values()))
        order = sorted(hyper, key=lambda name: kinds.index(tuple(hyper[name])))
        self.stack = StackedModel([m.model.module for m in self.members], order)
        self.optimizer = StackedAdamW(self.stack.flat, hyper)
        self._read_optimizer_state()
        for m in self.members:
            m.batch = self

    # ---- between the stack and the members -------------------------------------------------
    def _hyper(self) -> dict[str, list[RunHyper]]:
        """Per parameter name, each run's AdamW settings, from the groups its own optimizer has."""
        out: dict[str, list[RunHyper]] = {name: [] for name, _ in self.members[0].model.module.named_parameters()}
        for m in self.members:
            name_of = {p: n for n, p in m.model.module.named_parameters()}
            for group in m.model.optimizer.param_groups:
                beta1, beta2 = group["betas"]
                for p in group["params"]:
                    out[name_of[p]].append(RunHyper(group["base_lr"], group["weight_decay"], beta1, beta2, group["eps"]))
        return out

    @torch.no_grad()
    def _read_optimizer_state(self) -> None:
        """Moments from the members' optimizers (filled when they resumed from a checkpoint)."""
        self.optimizer.step_count = self.step
        for k, m in enumerate(self.members):
            state = m.model.optimizer.state
            for name, p in m.model.module.named_parameters():
                if p in state and "exp_avg" in state[p]:
                    self.optimizer.exp_avg[name][k].copy_(state[p]["exp_avg"])
                    self.optimizer.exp_avg_sq[name][k].copy_(state[p]["exp_avg_sq"])

    @torch.no_grad()
    def write_back(self, member: MemberTrainer) -> None:
        """Bring `member`'s module and optimizer to where the stack is (as its separate run would be)."""
        k = self.members.index(member)
        module, optimizer = member.model.module, member.model.optimizer
        self.stack.write_back(k, module)
        if self.step == 0:
            return
        for name, p in module.named_parameters():
            optimizer.state[p] = {"step": torch.tensor(float(self.step), dtype=torch.float32),
                                  "exp_avg": self.optimizer.exp_avg[name][k].clone(),
                                  "exp_avg_sq": self.optimizer.exp_avg_sq[name][k].clone()}
        set_lr(optimizer, member.schedule.multiplier(self.step))

    def _drop(self, gone: Sequence[MemberTrainer]) -> None:
        rows = [k for k, m in enumerate(self.members) if m not in gone]
        self.stack.keep(rows)
        self.optimizer.keep(rows, self.stack.flat)
        self.members = [self.members[k] for k in rows]

    # ---- one step --------------------------------------------------------------------------
    def train_step(self, step: int) -> tuple[list[float], list[float], float]:
        """One optimizer step of every run; returns (losses, grad norms, seconds)."""
        rt, members = self.rt, self.members
        multipliers = [m.schedule.multiplier(step) for m in members]
        start = time.perf_counter()
        windows_KBW = torch.stack([
            train_batch(m.data, seed=m.cfg.train.seed, step=step, batch_size=self.batch_size,
                        seq_len=m.cfg.train.seq_len) for m in members])
        windows_KBW = rt.to_device(windows_KBW)
        n_micro = self.batch_size // self.micro_batch
        loss_sum_K = torch.zeros(len(members), device=rt.device)
        for i in range(n_micro):
            micro_KBW = windows_KBW[:, i * self.micro_batch:(i + 1) * self.micro_batch]
            with rt.autocast():
                losses_K = self.stack.losses(micro_KBW) / n_micro
            losses_K.sum().backward()
            loss_sum_K += losses_K.detach()
        clip = [m.cfg.train.grad_clip if m.cfg.train.grad_clip > 0 else math.inf for m in members]
        norms_K = self.stack.clip_grad_norms(clip)
        losses, norms = loss_sum_K.tolist(), norms_K.tolist()  # the step's one host sync
        self.optimizer.step(multipliers)
        self.optimizer.zero_grad()
        return losses, norms, time.perf_counter() - start

    @torch.no_grad()
    def evaluate(self) -> list[float]:
        """Each run's mean val cross-entropy per token over the fixed val windows (harness.loop.evaluate's sum)."""
        total_K = torch.zeros(len(self.members), dtype=torch.float64, device=self.rt.device)
        count = 0
        for batch in self.members[0].val:
            batch = self.rt.to_device(batch)
            with self.rt.autocast():
                losses_KN = self.stack.token_losses(batch)
            total_K += losses_KN.double().sum(dim=1)
            count += losses_KN.shape[1]
        return (total_K / count).tolist()

    def row(self, member: MemberTrainer, step: int, loss: float, grad_norm: float, seconds: float) -> dict[str, Any]:
        """The run's curve row: the columns and order of harness.loop.Trainer.train_step's."""
        compute = member.compute
        return {
            "step": step,
            **compute.columns(step),
            "unique_tokens": member.unique_tokens,
            "epochs": epochs(compute.tokens(step), member.unique_tokens),
            "lr": member.cfg.optim.lr * member.schedule.multiplier(step),
            "loss": loss,
            "grad_norm": grad_norm,
            # The run's own tokens over the batched step's time (each run advances this much).
            "tokens_per_s": compute.tokens_per_step / max(seconds, 1e-9),
        }

    # ---- the loop --------------------------------------------------------------------------
    def fit(self, hooks: dict[MemberTrainer, list[Hook]], checkpoints: dict[MemberTrainer, Any],
            preempt_signals: list[str]) -> dict[MemberTrainer, BaseException | None]:
        """Train every member to the last step; returns each member's error (None: completed).

        `hooks[m]` are m's hooks as a separate run has them (without preemption); `checkpoints[m]`
        its CheckpointHook, used when a preemption signal arrives: every run is checkpointed and
        ends preempted (relaunch to resume). An error outside one run's numbers (a failing hook,
        Ctrl-C) reaches every run's hooks and propagates."""
        outcome: dict[MemberTrainer, BaseException | None] = {}
        watcher = PreemptionWatcher(preempt_signals)
        everyone = list(self.members)
        try:
            for m in everyone:
                for hook in hooks[m]:
                    hook.on_start(m)
            watcher.install()
            while self.members and self.step < self.total_steps:
                step = self.step + 1
                stepped = list(self.members)
                losses, norms, seconds = self.train_step(step)
                self.step = step
                failed = [m for m, loss, norm in zip(stepped, losses, norms)
                          if not (math.isfinite(loss) and math.isfinite(norm))]
                for m, loss, norm in zip(stepped, losses, norms):
                    if m in failed:
                        err = NonFiniteLossError(step, loss, norm, m.last_checkpoint)
                        outcome[m] = err
                        for hook in hooks[m]:
                            hook.on_error(m, err)
                        for hook in hooks[m]:
                            hook.close()
                if failed:
                    self._drop(failed)
                rows = {m: self.row(m, step, loss, norm, seconds)
                        for m, loss, norm in zip(stepped, losses, norms) if m in self.members}
                if any(step in m.eval_at for m in self.members):
                    for m, val in zip(self.members, self.evaluate()):
                        if step in m.eval_at:
                            rows[m]["val_loss"] = m.last_val_loss = val
                for m in self.members:
                    m.step, m.last_loss = step, rows[m]["loss"]
                    for hook in hooks[m]:
                        hook.on_step(m, rows[m])
                if watcher.requested is not None and step < self.total_steps:
                    for m in self.members:
                        checkpoints[m].save(m)
                    raise Preempted(step, watcher.requested)
            for m in self.members:
                for hook in hooks[m]:
                    hook.on_end(m)
                outcome[m] = None
        except BaseException as err:
            for m in self.members:
                outcome[m] = err
                for hook in hooks[m]:
                    hook.on_error(m, err)
            raise
        finally:
            watcher.restore()
            for m in self.members:
                for hook in hooks[m]:
                    hook.close()
        return outcome
