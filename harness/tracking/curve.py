"""The curve file: one JSON object per optimizer step, appended and flushed as it happens.

Rows carry at least `step, tokens, flops, lr, loss, grad_norm, tokens_per_s`; rows at eval steps
also carry `val_loss`. A killed process keeps every row it wrote (each row is flushed to the OS
before the next step starts). On resume the file is cut back to the checkpoint's step, so the
replayed steps are written once, not twice.

This module is also the one reader of the file (collect, the fitting stage and the plots use
`read_curve` / `read_curve_lines`), with one rule for bad lines:
* a torn LAST line (the process died mid-write, so the line is not a complete JSON object) is
  skipped with a note on stderr naming the file;
* any other line that is not a JSON object is an error (`CurveFileError`) naming file and line.
A last line that is a complete object but lacks its newline (a hand-written file) is kept.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from harness.files import atomic_write_text


class CurveFileError(ValueError):
    """A curve file line that is not a JSON object (and not a torn last line)."""


def read_curve_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """(line number from 1, row) for every row; blank lines are skipped; no file gives [].

    Raises CurveFileError naming the file and line for a bad line before the last one.
    """
    path = Path(path)
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")  # the part after the last "\n" is "" for a complete file
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if isinstance(row, dict):
            rows.append((number, row))
            continue
        if number == len(lines) and not text.endswith("\n"):
            # Only the last line can be cut short by a kill; every earlier line ended with "\n".
            print(f"note: {path}: line {number} is incomplete (the writer was killed mid-line); "
                  "skipped it", file=sys.stderr)
            break
        raise CurveFileError(f"{path}, line {number}: not a JSON object ({line[:60]!r}). Fix: every line of a "
                             "curve file is one JSON object; remove or repair that line")
    return rows


def read_curve(path: Path) -> list[dict[str, Any]]:
    """All complete rows of a curve file (see the module docstring for bad lines)."""
    return [row for _, row in read_curve_lines(path)]


def _clean(value: Any) -> Any:
    # JSON has no NaN/Inf; write them as strings so the file stays valid JSON Lines.
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


class CurveWriter:
    def __init__(self, path: Path):
        self.path = path
        self._file = None

    def truncate_after(self, step: int) -> int:
        """Keep rows with `step` <= step (atomically); return how many were kept."""
        kept = [row for row in read_curve(self.path) if row["step"] <= step]
        self.replace(kept)
        return len(kept)

    def replace(self, rows: list[dict[str, Any]]) -> None:
        """Make the file hold exactly `rows` (atomically), e.g. a branch's copy of its parent's rows."""
        atomic_write_text(self.path, "".join(json.dumps({k: _clean(v) for k, v in r.items()}) + "\n" for r in rows))

    def open(self) -> "CurveWriter":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")
        return self

    def append(self, row: dict[str, Any]) -> None:
        assert self._file is not None, "open() the writer first"
        self._file.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        self._file.flush()

    def sync(self) -> None:
        """fsync: survive power loss, not only a killed process (called at checkpoints)."""
        if self._file is not None:
            os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
