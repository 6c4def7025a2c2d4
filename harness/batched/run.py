"""Train a batch of runs (one shape, harness/batched/compat.py) into their own run directories.

Each run's directory is the one `python -m harness.train` would use for its config (`{hash}`
resolved to the run's identity hash) and ends up with the same files: config.yaml, env.json,
tokenizer/, curve.jsonl, checkpoints/, status.json, curve.png. Completed runs are skipped, the
others locked; a run with checkpoints resumes. Since the runs step together, the batch resumes
from the newest step that every unfinished run has a checkpoint of (a kill between two runs'
checkpoints of one step leaves some a step behind; keep_checkpoints >= 2 keeps the older one).
"""

from __future__ import annotations

import gc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from harness.batched.compat import check_batchable
from harness.batched.trainer import BatchedTrainer, MemberTrainer
from harness.checkpoint import checkpoint_path, list_checkpoints
from harness.config import ConfigError, RunConfig
from harness.device import resolve_hardware
from harness.hooks import CheckpointHook, PreemptionHook
from harness.identity import check_same_run, resolve_run_dir
from harness.models import build_model
from harness.outcome import outcome_of
from harness.preemption import Preempted
from harness.run import RunDir
from harness.runtime import setup_runtime, teardown_runtime
from harness.tracking.progress import ProgressBar
from harness.train import hooks as run_hooks
from harness.train import start_run_dir, tokens_rank0_first, warn_if_repeating


@dataclass
class BatchResult:
    """How each run of the batch ended: `statuses[i]` is run i's status.json (or None), `exit_code`
    the worst of the runs' codes (harness/outcome.py)."""

    statuses: list[dict[str, Any] | None]
    exit_code: int


def common_start(runs: Sequence[RunDir]) -> int:
    """The step the batch resumes from: the smallest of the runs' newest checkpoint steps (0: none)."""
    newest = [list_checkpoints(r.checkpoint_dir)[-1][0] if list_checkpoints(r.checkpoint_dir) else 0 for r in runs]
    return min(newest)


def run_batched(cfgs: Sequence[RunConfig]) -> BatchResult:
    """Train `cfgs` (validated RunConfigs of one shape) as one batch; see the module docstring."""
    cfgs = list(cfgs)
    for cfg in cfgs:
        resolve_hardware(cfg.train)
        cfg.run_dir = resolve_run_dir(cfg)
    if len({cfg.run_dir for cfg in cfgs}) != len(cfgs):
        raise ConfigError("run_dir: two runs of the batch resolve to the same directory; give each its own "
                          "(a run_dir with {hash} does that)")
    try:
        check_batchable(cfgs)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    runs = [RunDir(Path(cfg.run_dir)) for cfg in cfgs]
    for cfg, run in zip(cfgs, runs):
        if run.config_file.exists():
            check_same_run(run.config_file.read_text(), cfg)
    live = [i for i, run in enumerate(runs) if not run.is_completed()]
    for i in set(range(len(cfgs))) - set(live):
        print(f"[harness] {runs[i].path} is already completed; skipping (delete status.json to rerun)")
    if live:
        _train(cfgs, runs, live)
    statuses = [run.read_status() for run in runs]
    codes = [_exit_code(s) for s in statuses]
    return BatchResult(statuses, max(codes, key=lambda c: (c != 0, c == 75, c)))


def _exit_code(status: dict[str, Any] | None) -> int:
    if status is None:
        return 1
    return {"completed": 0, "preempted": 75}.get(status.get("state"), 3 if "non-finite" in str(status.get("reason")) else 1)


def _train(cfgs: list[RunConfig], runs: list[RunDir], live: list[int]) -> None:
    rt = setup_runtime(cfgs[live[0]].train)
    locked: list[RunDir] = []
    batch = None
    try:
        for i in live:
            runs[i].lock()
            locked.append(runs[i])
        data = tokens_rank0_first(cfgs[live[0]], rt)
        for i in live:
            cfgs[i].model.vocab_size = cfgs[live[0]].model.vocab_size
            warn_if_repeating(cfgs[i], data)
            start_run_dir(runs[i], cfgs[i], rt, data)
        start = common_start([runs[i] for i in live])
        members = []
        for i in live:
            torch.manual_seed(cfgs[i].train.seed)  # model init: a function of the run's seed, as in harness.train
            member = MemberTrainer(cfgs[i], rt, data, build_model(cfgs[i].model).to(rt.device))
            if start:
                path = checkpoint_path(runs[i].checkpoint_dir, start)
                if not path.exists():
                    raise ConfigError(f"train.keep_checkpoints: {runs[i].path} has no checkpoint of step {start}, "
                                      "the step the rest of its batch resumes from; resume it on its own "
                                      "(python -m harness.train) or keep >= 2 checkpoints")
                member.resume(path)
            members.append(member)
        hooks, checkpoints = {}, {}
        for i, member in zip(live, members):
            own = [h for h in run_hooks(cfgs[i], runs[i], rt) if not isinstance(h, (PreemptionHook, ProgressBar))]
            hooks[member] = own
            checkpoints[member] = next(h for h in own if isinstance(h, CheckpointHook))
        batch = BatchedTrainer(members, rt)
        print(f"[harness] training {len(members)} runs as one batch from step {start}: "
              + ", ".join(str(runs[i].path) for i in live), flush=True)
        try:
            outcome = batch.fit(hooks, checkpoints, cfgs[live[0]].train.preempt_signals)
        except Preempted as err:  # every run is checkpointed and says `preempted`: relaunch to resume
            print(f"[harness] preempted: {err}", flush=True)
            return
        for member, failure in outcome.items():
            if failure is not None:
                print(f"[harness] {member.cfg.run_dir}: {outcome_of(failure).reason}", flush=True)
    finally:
        batch = None
        gc.collect()
        teardown_runtime(rt)
        for run in locked:
            run.unlock()
