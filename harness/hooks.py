"""The hooks that turn the bare loop (harness/loop.py) into a run: curve file, checkpoints,
preemption, status.json and the plot. The progress bar and the wandb mirror are hooks too
(harness/tracking/). train.py lists them in the order they run at each point:

    curve -> progress -> checkpoint (fsyncs the curve first) -> status -> plot -> wandb (mirrors
    status.json at the end) -> preemption (last: may checkpoint, then stops the run)
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Collection

import torch
import torch.distributed as dist

from harness.checkpoint import checkpoint_path, save_checkpoint
from harness.config import RunConfig
from harness.loop import Hook, Trainer
from harness.outcome import outcome_of
from harness.preemption import Preempted, PreemptionWatcher
from harness.run import COMPLETED, RunDir
from harness.runtime import Runtime
from harness.tracking.curve import CurveWriter
from harness.tracking.plot import plot_curve


class CurveHook(Hook):
    """Appends each step's row to curve.jsonl (rank 0). On start the file is cut back to the step the
    run resumes from, so replayed steps are written once; a fresh start drops rows of a launch that
    died before its first checkpoint."""

    def __init__(self, path: Path):
        self.writer = CurveWriter(path)

    def on_start(self, trainer: Trainer) -> None:
        self.writer.truncate_after(trainer.step)
        self.writer.open()

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        self.writer.append(row)

    def sync(self) -> None:
        self.writer.sync()

    def close(self) -> None:
        self.writer.close()


class CheckpointHook(Hook):
    """Saves the trainer's state every `every` steps, at each `pinned` step and at the last step (all
    ranks gather, rank 0 writes), keeping the newest `keep` besides the pinned ones, which are kept
    forever (train.checkpoint_at: e.g. where cooldown branches start). The curve is fsynced first, so
    a checkpoint never gets ahead of the rows it covers."""

    def __init__(self, directory: Path, every: int, keep: int, rt: Runtime, curve: CurveHook | None,
                 pinned: Collection[int] = ()):
        self.directory, self.every, self.keep, self.rt, self.curve = directory, every, keep, rt, curve
        self.pinned = frozenset(pinned)
        self.saved_step: int | None = None

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        step = trainer.step
        if step % self.every == 0 or step == trainer.total_steps or step in self.pinned:
            self.save(trainer)

    def save(self, trainer: Trainer) -> None:
        """Checkpoint the current step, unless it already is."""
        if self.saved_step == trainer.step:
            return
        state = trainer.state_dict()  # collective under FSDP: every rank takes part
        if self.rt.is_main:
            if self.curve is not None:
                self.curve.sync()
            save_checkpoint(self.directory, trainer.step, state, self.keep, pinned=self.pinned)
        self.rt.barrier()
        self.saved_step = trainer.step
        trainer.last_checkpoint = checkpoint_path(self.directory, trainer.step).name


class PreemptionHook(Hook):
    """While the loop runs, the preemption signals only set a flag; after the step in which one
    arrived (on any rank), checkpoint and raise Preempted (exit 75, relaunch to resume). With
    train.fetch_every > 1 that is the next fetched step (at most fetch_every steps later)."""

    def __init__(self, signal_names: list[str], checkpoints: CheckpointHook, rt: Runtime):
        self.watcher, self.checkpoints, self.rt = PreemptionWatcher(signal_names), checkpoints, rt

    def on_start(self, trainer: Trainer) -> None:
        self.watcher.install()

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if not trainer.at_head:  # an older step of a deferred fetch: the state to save is the newest one's
            return
        signal_name = self._agreed(self.watcher.requested)
        if signal_name is not None and trainer.step < trainer.total_steps:
            self.checkpoints.save(trainer)
            raise Preempted(trainer.step, signal_name)

    def _agreed(self, requested: str | None) -> str | None:
        """Stop on every rank if any rank got the signal (ranks may receive it at different steps)."""
        if not self.rt.distributed:
            return requested
        flag = torch.tensor([1.0 if requested else 0.0], device=self.rt.device)
        dist.all_reduce(flag)
        return (requested or "SIGTERM") if flag.item() > 0 else None

    def close(self) -> None:
        self.watcher.restore()


class StatusHook(Hook):
    """Writes status.json when the run ends: completed (with final losses, tokens, FLOPs, parameter
    counts), or failed / preempted with the reason, the step and the last checkpoint (rank 0). `origin`
    (harness/branch.py: init_from, init_mode, branch_step; empty for an ordinary run) goes in both."""

    def __init__(self, run: RunDir, origin: dict[str, Any] | None = None):
        self.run = run
        self.origin = origin or {}
        self.started = time.time()
        self.resumed_from: int | None = None

    def on_start(self, trainer: Trainer) -> None:
        self.started = time.time()
        self.resumed_from = trainer.step or None

    def on_end(self, trainer: Trainer) -> None:
        self.run.write_status(COMPLETED, **trainer.summary(), resumed_from=self.resumed_from,
                              wall_s_this_launch=time.time() - self.started, **trainer.counts, **self.origin)

    def on_error(self, trainer: Trainer, err: BaseException) -> None:
        outcome = outcome_of(err)
        # A non-finite loss names the step that produced it (not completed); others stop after trainer.step.
        self.run.write_status(outcome.state, reason=outcome.reason, step=getattr(err, "step", trainer.step),
                              last_checkpoint=trainer.last_checkpoint, unique_tokens=trainer.unique_tokens,
                              **trainer.counts, **self.origin)


class PlotHook(Hook):
    """Renders curve.png from the curve file when the run completes (rank 0)."""

    def __init__(self, run: RunDir, cfg: RunConfig):
        self.run, self.cfg = run, cfg

    def on_end(self, trainer: Trainer) -> None:
        params = trainer.counts["params"] / 1e6
        title = f"{self.cfg.name}: {self.cfg.model.arch} {params:.2f}M params, {self.cfg.schedule.name}"
        plot_curve(self.run.curve_file, self.run.plot_file, title=title)


class EvalTasksHook(Hook):
    """train.eval_tasks: downstream evals (harness/eval) of the model at the steps `at` (empty: the
    last step; train.eval_tasks_limit / eval_tasks_max_samples: items per task, PassUntil cap), rows appended to RUN_DIR/evals.jsonl (rank 0; a relaunch skips the (step, task)
    pairs already there). The global RNG state is saved and restored around each eval (lm-eval
    seeds torch's, Python's and numpy's), and sampling uses its own generator, so the run's numbers do not change. With
    train.fetch_every > 1 a step is evaluated when it is the newest computed step (as checkpoints)."""

    def __init__(self, run: RunDir, tasks: list[str], at: Collection[int], limit: int | None = None,
                 max_samples: int = 256):
        from harness.eval.runner import EvalSettings

        self.run, self.task_names, self.at = run, list(tasks), frozenset(at)
        self.settings = EvalSettings(limit=limit, max_samples=max_samples)
        self.tasks: dict[str, Any] | None = None

    def on_start(self, trainer: Trainer) -> None:
        from harness.eval.runner import load_tasks

        self.tasks = load_tasks(self.task_names, self.settings)  # lm-eval missing or a bad name: fail before training

    def on_step(self, trainer: Trainer, row: dict[str, Any]) -> None:
        wanted = trainer.step in self.at if self.at else trainer.step == trainer.total_steps
        if wanted and trainer.at_head:
            self.evaluate(trainer)

    def evaluate(self, trainer: Trainer) -> None:
        import numpy as np
        from transformers import AutoTokenizer

        from harness.eval.runner import evaluate_model
        from harness.loop import rng_state, set_rng_state

        model = trainer.model.module
        saved, saved_np, was_training = rng_state(), np.random.get_state(), model.training
        try:
            model.eval()
            tokenizer = AutoTokenizer.from_pretrained(str(self.run.path / "tokenizer"))
            columns = trainer.compute.columns(trainer.step)
            evaluate_model(model, tokenizer, self.run.path, trainer.step, columns["tokens"], columns["flops"],
                           self.tasks, self.settings)
        finally:
            model.train(was_training)
            set_rng_state(saved)
            np.random.set_state(saved_np)
