"""RUN_DIR/evals.jsonl: one row per (step, task, metric): step, tokens, flops, task, metric, value, n.

Every write replaces the whole file atomically (harness.files.atomic_write_text) with the old rows
plus one finished (step, task) block, so a killed eval leaves the file as it was before that block,
never a partial block; a rerun skips the (step, task) pairs already there, so no row is duplicated.
The file is small (rows per step x task ~ 10).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from harness.files import atomic_write_text

EVALS_FILE = "evals.jsonl"
ROW_KEYS = ("step", "tokens", "flops", "task", "metric", "value", "n")


def read_evals(path: Path) -> list[dict[str, Any]]:
    """The rows of an evals file ([] if absent). A bad line is an error naming file and line."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}:{i}: not a JSON row ({err}); the file is written whole, so it was edited "
                             "by hand: fix or delete that line") from None
    return rows


def done_pairs(path: Path) -> set[tuple[int, str]]:
    return {(int(r["step"]), str(r["task"])) for r in read_evals(path)}


def append_block(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    """Add one (step, task) block of rows, atomically (the old rows + the new ones, replaced in one go)."""
    new = [{k: r[k] for k in ROW_KEYS} for r in rows]
    old = read_evals(path)
    text = "".join(json.dumps(r) + "\n" for r in old + new)
    atomic_write_text(Path(path), text)
