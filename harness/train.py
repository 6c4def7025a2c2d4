"""Entry point: `python -m harness.train [hydra overrides]`.

Resolves and validates the config (a misspelled key or wrong type fails here, before any
compute), opens the run directory, skips a completed run, resumes from the newest checkpoint (or,
with none yet, starts from `train.init_from`, another run's checkpoint: harness/branch.py),
trains, and leaves `status.json` saying how it ended. Exit codes (harness/outcome.py): 0 completed
(or already completed), 2 bad config, 3 non-finite loss, 75 preempted (checkpointed; relaunch to
resume), 1 any other failure.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from harness.branch import (RESUME, WEIGHTS, ParentCheckpoint, check_parent_tokenizer, continue_parent,
                            load_parent_optimizer, load_parent_weights, open_parent, origin)
from harness.checkpoint import latest_checkpoint
from harness.config import ConfigError, RunConfig, register_configs, to_run_config
from harness.data.repetition import repetition_warning
from harness.data.tokens import TokenData, prepare_tokens
from harness.device import resolve_hardware
from harness.diloco import DilocoTrainer
from harness.hooks import CheckpointHook, CurveHook, EvalTasksHook, PlotHook, PreemptionHook, StatusHook
from harness.identity import check_same_run, resolve_run_dir
from harness.loop import Hook, Trainer
from harness.models import build_model
from harness.outcome import NonFiniteLossError, outcome_of
from harness.preemption import Preempted, requeue_slurm_job
from harness.run import COMPLETED, RUNNING, RunDir, RunLockedError
from harness.runtime import Runtime, setup_runtime, teardown_runtime
from harness.tracking.curve import CurveWriter
from harness.tracking.progress import ProgressBar
from harness.tracking.wandb_mirror import WandbMirror


def run_training(cfg: RunConfig) -> dict[str, Any]:
    """Train one run described by a validated RunConfig; returns the final status dict."""
    resolve_hardware(cfg.train)  # `auto` -> this machine's device/precision: part of the run's identity
    run = RunDir(Path(cfg.run_dir))
    if run.config_file.exists():
        check_same_run(run.config_file.read_text(), cfg)  # never resume, or skip, a different run
    if run.is_completed():
        print(f"[harness] {run.path} is already completed; skipping (delete status.json to rerun)")
        return run.read_status() or {}
    # The parent is checked (and loaded) before anything is written here; only a run with no
    # checkpoint of its own starts from it.
    parent = open_parent(cfg) if cfg.train.init_from and latest_checkpoint(run.checkpoint_dir) is None else None
    rt = setup_runtime(cfg.train)
    if rt.is_main:
        run.lock()
    trainer = None
    try:
        data = tokens_rank0_first(cfg, rt)
        if parent is not None:
            check_parent_tokenizer(parent, data.manifest)  # before this run's directory is written
        if rt.is_main:
            warn_if_repeating(cfg, data)
            start_run_dir(run, cfg, rt, data)
        trainer = starting_trainer(cfg, rt, data, run, parent)
        parent = None  # its state is in the trainer now: do not hold a second copy while training
        trainer.fit(hooks(cfg, run, rt))
        return {"state": COMPLETED, **trainer.summary()}
    finally:
        # Free the model before the process group goes: DDP's reducer holds the group, and a gloo
        # group destroyed with the reducer (at function exit, holding the GIL) can deadlock against
        # its own worker thread (seen: rank 1 hung after a completed run, torch 2.13 CPU).
        trainer = None
        gc.collect()
        teardown_runtime(rt)
        run.unlock()


def starting_trainer(cfg: RunConfig, rt: Runtime, data: TokenData, run: RunDir,
                     parent: ParentCheckpoint | None) -> Trainer:
    """The trainer at the point this launch starts from: the run's newest checkpoint; else the
    parent's checkpoint (a branch: its state, and its curve rows copied into this run's curve; or
    its weights alone); else step 0."""
    own = latest_checkpoint(run.checkpoint_dir)
    if own is not None:
        parent = None
    torch.manual_seed(cfg.train.seed)  # model init is a function of the seed alone
    model = build_model(cfg.model).to(rt.device)
    if parent is not None and parent.mode == WEIGHTS:
        load_parent_weights(model, parent)  # before the parallel wrapper shards the parameters
    trainer = new_trainer(cfg, rt, data, model)
    if parent is not None and parent.mode == WEIGHTS and cfg.train.init_optimizer:
        load_parent_optimizer(trainer, parent)
    if own is not None:
        trainer.resume(own)
    elif parent is not None and parent.mode == RESUME:
        continue_parent(trainer, parent)
        if rt.is_main:
            CurveWriter(run.curve_file).replace(parent.rows)
    return trainer


def new_trainer(cfg: RunConfig, rt: Runtime, data: TokenData, model: torch.nn.Module) -> Trainer:
    """DiLoCo's trainer (replicas and outer steps, harness/diloco.py) or the plain one (none / ddp /
    fsdp: there the parallel mode lives in the ParallelModel alone)."""
    return (DilocoTrainer if cfg.train.parallel == "diloco" else Trainer)(cfg, rt, data, model)


def hooks(cfg: RunConfig, run: RunDir, rt: Runtime) -> list[Hook]:
    """What happens around each step (harness/hooks.py), in order: record the step, checkpoint it,
    report at the end (wandb after status: it mirrors status.json), and last, stop if preempted (so
    every other hook has seen the step it stops after). Rank 0 writes the files; checkpoints and
    preemption take every rank (they gather and agree across ranks)."""
    rank0, tc = rt.is_main, cfg.train
    curve = CurveHook(run.curve_file) if rank0 else None
    checkpoints = CheckpointHook(run.checkpoint_dir, tc.checkpoint_every, tc.keep_checkpoints, rt, curve,
                                 pinned=tc.checkpoint_at)
    ordered = [
        curve,
        ProgressBar() if rank0 and cfg.logging.progress else None,
        checkpoints,
        EvalTasksHook(run, tc.eval_tasks, tc.eval_tasks_at, tc.eval_tasks_limit, tc.eval_tasks_max_samples)
        if rank0 and tc.eval_tasks else None,
        StatusHook(run, origin(tc)) if rank0 else None,
        PlotHook(run, cfg) if rank0 and cfg.logging.plot else None,
        WandbMirror(cfg.logging, run.path, cfg.name, dataclasses.asdict(cfg)) if rank0 and cfg.logging.wandb else None,
        PreemptionHook(tc.preempt_signals, checkpoints, rt),
    ]
    return [hook for hook in ordered if hook is not None]


def tokens_rank0_first(cfg: RunConfig, rt: Runtime) -> TokenData:
    """Rank 0 tokenizes (once, cached); the others wait and then reuse the cache. Fills in model.vocab_size."""
    if rt.is_main:
        data = prepare_tokens(cfg.data)
    rt.barrier()
    if not rt.is_main:
        data = prepare_tokens(cfg.data)
    if cfg.model.vocab_size is None:
        cfg.model.vocab_size = data.vocab_size
    elif cfg.model.vocab_size < data.vocab_size:
        raise ConfigError(f"model.vocab_size: {cfg.model.vocab_size} is smaller than the tokenizer's "
                          f"{data.vocab_size}; set it to null or at least {data.vocab_size}")
    return data


def warn_if_repeating(cfg: RunConfig, data: TokenData) -> None:
    """Say on stderr, before any step, when the planned tokens exceed the training split's unique tokens."""
    planned = cfg.train.steps * cfg.train.batch_size * cfg.train.seq_len
    message = repetition_warning(planned, data.unique_tokens)
    if message:
        print(f"[harness] {message}", file=sys.stderr)


def start_run_dir(run: RunDir, cfg: RunConfig, rt: Runtime, data: TokenData) -> None:
    """Write the resolved config, the environment, `running` and the tokenizer (export needs it).
    A run started from another run's checkpoint says so in env.json and status.json (branch.origin)."""
    run.write_config(config_yaml(cfg))
    run.write_env(seed=cfg.train.seed, device=str(rt.device), world_size=rt.world_size,
                  precision=str(rt.autocast_dtype or torch.float32), data_manifest=data.manifest, **origin(cfg.train))
    run.write_status(RUNNING, step=0, unique_tokens=data.unique_tokens, **origin(cfg.train))
    tokenizer_dir = run.path / "tokenizer"
    if not tokenizer_dir.exists():
        tmp = tokenizer_dir.with_name(f".{tokenizer_dir.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        data.tokenizer.save_pretrained(str(tmp))
        os.replace(tmp, tokenizer_dir)


def config_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def train_main(cfg: Any) -> None:
    """Train the run a composed Hydra config describes, and exit with its code (harness/outcome.py).
    The Hydra entry point, and what each job of an experiment calls (harness/experiment/job.py)."""
    try:
        run_cfg = to_run_config(cfg)
        run_cfg.run_dir = resolve_run_dir(run_cfg)  # `{hash}` -> the run's identity hash
        status = run_training(run_cfg)
    except ConfigError as err:
        _exit(f"config error: {err}", err)
    except RunLockedError as err:
        _exit(f"error: {err}", err)
    except NonFiniteLossError as err:
        _exit(f"training stopped: {err}", err)
    except Preempted as err:
        print(f"[harness] preempted: {err}", file=sys.stderr)
        if run_cfg.train.requeue and int(os.environ.get("RANK", "0")) == 0:
            print(f"[harness] requeued: {requeue_slurm_job()}", file=sys.stderr)
        _exit(None, err)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"[harness] completed {run_cfg.run_dir}: step {status.get('step')}, "
              f"loss {status.get('final_loss'):.4f}, val {status.get('final_val_loss')}")


def _exit(message: str | None, err: BaseException) -> None:
    if message:
        print(message, file=sys.stderr)
    sys.exit(outcome_of(err).exit_code)


register_configs()


def main() -> None:
    import hydra

    conf_dir = str(Path(__file__).resolve().parent.parent / "conf")
    hydra.main(version_base="1.3", config_path=conf_dir, config_name="config")(train_main)()


if __name__ == "__main__":
    main()
