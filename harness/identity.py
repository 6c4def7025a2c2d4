"""Run identity: which config fields make two launches the same run.

`config_hash` is a short hash of the fields that change a run's numbers. A `run_dir` containing the
token `{hash}` (e.g. `runs/sweep/{hash}`) is resolved with it, so relaunching the same sweep maps
every config to the same directory, where the run is skipped (completed) or resumed (checkpoint).
`check_same_run` refuses to resume or skip a run directory that holds a different run.

Fields that do not change the numbers (logging, where caches live, thread count, compilation,
checkpoint/eval cadence, launcher settings) are left out, so they may differ between launches of
the same run. The device and precision are in: `auto` is first resolved to what it means on this
machine (harness/device.py), so a CPU/fp32 run never continues as a CUDA/bf16 one.

A run started from another run's checkpoint (`train.init_from`) is identified by that checkpoint's
last three path components, `<parent dir>/checkpoints/step_XXXXXXXX.pt` (in an experiment the parent
dir is named by its hash), and `train.init_mode`: so a branch's hash is parent hash + branch step + its
own config, whichever directory the experiment lives in. An ordinary run (init_from null) hashes
without either field, as it did before they existed. `train.checkpoint_at` only adds checkpoints (and
eval points): not identity. Nor are `train.eval_tasks*` (downstream evals read the model; the hook
restores the RNG state around them, so a run's numbers are the same with or without them).
eval points): not identity. `train.init_optimizer` enters only when true, and the mixture fields
(`data.sources`, `data.weight_schedule`, `data.tokenizer_chars`) only when `data.sources` is given
(which then replaces the single-source fields): single-source runs keep their hashes. Likewise
`train.prune.*` only when `train.prune.enabled` (sparse pre-training, harness/prune.py).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import PurePath
from typing import Any

from harness.config import ConfigError
from harness.device import resolve_device, resolve_precision

# Prefixes of flattened config keys that may differ between launches of one run.
NON_IDENTITY_FIELDS = ("logging.", "data.cache_dir", "train.num_threads", "train.compile", "train.loss_chunk",
                       "train.fused_ce", "train.fetch_every", "train.eval_every",
                       "train.checkpoint_every", "train.keep_checkpoints", "train.preempt_signals",
                       "train.requeue", "train.checkpoint_at", "train.eval_tasks", "run_dir", "name")
HASH_TOKEN = "{hash}"
INIT_FIELDS = ("train.init_from", "train.init_mode", "train.init_optimizer")
# A single-source run (data.sources empty) hashes without these, as it did before mixtures existed.
MIXTURE_FIELDS = ("data.sources", "data.weight_schedule", "data.tokenizer_chars")


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _identity(flat: dict[str, Any]) -> dict[str, Any]:
    """The identity fields of a flattened config, with `auto` device/precision resolved."""
    fields = {k: v for k, v in flat.items() if not k.startswith(NON_IDENTITY_FIELDS)}
    if "train.device" in fields:
        fields["train.device"] = resolve_device(fields["train.device"])
        fields["train.precision"] = resolve_precision(fields.get("train.precision", "auto"), fields["train.device"])
    if fields.get("train.parallel") != "diloco":  # train.diloco.* only matter under DiLoCo: other runs
        fields = {k: v for k, v in fields.items() if not k.startswith("train.diloco.")}  # keep their hashes
    if not fields.get("train.prune.enabled"):  # dense runs keep the hashes they had before train.prune
        fields = {k: v for k, v in fields.items() if not k.startswith("train.prune.")}
    if fields.get("train.init_from") is None:
        for key in INIT_FIELDS:  # an ordinary run: its hash is what it was before these fields
            fields.pop(key, None)
    else:
        fields["train.init_from"] = location_free(fields["train.init_from"])
        if not fields.get("train.init_optimizer"):  # weights alone: the hash it had before the flag existed
            fields.pop("train.init_optimizer", None)
    if not fields.get("data.sources"):
        for key in MIXTURE_FIELDS:
            fields.pop(key, None)
    else:  # a mixture does not read the single-source fields
        for key in ("data.source", "data.max_chars", "data.hf_config", "data.split", "data.text_field"):
            fields.pop(key, None)
    return dict(sorted(fields.items()))


def location_free(checkpoint: str) -> str:
    """`.../<parent dir>/checkpoints/step_XXXXXXXX.pt` -> `<parent dir>/checkpoints/step_XXXXXXXX.pt`."""
    return "/".join(PurePath(checkpoint).parts[-3:])


def identity_fields(cfg: Any) -> dict[str, Any]:
    fields = _identity(flatten(dataclasses.asdict(cfg)))
    # The vocab size is filled in from the tokenizer after the directory is chosen; it is a
    # function of the data config, which is hashed.
    fields.pop("model.vocab_size", None)
    return fields


def config_hash(cfg: Any, length: int = 12) -> str:
    payload = json.dumps(identity_fields(cfg), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def resolve_run_dir(cfg: Any) -> str:
    """`cfg.run_dir` with `{hash}` replaced; idempotent (a resolved directory is returned as is)."""
    return cfg.run_dir.replace(HASH_TOKEN, config_hash(cfg)) if HASH_TOKEN in cfg.run_dir else cfg.run_dir


def changed_fields(saved: dict[str, Any], cfg: Any) -> dict[str, tuple[Any, Any]]:
    """Identity fields whose value differs between a saved (nested) config and `cfg`: {key: (saved, now)}."""
    before, now = _identity(flatten(saved)), _identity(flatten(dataclasses.asdict(cfg)))
    if now.get("model.vocab_size") is None:  # not filled in yet: taken from the tokenizer
        now["model.vocab_size"] = before.get("model.vocab_size")
    return {k: (before.get(k), now.get(k)) for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)}


def check_same_run(saved_yaml: str, cfg: Any) -> None:
    """Raise ConfigError unless `saved_yaml` (a run directory's config.yaml) describes the run `cfg` does."""
    from omegaconf import OmegaConf

    changed = changed_fields(OmegaConf.to_container(OmegaConf.create(saved_yaml)), cfg)  # type: ignore[arg-type]
    if changed:
        details = ", ".join(f"{k}: {before!r} -> {now!r}" for k, (before, now) in changed.items())
        raise ConfigError(f"run_dir: {cfg.run_dir} holds a run with a different config ({details}); "
                          "relaunch with the same config to resume, or choose a new run_dir")
