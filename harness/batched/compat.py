"""Which runs can share one stacked model: the shape key, and grouping runs into batches.

Runs batch together when everything that fixes the tensors' shapes, the data they see and the
forward computation is equal: the model config apart from `init_std` (each run is initialised by
its own seed and scale, as its separate run would be), the data config, and the train fields that
size a step (seq_len, batch_size, micro_batch_size, steps, eval_sequences) or select kernels
(device, precision, deterministic). What may differ per run: optim.lr, weight_decay, betas, eps,
no_decay_roles, the whole schedule, train.seed, grad_clip, model.init_std, and the non-identity
fields (cadence of checkpoints and evals, logging).

Runs that cannot batch train as separate runs; `why_not_batchable` says why (printed by the
entry points), e.g. an optimizer other than AdamW (only a stacked AdamW exists).
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Sequence

from harness.config import RunConfig

# The stacked optimizer is AdamW (harness/batched/adamw.py); others run separately.
BATCHABLE_OPTIMIZERS = ("adamw",)
# Dense archs only: the MoE keeps per-forward routing state on the module, which vmap cannot carry.
BATCHABLE_ARCHS = ("llama", "gpt2")
# Train fields that must be equal across a batch (they size a step or pick kernels).
SHARED_TRAIN_FIELDS = ("steps", "seq_len", "batch_size", "micro_batch_size", "eval_sequences", "device",
                       "precision", "deterministic", "num_threads")


def why_not_batchable(cfg: RunConfig) -> str | None:
    """None when `cfg` can train inside a batch; else the reason it trains on its own."""
    if cfg.optim.name not in BATCHABLE_OPTIMIZERS:
        return (f"optim.name={cfg.optim.name}: only {', '.join(BATCHABLE_OPTIMIZERS)} has a stacked "
                "optimizer; this run trains separately")
    if getattr(cfg.optim, "amsgrad", False):
        return "optim.amsgrad: the stacked AdamW has no amsgrad; this run trains separately"
    if cfg.train.eval_tasks:  # the downstream-eval hook (harness/hooks.py) runs in the single-run loop only
        return "train.eval_tasks: downstream evals run in the single-run trainer; this run trains separately"
    if cfg.data.sources:  # the stacked trainer reads one val set; a mixture has one per source
        return "data.sources: a data mixture's per-source val sets run in the single-run trainer; this run trains separately"
    if cfg.model.arch not in BATCHABLE_ARCHS:
        return f"model.arch={cfg.model.arch}: only {', '.join(BATCHABLE_ARCHS)} batch; this run trains separately"
    if cfg.train.parallel != "none":
        return f"train.parallel={cfg.train.parallel}: batched runs are single-process; this run trains separately"
    if cfg.train.prune.enabled:  # the masks (harness/prune.py) live in the single-run loop only
        return "train.prune: pruned runs train in the single-run trainer; this run trains separately"
    if cfg.train.init_from is not None:
        return "train.init_from: a branch starts from its parent's checkpoint; it trains separately"
    return None


def shape_key(cfg: RunConfig) -> str:
    """Equal for two runs exactly when they may share one stacked model (see the module docstring)."""
    model = dataclasses.asdict(cfg.model)
    model.pop("init_std")
    train = {name: getattr(cfg.train, name) for name in SHARED_TRAIN_FIELDS}
    data = {k: v for k, v in dataclasses.asdict(cfg.data).items() if k != "cache_dir"}
    return json.dumps({"model": model, "data": data, "train": train}, sort_keys=True, default=str)


@dataclasses.dataclass(frozen=True)
class Grouping:
    """Indices of the given runs: `batches` train stacked (each of 2..K runs), `separate` alone
    (with the reason for each)."""

    batches: list[list[int]]
    separate: list[tuple[int, str]]


def group_runs(cfgs: Sequence[RunConfig], batch_runs: int) -> Grouping:
    """Runs with equal shape keys in batches of at most `batch_runs`, in the given order; a run that
    cannot batch, or is alone with its key, is separate."""
    if batch_runs < 1:
        raise ValueError(f"batch_runs must be >= 1, got {batch_runs}")
    by_key: dict[str, list[int]] = {}
    separate: list[tuple[int, str]] = []
    for i, cfg in enumerate(cfgs):
        reason = why_not_batchable(cfg) if batch_runs > 1 else "batch_runs=1"
        if reason:
            separate.append((i, reason))
        else:
            by_key.setdefault(shape_key(cfg), []).append(i)
    batches: list[list[int]] = []
    for members in by_key.values():
        for start in range(0, len(members), batch_runs):
            chunk = members[start:start + batch_runs]
            if len(chunk) > 1:
                batches.append(chunk)
            else:
                separate.append((chunk[0], "no other run of the same shape is left to batch it with"))
    return Grouping(batches=batches, separate=sorted(separate))


def check_batchable(cfgs: Sequence[RunConfig]) -> None:
    """Raise ValueError unless every run can train in one batch (the batched trainer's precondition)."""
    for i, cfg in enumerate(cfgs):
        reason = why_not_batchable(cfg)
        if reason:
            raise ValueError(f"run {i} ({cfg.run_dir}): {reason}")
    keys = [shape_key(cfg) for cfg in cfgs]
    for i, key in enumerate(keys[1:], start=1):
        if key != keys[0]:
            a, b = json.loads(keys[0]), json.loads(key)
            diff = sorted(f"{sec}.{name}" for sec in a for name in a[sec] if a[sec][name] != b[sec].get(name))
            raise ValueError(f"run {i} ({cfgs[i].run_dir}) differs in shape from run 0 in {', '.join(diff)}; "
                             "such runs cannot share a stacked model (train them separately)")
