"""Starting a run from another run's checkpoint: `train.init_from` (harness/config.py).

    init_mode=resume   a branch: the parent's model, optimizer, RNG and step k; this run's schedule
                       from step k+1 to train.steps; its curve.jsonl starts with the parent's rows
                       1..k, so the branch's curve is a full curve (e.g. a cooldown branched off a
                       constant-LR run at k, which equals an independent run with the same schedule)
    init_mode=weights  the parent's model weights only: a fresh run (step 0, new optimizer, no rows
                       copied) initialised from a trained model, with its own schedule and data
      + train.init_optimizer=true: also the parent's optimizer state (Adam moments, per-parameter step
                       counts), under this run's hyperparameters (LR, weight decay, betas: this run's
                       param groups are kept) and schedule, from step 0: continued pre-training

`train.init_from` may name the checkpoint file, `<parent run dir>@<step>` or `<parent run dir>` (its
newest checkpoint); harness/config.py rewrites the last two to the file. status.json and env.json
carry `parent_curve` (the parent's curve.jsonl) next to init_from / init_mode / branch_step.

The parent is used only while the run has no checkpoint of its own: a preempted branch resumes
from its own newest checkpoint, and a completed one is skipped, as every run is.

`open_parent` does every check that needs the parent before anything is written to the run
directory: a missing file, a checkpoint whose step is not the one its name says, a parent curve
that lacks rows up to the branch step, each a ConfigError naming train.init_from (exit 2).
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkpoint import checkpoint_step, load_checkpoint
from harness.config import ConfigError, RunConfig, TrainConfig
from harness.schedules import build_schedule
from harness.tracking.curve import read_curve

RESUME, WEIGHTS = "resume", "weights"
# Fields a branch may change relative to its parent without a warning: its schedule and length,
# and where it starts from.
BRANCH_MAY_CHANGE = ("schedule.", "train.steps", "train.init_from", "train.init_mode", "train.init_optimizer",
                     "data.weight_schedule")


@dataclass(frozen=True)
class ParentCheckpoint:
    """The checkpoint a run starts from, loaded (weights_only) and checked."""

    path: Path
    mode: str  # resume | weights
    step: int  # the step the parent had trained when it saved this checkpoint
    state: dict[str, Any] = field(repr=False)
    rows: list[dict[str, Any]] = field(repr=False)  # the parent's curve rows 1..step (resume); [] (weights)

    @property
    def run_dir(self) -> Path:
        return self.path.parent.parent  # <parent run dir>/checkpoints/step_XXXXXXXX.pt


def origin(tc: TrainConfig) -> dict[str, Any]:
    """Provenance recorded in env.json and status.json (and read by harness/collect.py): where the
    run started from and the step of that checkpoint. Empty for an ordinary run."""
    if tc.init_from is None:
        return {}
    extra = {"init_optimizer": True} if tc.init_optimizer else {}
    return {"init_from": tc.init_from, "init_mode": tc.init_mode, "branch_step": checkpoint_step(tc.init_from),
            **extra, "parent_curve": str(Path(tc.init_from).parent.parent / "curve.jsonl")}


def open_parent(cfg: RunConfig) -> ParentCheckpoint:
    """Load and check `train.init_from`; raises ConfigError naming it when it cannot be used."""
    tc = cfg.train
    assert tc.init_from is not None, "open_parent needs train.init_from"
    path = Path(tc.init_from)
    if not path.is_file():
        raise ConfigError(f"train.init_from: {path} does not exist; train the parent run first")
    state = load_checkpoint(path)
    step = int(state["step"])
    # TrainConfig.validate() checked the step in the name against train.steps; this is the content.
    if step != checkpoint_step(path):
        raise ConfigError(f"train.init_from: {path} holds step {step}, not the step its name says; "
                          "give the checkpoint file as the parent run wrote it")
    parent = ParentCheckpoint(path, tc.init_mode, step, state, parent_rows(path, step) if tc.init_mode == RESUME else [])
    warn_if_unlike_parent(cfg, parent)
    return parent


def parent_rows(checkpoint: Path, step: int) -> list[dict[str, Any]]:
    """The parent's curve rows 1..step: a branch's curve starts with them."""
    curve = checkpoint.parent.parent / "curve.jsonl"
    rows = [row for row in read_curve(curve) if row["step"] <= step]
    if [row["step"] for row in rows] != list(range(1, step + 1)):
        raise ConfigError(f"train.init_from: the parent's curve {curve} lacks rows for steps 1..{step} "
                          f"(it has {len(rows)} up to there); a branch continues its parent's curve, so "
                          "branch from a checkpoint of a run whose curve.jsonl is intact")
    return rows


def warn_if_unlike_parent(cfg: RunConfig, parent: ParentCheckpoint) -> None:
    """A branch's curve is one run's curve only if, up to the branch step, its own config would have
    trained as the parent did. Say on stderr when it would not: identity fields other than the
    schedule and length (model, data, optimizer, seed, ...) that differ from the parent's config.yaml,
    or an LR schedule that differs from the parent's rows before the branch (e.g. a warmup given as a
    fraction of a different train.steps)."""
    if parent.mode != RESUME:
        return
    problems = [*_changed_fields(cfg, parent), *_lr_mismatch(cfg, parent)]
    if problems:
        print(f"[harness] warning: this branch would not have trained as its parent {parent.run_dir} did up to "
              f"step {parent.step} ({'; '.join(problems)}); its curve is then not one run's curve", file=sys.stderr)


def _changed_fields(cfg: RunConfig, parent: ParentCheckpoint) -> list[str]:
    from omegaconf import OmegaConf

    from harness.identity import changed_fields

    config_file = parent.run_dir / "config.yaml"
    if not config_file.is_file():
        return []
    saved = OmegaConf.to_container(OmegaConf.load(config_file))
    changed = changed_fields(saved, cfg)  # type: ignore[arg-type]
    return [f"{k}: {before!r} -> {now!r}" for k, (before, now) in changed.items() if not k.startswith(BRANCH_MAY_CHANGE)]


def _lr_mismatch(cfg: RunConfig, parent: ParentCheckpoint) -> list[str]:
    """The first step <= the branch step where this run's schedule gives another LR than the parent's row."""
    tc = cfg.train
    schedule = build_schedule(cfg.schedule, total_steps=tc.steps, peak_lr=cfg.optim.lr, batch_size=tc.batch_size,
                              tokens_per_step=tc.batch_size * tc.seq_len)
    for row in parent.rows:
        lr = cfg.optim.lr * schedule.multiplier(row["step"])
        if not math.isclose(lr, float(row["lr"]), rel_tol=1e-9, abs_tol=1e-15):
            return [f"schedule: lr {lr:.6g} at step {row['step']}, where the parent trained with {float(row['lr']):.6g}"]
    return []


def tokenizer_ids(manifest: dict[str, Any]) -> set[str]:
    """The tokenizer fingerprints a data manifest records (one source, or each source of a mixture)."""
    parts = manifest.get("mixture", [manifest])
    return {p["tokenizer"]["id"] for p in parts if isinstance(p.get("tokenizer"), dict) and "id" in p["tokenizer"]}


def check_parent_tokenizer(parent: ParentCheckpoint, data_manifest: dict[str, Any]) -> None:
    """Refuse a parent trained with another tokenizer: its embeddings would be read with other token
    ids, silently, whenever the vocab sizes agree. Parents whose env.json lacks the manifest pass."""
    import json

    env_file = parent.run_dir / "env.json"
    if not env_file.is_file():
        return
    theirs = tokenizer_ids(json.loads(env_file.read_text()).get("data_manifest") or {})
    mine = tokenizer_ids(data_manifest)
    if theirs and mine and theirs != mine:
        raise ConfigError(f"train.init_from: the parent {parent.run_dir} was trained with tokenizer {sorted(theirs)}, "
                          f"this run tokenizes with {sorted(mine)}; its token ids would mean other text. Use the "
                          "parent's data.tokenizer / data.vocab_size (for a mixture: the same data.sources, names, "
                          "sources and weights; change the mix with data.weight_schedule, which the tokenizer ignores)")


def load_parent_weights(model: Any, parent: ParentCheckpoint) -> None:
    """init_mode=weights: the parent's weights into the model as built (before any parallel wrapper).
    Shapes are compared first, so a mismatch names the tensors that differ."""
    own = model.state_dict()
    theirs = parent.state.get("model", {})
    differ = [f"{k}: {tuple(theirs[k].shape)} in the parent, {tuple(v.shape)} here" for k, v in own.items()
              if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)]
    if differ:
        raise ConfigError(f"train.init_from: {parent.path} has other tensor shapes than this run's model "
                          f"({'; '.join(differ[:3])}{'; ...' if len(differ) > 3 else ''}); the model config "
                          "(and data.vocab_size / the tokenizer) must match the parent's")
    try:
        model.load_state_dict(theirs)
    except (RuntimeError, KeyError) as err:
        raise ConfigError(f"train.init_from: {parent.path} does not fit this run's model ({err}); "
                          "the model config must match the parent's") from None


def load_parent_optimizer(trainer: Any, parent: ParentCheckpoint) -> None:
    """init_optimizer=true: the parent's optimizer state (moments, step counts) under this run's param
    groups (its LR, weight decay, ...), after the model's weights were loaded."""
    optimizer = trainer.model.optimizer
    mine = optimizer.state_dict()
    theirs = parent.state.get("optimizer")
    if theirs is None or len(theirs.get("param_groups", [])) != len(mine["param_groups"]):
        raise ConfigError(f"train.init_optimizer: {parent.path} holds no optimizer state of this run's kind "
                          f"(optim.name={trainer.cfg.optim.name}); start with init_optimizer=false or give a "
                          "parent trained with the same optimizer")
    try:
        optimizer.load_state_dict({"state": theirs["state"], "param_groups": mine["param_groups"]})
    except (RuntimeError, KeyError, ValueError) as err:
        raise ConfigError(f"train.init_optimizer: {parent.path}'s optimizer state does not fit this run's "
                          f"optimizer ({err}); the optimizer and model must match the parent's") from None


def continue_parent(trainer: Any, parent: ParentCheckpoint) -> None:
    """init_mode=resume: the parent's full training state (model, optimizer, RNG, step, last losses)."""
    try:
        trainer.load_state_dict(parent.state)
    except (RuntimeError, KeyError, ValueError) as err:
        raise ConfigError(f"train.init_from: {parent.path} does not fit this run's model or optimizer "
                          f"({err}); a branch keeps its parent's model and optimizer") from None
