"""The curves of a list of input files, whatever each file's kind (harness/fit/io.py): a curve CSV or a run's
`curve.jsonl` is one curve; a CSV that gives each run's schedule instead of an lr column may hold several
(harness/fit/schedule_table.py). Kept apart from io.py so that the single-file readers do not depend on the
schedule code (schedule_table re-creates the LR with it)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from harness.fit.io import Curve, InputError, curve_from_csv_frame, read_csv_frame, read_curve_file
from harness.fit.schedule_table import curves_from_schedule_table, has_schedule_columns


def read_curve_files(path: Path | str, target: str = "loss", *, fill_lr: str | None = None) -> list[Curve]:
    """The curves of one file: one, or one per run for a CSV that gives its schedule's parameters instead
    of an lr column (`fill_lr` does not apply there: every step's LR is known)."""
    path = Path(path)
    if path.suffix == ".jsonl":
        return [read_curve_file(path, target, fill_lr=fill_lr)]
    frame = read_csv_frame(path)  # read once, whichever kind of CSV it is
    if "lr" not in frame.columns and has_schedule_columns(frame):
        return curves_from_schedule_table(path, frame, target, lambda i: f"row {i + 2}")
    return [curve_from_csv_frame(path, frame, target, fill_lr=fill_lr)]


def read_curves(paths: Sequence[Path | str], target: str = "loss", *, need_loss: bool,
                fill_lr: str | None = None) -> list[Curve]:
    """Read and validate every curve; with need_loss, each must have at least one observed loss.
    With `fill_lr`, sparsely logged files are filled (io.fill_lr_linear) and `Curve.lr_fill` says by how much.
    A file may hold several runs (`read_curve_files`)."""
    curves = [c for p in paths for c in read_curve_files(p, target, fill_lr=fill_lr)]
    names = [c.name for c in curves]
    for c in curves:
        if need_loss and c.n_observed == 0:
            raise InputError(f"{c.path}: no observed '{target}' to fit on. "
                             f"Fix: fill '{target}' on the rows where it was measured.")
        if names.count(c.name) > 1:
            raise InputError(f"{c.path}: another input has the same name '{c.name}'. "
                             "Fix: rename one file so the outputs do not collide.")
    return curves
