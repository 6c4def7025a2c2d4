"""The curves of a `curve_prediction` study (harness/experiment/curve_prediction.py): their keys, how a
run's curve is read (val_loss after the warmup) and cut to a shorter horizon, and the LR of any
schedule of the study by the trainer's own code. Shared by the kind and its report (which must not
import each other: the kind imports its report lazily)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

SECTION = "curve_prediction"
OPTIMIZED = "optimized"               # the round-2 schedule's name in settings
OPT_FILE = "optimized_schedule.json"  # DIR/<this>: the optimization, computed once
TARGET = "val_loss"


@dataclass(frozen=True)
class CurveKey:
    """One curve of the study: a schedule at a horizon and peak LR (seed: the base seed + k x 1000)."""

    schedule: str
    horizon: int
    peak_lr: float
    seed_index: int = 0


def settings_key(settings: dict[str, Any]) -> CurveKey:
    return CurveKey(str(settings["schedule"]), int(settings["horizon"]), float(settings["peak_lr"]),
                    int(settings.get("seed_index", 0)))


def load_curve(path: Path, key: CurveKey, warmup_steps: int):
    """The run's val_loss curve (harness.fit.io.Curve), scored after the warmup."""
    from harness.fit.io import read_curve_jsonl

    curve = read_curve_jsonl(path, TARGET)
    curve.name = curve_label(key)
    curve.min_step = warmup_steps + 1
    return curve


def truncated(curve, horizon: int):
    """The curve's first `horizon` steps (a shorter constant run is the longest one's beginning)."""
    keep = curve.step <= horizon
    return replace(curve, step=curve.step[keep], lr=curve.lr[keep], loss=curve.loss[keep])


def curve_label(key: CurveKey) -> str:
    seed = f"_s{key.seed_index}" if key.seed_index else ""
    return f"{key.schedule}_T{key.horizon}_lr{key.peak_lr:g}{seed}"


@lru_cache(maxsize=256)
def _schedule_of(base: tuple[str, ...], schedule: tuple[str, ...], warmup: int, horizon: int) -> tuple[Any, int, int]:
    """(schedule config, batch size, tokens per step) of a run of `schedule`, composed as the trainer does."""
    from harness.experiment.compose import compose_run

    cfg = compose_run([*base, *schedule, f"schedule.warmup_steps={warmup}", f"train.steps={horizon}"],
                      f"{SECTION}.schedules")
    return cfg.schedule, cfg.train.batch_size, cfg.train.batch_size * cfg.train.seq_len


def run_lrs(base: tuple[str, ...], schedule: tuple[str, ...], warmup: int, horizon: int, peak_lr: float) -> list[float]:
    """The LR at every step of a run of `schedule`, by the trainer's own schedule code."""
    from harness.schedules import build_schedule

    cfg, batch_size, tokens_per_step = _schedule_of(base, schedule, warmup, horizon)
    run = build_schedule(cfg, total_steps=horizon, peak_lr=peak_lr, batch_size=batch_size,
                         tokens_per_step=tokens_per_step)
    return [run.lr(t) for t in range(1, horizon + 1)]


def seed_mean(curves: list, name: str):
    """The mean curve of one run's seeds (the same schedule, steps and LR; loss averaged per step) and the
    seeds' spread: the mean over seeds of mean |seed - mean| / mean over the mean curve's scored points."""
    import numpy as np

    first = curves[0]
    for other in curves[1:]:
        if not (np.array_equal(other.step, first.step) and np.allclose(other.lr, first.lr, rtol=1e-12, atol=0)):
            raise ValueError(f"{name}: the seeds' curves have other steps or LRs (they must differ in train.seed only)")
    loss = np.mean([c.loss for c in curves], axis=0)
    mean = replace(first, name=name, loss=loss)
    idx = mean.eval_index()
    spread = float(np.nanmean([np.nanmean(np.abs(c.loss[idx] - loss[idx]) / loss[idx]) for c in curves]))
    return mean, spread
