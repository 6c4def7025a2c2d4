"""Entry point: `python -m harness.train [hydra overrides]`.

Resolves and validates the config (a misspelled key or wrong type fails here, before any
compute), opens the run directory, skips a completed run, resumes from the newest checkpoint,
trains, and leaves `status.json` saying how it ended. Exit codes: 0 completed (or already
completed), 2 bad config, 3 non-finite loss, 75 preempted (checkpointed;
relaunch to resume), 1 any other failure.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf

from harness.config import ConfigError, RunConfig, register_configs, to_run_config
from harness.data.tokens import TokenData, prepare_tokens
from harness.identity import NON_IDENTITY_FIELDS, flatten, resolve_run_dir
from harness.loop import NonFiniteLossError, Trainer
from harness.models import build_model
from harness.parallel import wrap_model
from harness.preemption import Preempted, requeue_slurm_job
from harness.run import COMPLETED, FAILED, PREEMPTED, RUNNING, RunDir, RunLockedError
from harness.runtime import Runtime, setup_runtime, teardown_runtime
from harness.tracking.plot import plot_curve

EXIT_BAD_CONFIG, EXIT_NON_FINITE, EXIT_PREEMPTED = 2, 3, 75


def config_yaml(cfg: RunConfig) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def check_resume_compatible(saved_yaml: str, cfg: RunConfig) -> None:
    saved = flatten(OmegaConf.to_container(OmegaConf.create(saved_yaml)))  # type: ignore[arg-type]
    current = flatten(dataclasses.asdict(cfg))
    if current.get("model.vocab_size") is None:  # not filled in yet: taken from the tokenizer
        current["model.vocab_size"] = saved.get("model.vocab_size")
    changed = [k for k in sorted(set(saved) | set(current))
               if saved.get(k) != current.get(k) and not k.startswith(NON_IDENTITY_FIELDS)]
    if changed:
        details = ", ".join(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in changed)
        raise ConfigError(f"run_dir: {cfg.run_dir} holds a run with a different config ({details}); "
                          "relaunch with the same config to resume, or choose a new run_dir")


def save_tokenizer(data: TokenData, directory: Path) -> None:
    """Keep the run's tokenizer beside its checkpoints (export to transformers needs it)."""
    if directory.exists():
        return
    tmp = directory.with_name(f".{directory.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    data.tokenizer.save_pretrained(str(tmp))
    os.replace(tmp, directory)


def run_training(cfg: RunConfig) -> dict[str, Any]:
    """Train one run described by a validated RunConfig; returns the final status dict."""
    run = RunDir(Path(cfg.run_dir))
    if run.is_completed():
        if run.config_file.exists():
            check_resume_compatible(run.config_file.read_text(), cfg)  # never skip a different run
        print(f"[harness] {run.path} is already completed; skipping (delete status.json to rerun)")
        return run.read_status() or {}
    rt = setup_runtime(cfg.train)
    if rt.is_main:
        run.lock()
    try:
        # Rank 0 tokenizes (once, cached); the others wait and then reuse the cache.
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
        if rt.is_main:
            if run.config_file.exists():
                check_resume_compatible(run.config_file.read_text(), cfg)
            run.write_config(config_yaml(cfg))
            run.write_env(seed=cfg.train.seed, device=str(rt.device), world_size=rt.world_size,
                          precision=str(rt.autocast_dtype or torch.float32), data_manifest=data.manifest)
            run.write_status(RUNNING, step=0)
            save_tokenizer(data, run.path / "tokenizer")
        return _train(cfg, run, rt, data)
    finally:
        teardown_runtime(rt)
        run.unlock()


def _train(cfg: RunConfig, run: RunDir, rt: Runtime, data: TokenData) -> dict[str, Any]:
    torch.manual_seed(cfg.train.seed)  # model init is a function of the seed alone
    raw_model = build_model(cfg.model).to(rt.device)
    # Counted before wrapping: FSDP swaps the parameters for sharded ones.
    counts = {"params": raw_model.num_params(), "params_non_embedding": raw_model.num_params(include_embedding=False),
              "params_active": raw_model.num_active_params(),  # per token: < params for a MoE
              "flops_per_token": raw_model.flops_per_token(cfg.train.seq_len)}
    model = wrap_model(raw_model, cfg.train.parallel, rt, cfg.train.compile)
    mirror = None
    if cfg.logging.wandb and rt.is_main:
        from harness.tracking.wandb_mirror import WandbMirror

        mirror = WandbMirror(cfg.logging, run.path, cfg.name, dataclasses.asdict(cfg))
    trainer = Trainer(cfg, run, rt, data, raw_model, model, on_row=mirror.log if mirror else None)
    started = time.time()
    try:
        result = trainer.fit()
    except NonFiniteLossError as err:
        if rt.is_main:
            run.write_status(FAILED, reason=str(err), step=err.step, last_checkpoint=err.checkpoint, **counts)
        if mirror:
            mirror.finish(exit_code=EXIT_NON_FINITE)
        raise
    except Preempted as err:
        if rt.is_main:
            run.write_status(PREEMPTED, reason=str(err), step=err.step, last_checkpoint=trainer.last_checkpoint,
                             **counts)
        if mirror:
            mirror.finish(exit_code=EXIT_PREEMPTED)
        raise
    except BaseException as err:
        if rt.is_main:
            run.write_status(FAILED, reason=f"{type(err).__name__}: {err}", step=trainer.step,
                             last_checkpoint=trainer.last_checkpoint, **counts)
        if mirror:
            mirror.finish(exit_code=1)
        raise
    status = {
        "step": result.final_step,
        "tokens": result.final_step * trainer.tokens_per_step,
        "flops": result.final_step * trainer.tokens_per_step * trainer.flops_per_token,
        "final_loss": result.final_loss,
        "final_val_loss": result.final_val_loss,
        "resumed_from": result.resumed_from,
        "wall_s_this_launch": time.time() - started,
        **counts,
    }
    if rt.is_main:
        run.write_status(COMPLETED, **status)
        if cfg.logging.plot:
            plot_curve(run.curve_file, run.plot_file, title=f"{cfg.name}: {cfg.model.arch} "
                       f"{counts['params'] / 1e6:.2f}M params, {cfg.schedule.name}")
    if mirror:
        mirror.run.summary.update({f"final/{k}": v for k, v in status.items() if v is not None})
        mirror.finish()
    return {"state": COMPLETED, **status}


def _main(cfg: Any) -> None:
    try:
        run_cfg = to_run_config(cfg)
        run_cfg.run_dir = resolve_run_dir(run_cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    try:
        status = run_training(run_cfg)
    except ConfigError as err:
        print(f"config error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_CONFIG)
    except RunLockedError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except Preempted as err:
        print(f"[harness] preempted: {err}", file=sys.stderr)
        if run_cfg.train.requeue and int(os.environ.get("RANK", "0")) == 0:
            print(f"[harness] requeued: {requeue_slurm_job()}", file=sys.stderr)
        sys.exit(EXIT_PREEMPTED)
    except NonFiniteLossError as err:
        print(f"training stopped: {err}", file=sys.stderr)
        sys.exit(EXIT_NON_FINITE)
    if status.get("state") == COMPLETED:
        print(f"[harness] completed {run_cfg.run_dir}: step {status.get('step')}, "
              f"loss {status.get('final_loss'):.4f}, val {status.get('final_val_loss')}")


register_configs()


def main() -> None:
    import hydra

    conf_dir = str(Path(__file__).resolve().parent.parent / "conf")
    hydra.main(version_base="1.3", config_path=conf_dir, config_name="config")(_main)()


if __name__ == "__main__":
    main()
