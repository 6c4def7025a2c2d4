"""Readers for the fitting stage's inputs, with errors that name the file, the row and the fix.

Curve files (one per training run):
* CSV with columns `step,lr,<target>` (target "loss" by default): one row per optimizer step from
  the first step, consecutive, lr on every row, the loss empty where it was not observed. The
  first row must be step 0 or 1: a file that starts later (logging from step 500) is refused,
  because the LR of the missing steps enters every LR sum (S1, S2, LD) of the curve laws.
  Opt-in (`fill_lr="linear"`, the CLI's `--fill-lr linear`): a file logged every N steps and/or
  from a later step is read with the LR filled in (`fill_lr_linear`): linear between logged rows,
  a linear ramp from 0 at step 0 to the first row; the loss is unobserved (NaN) on filled steps,
  and `Curve.lr_fill` counts them so the outputs can say so.
* CSV that names its schedule's parameters per row instead of the lr (`lr_schedule,step,loss,max_lr,
  min_lr,total_steps,warmup_steps`, the Tissue et al. example's format): the LR of every step is
  re-created by the trainer's schedule code; one file may hold several runs (harness/fit/schedule_table.py;
  harness/fit/curve_files.py reads a list of files of any of these kinds).
* The harness's own `curve.jsonl` (harness/tracking/curve.py): one JSON object per step with keys
  step, lr, loss, val_loss (eval steps only), tokens, flops, ...; `target` picks "loss" or
  "val_loss". Read by the harness's one reader (harness/tracking/curve.py): a torn last line
  (killed writer) is skipped with a note; any other bad line is an error naming file and line.

Scaling files: CSV with the law's required columns (e.g. `N,D`) and, for fitting, the target
column (e.g. `loss`); prediction targets may omit it or leave cells empty. A table written by
`python -m harness.collect` (it has a `status` column) is fitted on its completed runs only; the
rows of other runs, or without the target, are skipped with a note on stderr. Inputs must be finite
and > 0 (sizes, token counts, LRs, losses all are; laws take their logs).

Every problem raises `InputError`; the CLI validates all inputs before it creates the out dir.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from harness.tracking.curve import CurveFileError, read_curve_lines


class InputError(ValueError):
    """Bad user input; the message says which file, which row, and how to fix it."""


# How a sparsely logged curve's missing LRs may be filled (`fill_lr`); None refuses such a file.
FILL_LR_METHODS = ("linear",)
# The fix the refusals of a sparse file offer besides writing every step.
_FILL_LR_FIX = ("or pass --fill-lr linear to interpolate the LR between logged rows (a linear warmup from 0 "
                "before the first row)")


@dataclass(frozen=True)
class LRFill:
    """How many steps of a curve got a filled-in LR (and an unobserved loss), and how."""

    between_rows: int  # steps between two logged rows: LR interpolated linearly between them
    before_first_row: int  # steps 0 .. first logged step - 1: LR ramped linearly from 0 at step 0
    method: str = "linear"

    @property
    def total(self) -> int:
        return self.between_rows + self.before_first_row

    def to_json(self) -> dict[str, int | str]:
        return {"between_rows": self.between_rows, "before_first_row": self.before_first_row,
                "method": self.method}


def fill_lr_linear(step: np.ndarray, lr: np.ndarray,
                   loss: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, LRFill]:
    """A sparsely logged curve as consecutive steps: (step, lr, loss, counts).

    Between two logged rows the LR is interpolated linearly: exact on linear warmup and linear
    decay, within 2e-4 relative of a 22k-step cosine logged every 128 steps (the MPL files), but
    a step decay between two rows is smeared over their gap. A first row after step 1 gets the
    steps 0 .. first - 1 prepended with a linear ramp from LR 0 at step 0 to the first row's LR:
    right when that row is at the end of (or inside) a linear warmup from 0, wrong otherwise.
    Logged rows keep their LR and loss; filled steps have loss NaN (unobserved). `step` must be
    strictly increasing integers and `lr` finite and >= 0 (ValueError otherwise; the readers check
    first, naming the row).
    """
    step, lr, loss = (np.asarray(a, dtype=float) for a in (step, lr, loss))
    if step.ndim != 1 or step.size == 0 or lr.shape != step.shape or loss.shape != step.shape:
        raise ValueError(f"step, lr and loss must be 1-D arrays of one non-zero length, got shapes "
                         f"{step.shape}, {lr.shape}, {loss.shape}")
    if not np.all(np.isfinite(step)) or np.any(step != np.round(step)):
        raise ValueError("steps must be integers")
    if np.any(np.diff(step) <= 0):
        raise ValueError("steps must be strictly increasing (no duplicated or out-of-order rows)")
    if not np.all(np.isfinite(lr)) or np.any(lr < 0):
        raise ValueError("every logged row needs a finite lr >= 0")
    logged = step.astype(np.int64)
    first = int(logged[0])
    ramp = first > 1  # a first row at step 0 or 1 needs nothing before it (as without the fill)
    start = 0 if ramp else first
    out_step = np.arange(start, int(logged[-1]) + 1, dtype=np.int64)
    xp, fp = (np.r_[0, logged], np.r_[0.0, lr]) if ramp else (logged, lr)
    out_lr = np.interp(out_step, xp, fp)
    out_lr[logged - start] = lr  # logged rows bit-exact, whatever interp's rounding
    out_loss = np.full(out_step.size, np.nan)
    out_loss[logged - start] = loss
    before = first - start
    return out_step, out_lr, out_loss, LRFill(between_rows=out_step.size - logged.size - before,
                                              before_first_row=before)


@dataclass
class Curve:
    """One training run: the LR at every optimizer step and the loss where observed (NaN elsewhere)."""

    name: str
    path: str
    step: np.ndarray  # (T,) int, consecutive
    lr: np.ndarray  # (T,) float, >= 0
    loss: np.ndarray  # (T,) float, NaN where not observed
    # Laws evaluate at most this many rows (evenly spaced over the observed ones, last included):
    # a curve law's cost grows with rows x LR changes, and every-step train loss adds no signal.
    max_points: int = 1000
    # Rows before this step are not evaluated (e.g. to leave out warmup, which laws model poorly).
    min_step: int = 1
    # Set when the file was logged sparsely and read with a fill (`fill_lr`): how many steps' LR was filled in.
    lr_fill: LRFill | None = None
    # Set when the file gave the schedule's parameters instead of the LR (schedule_table.py): the schedule
    # the LR was re-created from (name, peak_lr, steps and its fields).
    lr_schedule: dict | None = None

    @property
    def observed(self) -> np.ndarray:
        return np.isfinite(self.loss) & (self.step >= self.min_step)

    @property
    def n_observed(self) -> int:
        return int(self.observed.sum())

    def eval_index(self) -> np.ndarray:
        """Rows a law evaluates: the observed rows, or (no loss at all) all rows; thinned evenly
        to at most `max_points`, always keeping the last."""
        idx = np.flatnonzero(self.observed)
        if idx.size == 0:
            idx = np.flatnonzero(self.step >= self.min_step)
        if idx.size <= self.max_points:
            return idx
        pick = np.unique(np.linspace(0, idx.size - 1, self.max_points).round().astype(int))
        return idx[pick]


def _fail(path: Path | str, at: str | None, problem: str, fix: str) -> InputError:
    """`at` locates the problem in the file: "row 3" (CSV; the header is row 1) or "line 3" (JSON lines)."""
    where = f"{path}" if at is None else f"{path}, {at}"
    return InputError(f"{where}: {problem}. Fix: {fix}.")


def numeric_column(path: Path, frame: pd.DataFrame, col: str, *, allow_empty: bool, line_of) -> np.ndarray:
    """Column as float; raises on text, and on empty cells unless allowed. `line_of(i)` locates row i."""
    raw = frame[col]
    text = raw.astype("string").str.strip()
    empty = raw.isna().to_numpy() | (text == "").fillna(True).to_numpy()
    values = pd.to_numeric(raw.where(~empty), errors="coerce").to_numpy(dtype=float)
    bad_text = ~empty & np.isnan(values)
    if bad_text.any():
        i = int(np.flatnonzero(bad_text)[0])
        raise _fail(path, line_of(i), f"column '{col}' has a non-numeric value {raw.iloc[i]!r}",
                    f"write a number in '{col}'" + (" or leave it empty" if allow_empty else ""))
    if not allow_empty and empty.any():
        i = int(np.flatnonzero(empty)[0])
        raise _fail(path, line_of(i), f"column '{col}' is empty", f"give '{col}' on every row")
    return values


def check_positive(path: Path, col: str, values: np.ndarray, line_of, *, zero_ok: bool = False) -> None:
    present = ~np.isnan(values)
    bad = present & (~np.isfinite(values) | ((values < 0) if zero_ok else (values <= 0)))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        need = ">= 0" if zero_ok else "> 0"
        raise _fail(path, line_of(i), f"column '{col}' must be finite and {need}, got {float(values[i])!r}",
                    "correct or remove that row")


def check_steps(path: Path, step: np.ndarray, line_of, *, gaps_ok: bool = False) -> None:
    """Integer, strictly increasing steps; consecutive unless `gaps_ok` (an LR fill follows)."""
    if np.any(step != np.round(step)):
        i = int(np.flatnonzero(step != np.round(step))[0])
        raise _fail(path, line_of(i), f"step {float(step[i])!r} is not an integer", "steps are optimizer step counts")
    diff = np.diff(step)
    checks = [("duplicated", diff == 0, "keep one row per optimizer step"),
              ("out of order", diff < 0, "sort the rows by step")]
    if not gaps_ok:
        checks.append(("missing steps", diff > 1,
                       f"give one row per optimizer step (lr on every row, loss may be empty), {_FILL_LR_FIX}"))
    for kind, mask, fix in checks:
        if mask.any():
            i = int(np.flatnonzero(mask)[0]) + 1
            detail = f"step {int(step[i])} after step {int(step[i - 1])}"
            raise _fail(path, line_of(i), f"{kind}: {detail}", fix)


def _check_starts_at_one(path: Path, step: np.ndarray, line_of) -> None:
    """Curve laws sum the LR over every step from the first (S1, S2, LD): a file that starts later
    (logging from step 500) would shift every sum by the missing area, so it is refused. Step 0
    (the state before the first update, as in the MPL data) is allowed."""
    first = int(step[0])
    if first > 1:
        raise _fail(path, line_of(0), f"the curve starts at step {first}, so the LR of steps 1..{first - 1} is "
                    "unknown and every LR sum (S1, S2, LD) would be shifted",
                    f"add the rows of steps 1..{first - 1} with their lr and an empty loss (the loss may be "
                    f"missing on any row, the lr may not), {_FILL_LR_FIX}")


# --fill-lr materializes every step; runs longer than this are not LM pretraining runs (or the column is tokens).
MAX_FILLED_STEPS = 50_000_000


def _check_fill_method(fill_lr: str | None) -> None:
    if fill_lr is not None and fill_lr not in FILL_LR_METHODS:
        raise InputError(f"fill_lr {fill_lr!r} is not a known LR fill. Fix: use one of {list(FILL_LR_METHODS)} "
                         "or None (refuse files with missing steps)")


def _curve_from_columns(path: Path, step: np.ndarray, lr: np.ndarray, loss: np.ndarray, line_of,
                        target: str, fill_lr: str | None = None) -> Curve:
    """Validate the logged rows (every check names its row), then fill the missing steps when asked."""
    _check_fill_method(fill_lr)
    if step.size == 0:
        raise _fail(path, None, "no rows", "give one row per optimizer step")
    check_steps(path, step, line_of, gaps_ok=fill_lr is not None)
    if fill_lr is None:
        _check_starts_at_one(path, step, line_of)
    check_positive(path, "lr", lr, line_of, zero_ok=True)
    check_positive(path, target, loss, line_of)
    fill = None
    if fill_lr is not None:
        if step[-1] > MAX_FILLED_STEPS:  # a typo (1e12) would otherwise allocate that many rows
            raise _fail(path, line_of(step.size - 1), f"step {int(step[-1])} is beyond the {MAX_FILLED_STEPS:,} "
                        "steps --fill-lr fills in", "check the step column (optimizer steps, not tokens)")
        step, lr, loss, fill = fill_lr_linear(step, lr, loss)
        fill = fill if fill.total else None  # a consecutive file from step 0/1 reads as without the option
    return Curve(name=curve_name(path), path=str(path), step=step.astype(np.int64), lr=lr, loss=loss,
                 lr_fill=fill)


def curve_name(path: Path | str) -> str:
    """Name used for outputs: the file stem, or the run directory's name for `curve.jsonl`."""
    p = Path(path)
    return p.parent.name if p.name == "curve.jsonl" and p.parent.name else p.stem


def read_curve_csv(path: Path | str, target: str = "loss", *, fill_lr: str | None = None) -> Curve:
    path = Path(path)
    return curve_from_csv_frame(path, read_csv_frame(path), target, fill_lr=fill_lr)


def curve_from_csv_frame(path: Path, frame: pd.DataFrame, target: str = "loss", *,
                         fill_lr: str | None = None) -> Curve:
    """`read_curve_csv` on a table already read (`read_csv_frame`)."""
    missing = [c for c in ("step", "lr") if c not in frame.columns]
    if missing:
        raise _fail(path, None, f"missing column(s) {missing} (columns: {list(frame.columns)})",
                    "a curve CSV has columns step,lr,loss with one row per optimizer step, or names its "
                    "schedule per row instead of the lr (lr_schedule,max_lr,total_steps[,min_lr,warmup_steps]: "
                    "harness/fit/schedule_table.py)")
    line_of = lambda i: f"row {i + 2}"  # noqa: E731  (row 1 is the header)
    step = numeric_column(path, frame, "step", allow_empty=False, line_of=line_of)
    lr = numeric_column(path, frame, "lr", allow_empty=False, line_of=line_of)
    if target in frame.columns:
        loss = numeric_column(path, frame, target, allow_empty=True, line_of=line_of)
    else:
        loss = np.full(step.size, np.nan)
    return _curve_from_columns(path, step, lr, loss, line_of, target, fill_lr)


def read_curve_jsonl(path: Path | str, target: str = "loss", *, fill_lr: str | None = None) -> Curve:
    path = Path(path)
    if not path.is_file():
        raise _fail(path, None, "file not found", "check the path")
    try:
        numbered = read_curve_lines(path)  # the harness's one reader: torn last line skipped with a note
    except CurveFileError as e:
        raise InputError(str(e)) from None
    for k, obj in numbered:
        for key in ("step", "lr"):
            if key not in obj:
                raise _fail(path, f"line {k}", f"missing key '{key}'", "each row needs step and lr")
    rows = [obj for _, obj in numbered]
    lines = [k for k, _ in numbered]
    line_of = lambda i: f"line {lines[i]}"  # noqa: E731

    def column(key: str, allow_missing: bool) -> np.ndarray:
        out = np.full(len(rows), np.nan)
        for i, obj in enumerate(rows):
            value = obj.get(key)
            if value is None:
                continue
            try:
                out[i] = float(value)  # the harness writes NaN / inf as strings
            except (TypeError, ValueError):
                raise _fail(path, line_of(i), f"key '{key}' is not a number: {value!r}",
                            f"write a number in '{key}'") from None
            if not allow_missing and math.isnan(out[i]):
                raise _fail(path, line_of(i), f"key '{key}' is NaN", f"give '{key}' on every row")
        return out

    step = column("step", allow_missing=False)
    lr = column("lr", allow_missing=False)
    loss = column(target, allow_missing=True)
    if rows and not any(target in r for r in rows):
        raise _fail(path, None, f"no row has key '{target}'",
                    "pass --target loss (train loss) or --target val_loss (eval steps)")
    return _curve_from_columns(path, step, lr, loss, line_of, target, fill_lr)


def read_curve_file(path: Path | str, target: str = "loss", *, fill_lr: str | None = None) -> Curve:
    """A curve CSV or a harness `curve.jsonl` (by suffix); `fill_lr`: see `fill_lr_linear`."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return read_curve_jsonl(path, target, fill_lr=fill_lr)
    return read_curve_csv(path, target, fill_lr=fill_lr)


def read_csv_frame(path: Path) -> pd.DataFrame:
    """A CSV as strings (errors name the file); column names stripped."""
    if not path.is_file():
        raise _fail(path, None, "file not found", "check the path")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
        raise _fail(path, None, f"cannot parse as CSV ({e})", "write a comma-separated file with a header row") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_scaling_csv(path: Path | str, columns: Sequence[str], target: str = "loss", *,
                     need_target: bool) -> pd.DataFrame:
    """A table with the law's input `columns` (and the target when fitting), as floats.

    Extra columns are kept (the prediction output repeats them). The target column, when present
    in a prediction file, may have empty cells.
    """
    path = Path(path)
    frame = read_csv_frame(path)
    wanted = list(columns) + ([target] if need_target else [])
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        raise _fail(path, None, f"missing column(s) {missing} (columns: {list(frame.columns)})",
                    f"this law needs columns {wanted}")
    if frame.empty:
        raise _fail(path, None, "no rows", "give one row per run")
    line_of = lambda i: f"row {i + 2}"  # noqa: E731
    if need_target and "status" in frame.columns:
        frame, line_of = _drop_unfinished(path, frame, target)
    out = pd.DataFrame(index=frame.index)
    for col in frame.columns:
        if col in columns or col == target:
            values = numeric_column(path, frame, col, allow_empty=(col == target and not need_target), line_of=line_of)
            check_positive(path, col, values, line_of)
            out[col] = values
        else:
            out[col] = frame[col]
    if target not in out.columns:
        out[target] = np.nan
    return out


def _drop_unfinished(path: Path, frame: pd.DataFrame, target: str):
    """A `python -m harness.collect` table (it has a `status` column): fit only on the runs that
    completed with a target value; say how many others were skipped and why."""
    empty = frame[target].astype("string").str.strip().fillna("") == ""
    keep = ~empty & (frame["status"].astype("string").str.strip() == "completed")
    lines = [i + 2 for i in range(len(frame))]
    if not keep.all():
        skipped = frame.loc[~keep, "status"].value_counts().to_dict()
        detail = ", ".join(f"{state or 'no status'} {n}" for state, n in sorted(skipped.items()))
        print(f"note: {path}: skipped {int((~keep).sum())} row(s) without a final '{target}' ({detail}); "
              f"fitting on {int(keep.sum())}", file=sys.stderr)
    if not keep.any():
        raise _fail(path, None, f"no completed run with a '{target}'",
                    "wait for the runs to complete, then collect again")
    kept_lines = [line for line, k in zip(lines, keep) if k]
    return frame[keep].reset_index(drop=True), (lambda i: f"row {kept_lines[i]}")


def curve_to_csv(curve: Curve) -> str:
    """The curve in the CSV input format (`step,lr,loss`, loss empty where not observed)."""
    frame = pd.DataFrame({"step": curve.step, "lr": curve.lr, "loss": curve.loss})
    return frame.to_csv(index=False, na_rep="", float_format="%.10g")
