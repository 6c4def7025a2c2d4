"""Run identity: a short hash of the config fields that change a run's numbers.

A `run_dir` containing the token `{hash}` (e.g. `runs/sweep/{hash}`) is resolved with this hash,
so relaunching the same sweep maps every config to the same directory, where the run is skipped
(completed) or resumed (checkpoint). Fields that do not change the numbers (logging, where caches
live, thread count, compilation, checkpoint/eval cadence, launcher settings) are left out, so they
may differ between launches of the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

# Prefixes of flattened config keys that may differ between launches of one run.
NON_IDENTITY_FIELDS = ("logging.", "data.cache_dir", "train.num_threads", "train.compile", "train.eval_every",
                       "train.checkpoint_every", "train.keep_checkpoints", "train.device", "train.preempt_signals",
                       "train.requeue", "run_dir", "name")
HASH_TOKEN = "{hash}"


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def identity_fields(cfg: Any) -> dict[str, Any]:
    fields = flatten(dataclasses.asdict(cfg))
    # The vocab size is filled in from the tokenizer after the directory is chosen; it is a
    # function of the data config, which is hashed.
    fields.pop("model.vocab_size", None)
    return {k: v for k, v in sorted(fields.items()) if not k.startswith(NON_IDENTITY_FIELDS)}


def config_hash(cfg: Any, length: int = 12) -> str:
    payload = json.dumps(identity_fields(cfg), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:length]


def resolve_run_dir(cfg: Any) -> str:
    return cfg.run_dir.replace(HASH_TOKEN, config_hash(cfg)) if HASH_TOKEN in cfg.run_dir else cfg.run_dir
