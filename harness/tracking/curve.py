"""The curve file: one JSON object per optimizer step, appended and flushed as it happens.

Rows carry at least `step, tokens, flops, lr, loss, grad_norm, tokens_per_s`; rows at eval steps
also carry `val_loss`. A killed process keeps every row it wrote (each row is flushed to the OS
before the next step starts). On resume the file is cut back to the checkpoint's step, so the
replayed steps are written once, not twice.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterator

from harness.files import atomic_write_text


def read_curve(path: Path) -> list[dict[str, Any]]:
    """All complete rows. A torn last line (the process died mid-write) is ignored."""
    return list(_complete_rows(path))


def _complete_rows(path: Path) -> Iterator[dict[str, Any]]:
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # torn write at the end of a killed run
            line = line.strip()
            if line:
                yield json.loads(line)


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
        atomic_write_text(self.path, "".join(json.dumps(r) + "\n" for r in kept))
        return len(kept)

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
