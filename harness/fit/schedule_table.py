"""Curve CSVs that give the schedule's parameters instead of the LR (the Tissue et al. example's format).

Some published curves carry no `lr` column: each row names the schedule and its parameters, e.g.

    lr_schedule,step,loss,max_lr,min_lr,total_steps,warmup_steps
    cosine,1000,3.6696,2e-4,0,20000,500
    constant,1000,3.6714,2e-4,2e-4,20000,500

The LR of every step is then re-created by the trainer's own schedule code (harness/schedules.py), so a
file read this way and a run trained by the harness with the same schedule give the same LR sums.
Columns (aliases in brackets):

* `lr_schedule` [`schedule`]: a registered schedule name (cosine, constant, wsd, linear, power, ...).
* `max_lr` [`peak_lr`], `total_steps` [`steps`]: the peak LR and the run's length in optimizer steps.
* `warmup_steps` (optional, 0 if absent): a linear warmup from 0, counted as it was run. The Tissue
  paper's own script counts the warmup steps at the peak LR instead; its law's `warmup="peak"` option
  does that, this reader does not.
* `min_lr` (absolute) [`min_lr_ratio`]: the floor, for schedules that have one; ignored by schedules
  without a floor (constant), where such files often repeat the peak or a config default.
* any other field of the schedule (`decay_fraction`, `cooldown`, ...), as a column.

Rows are grouped by these values: one file may hold several runs (the Tissue example holds a cosine
and a constant run), each becoming one curve named `<file stem>_<schedule>` (plus the peak LR and the
length when two runs share a schedule name): rows whose parameters differ belong to different runs.
Steps must be increasing within a run and at most its `total_steps`. The loss is read where given.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from harness.fit.io import Curve, InputError, check_positive, check_steps, curve_name, numeric_column

NAME_COLUMNS = ("lr_schedule", "schedule")
PEAK_COLUMNS = ("max_lr", "peak_lr")
STEPS_COLUMNS = ("total_steps", "steps")
FLOOR_COLUMNS = ("min_lr", "min_lr_ratio")


def has_schedule_columns(frame: pd.DataFrame) -> bool:
    """True when the table names a schedule, its peak LR and its length on every row (no `lr` needed)."""
    cols = set(frame.columns)
    return all(any(c in cols for c in group) for group in (NAME_COLUMNS, PEAK_COLUMNS, STEPS_COLUMNS))


def _pick(frame: pd.DataFrame, aliases: tuple[str, ...], path: Path) -> str | None:
    present = [c for c in aliases if c in frame.columns]
    if len(present) > 1:
        raise InputError(f"{path}: both columns {present} given. Fix: keep one of them.")
    return present[0] if present else None


def _number(path: Path, value: str, col: str, at: str) -> float:
    try:
        out = float(value)
    except ValueError:
        raise InputError(f"{path}, {at}: column '{col}' has a non-numeric value {value!r}. "
                         f"Fix: write a number in '{col}'.") from None
    if not np.isfinite(out) or out < 0:
        raise InputError(f"{path}, {at}: column '{col}' must be finite and >= 0, got {value!r}. "
                         "Fix: correct or remove that row.")
    return out


def _fields_of(name: str) -> set[str]:
    from harness.schedules import SCHEDULES

    return {f.name for f in dataclasses.fields(SCHEDULES.get(name))} - {"name"}


def _schedule_fields(name: str, path: Path) -> set[str]:
    from harness.schedules import SCHEDULES

    if name not in SCHEDULES.names():
        raise InputError(f"{path}: unknown schedule {name!r}. Fix: use one of {sorted(SCHEDULES.names())}.")
    return _fields_of(name)


def _run_spec(path: Path, row: pd.Series, cols: dict[str, str | None], extra: list[str],
              at: str) -> tuple[str, float, int, dict]:
    """(schedule name, peak LR, total steps, schedule fields) of one row."""
    name = str(row[cols["name"]]).strip()
    fields = _schedule_fields(name, path)
    peak = _number(path, row[cols["peak"]], cols["peak"], at)
    if not peak > 0:
        raise InputError(f"{path}, {at}: '{cols['peak']}' must be > 0. Fix: give the run's peak LR.")
    total = _number(path, row[cols["steps"]], cols["steps"], at)
    if total != round(total) or total < 1:
        raise InputError(f"{path}, {at}: '{cols['steps']}' must be a whole number of steps >= 1, got "
                         f"{row[cols['steps']]!r}. Fix: give the run's length in optimizer steps.")
    schedule: dict = {"warmup_steps": 0}
    if cols["warmup"] is not None and str(row[cols["warmup"]]).strip() != "":
        schedule["warmup_steps"] = int(_number(path, row[cols["warmup"]], cols["warmup"], at))
    floor_col = cols["floor"]
    if floor_col is not None and "min_lr_ratio" in fields and str(row[floor_col]).strip() != "":
        floor = _number(path, row[floor_col], floor_col, at)
        schedule["min_lr_ratio"] = floor / peak if floor_col == "min_lr" else floor
    for col in extra:
        text = str(row[col]).strip()
        if col in fields and text != "":
            try:
                schedule[col] = float(text) if "." in text or "e" in text.lower() else int(text)
            except ValueError:
                schedule[col] = text  # a string field (cooldown: linear | sqrt | ...)
    return name, peak, int(total), schedule


def _group_label(spec: tuple[str, float, int, dict]) -> tuple:
    name, peak, total, schedule = spec
    return name, peak, total, tuple(sorted(schedule.items()))


def curves_from_schedule_table(path: Path, frame: pd.DataFrame, target: str,
                               line_of: Callable[[int], str]) -> list[Curve]:
    """One curve per run in the table (module docstring), the LR of steps 1..total_steps re-created by
    harness.schedules; a row at step 0 (the state before the first update) is kept with LR 0."""
    from harness.checks import ConfigError
    from harness.fit.curve_predict import lr_from_schedule

    cols = {"name": _pick(frame, NAME_COLUMNS, path), "peak": _pick(frame, PEAK_COLUMNS, path),
            "steps": _pick(frame, STEPS_COLUMNS, path), "floor": _pick(frame, FLOOR_COLUMNS, path),
            "warmup": "warmup_steps" if "warmup_steps" in frame.columns else None}
    if "step" not in frame.columns:
        raise InputError(f"{path}: no 'step' column (columns: {list(frame.columns)}). "
                         "Fix: give the optimizer step of each logged loss in 'step'.")
    # Other columns count only if some schedule has a field of that name (a wall-time or run-id column must
    # not split one run into many).
    from harness.schedules import SCHEDULES

    any_field = set().union(*(_fields_of(n) for n in SCHEDULES.names()))
    extra = [c for c in frame.columns if c in any_field and c not in set(cols.values())]
    runs: dict[tuple, list[int]] = {}
    specs: dict[tuple, tuple] = {}
    # Parse each distinct spelling of the run parameters once (a long log repeats them on every row), then
    # merge spellings of the same values ("2e-4" and "0.0002").
    keys = [c for c in (*cols.values(), *extra) if c is not None]
    for _, rows in frame.reset_index(drop=True).groupby(keys, sort=False).groups.items():
        spec = _run_spec(path, frame.iloc[int(rows[0])], cols, extra, line_of(int(rows[0])))
        key = _group_label(spec)
        runs.setdefault(key, []).extend(int(i) for i in rows)
        specs[key] = spec
    runs = {k: sorted(v) for k, v in runs.items()}
    curves = []
    stem = curve_name(path)
    names = [specs[k][0] for k in runs]
    for key, rows in runs.items():
        name, peak, total, schedule = specs[key]
        label = stem if len(runs) == 1 else f"{stem}_{name}"
        if names.count(name) > 1:
            label = f"{label}_{peak:g}_{total}"
        # The run's own rows, checked by the readers' column checks (errors name the file's row).
        sub = frame.iloc[rows].reset_index(drop=True)
        row_of = lambda j, rows=rows: line_of(rows[j])  # noqa: E731
        step = numeric_column(path, sub, "step", allow_empty=False, line_of=row_of)
        check_steps(path, step, row_of, gaps_ok=True)  # logged every N steps: the schedule gives every LR
        if step[0] < 0 or step[-1] > total:
            j = 0 if step[0] < 0 else step.size - 1
            raise InputError(f"{path}, {row_of(j)}: step {int(step[j])} is outside the run's steps 0..{total}. "
                             f"Fix: correct '{cols['steps']}' or the step.")
        try:
            lr = lr_from_schedule({"name": name, **schedule}, total, peak)
        except (ConfigError, ValueError, TypeError) as e:
            raise InputError(f"{path}, {line_of(rows[0])}: the {name} schedule of this row: {e}. "
                             "Fix: use the schedule's fields as in conf/schedule/*.yaml.") from None
        start = 0 if step[0] == 0 else 1
        steps = np.arange(start, total + 1)
        lr = np.concatenate([[0.0] * (1 - start), lr])
        loss = np.full(steps.size, np.nan)
        if target in sub.columns:
            values = numeric_column(path, sub, target, allow_empty=True, line_of=row_of)
            check_positive(path, target, values, row_of)
            loss[(step - start).astype(int)] = values
        curves.append(Curve(name=label, path=str(path), step=steps.astype(np.int64), lr=lr, loss=loss,
                            lr_schedule={"name": name, "peak_lr": peak, "steps": total, **schedule}))
    return curves
