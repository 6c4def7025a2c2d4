"""Checkpoints: atomic writes, keep-last-k (plus pinned steps kept forever), and safe loading
(weights_only=True).

A checkpoint is a plain dict of tensors, numbers and strings, so it loads with
`torch.load(..., weights_only=True)`: nothing in it is unpickled as code. Its file is
`<run dir>/checkpoints/step_<8-digit step>.pt`; `checkpoint_step` reads the step back from the name.

torch is imported where it is used, so harness.config can use the naming rules without it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Collection

_NAME = re.compile(r"^step_(\d{8})\.pt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    return directory / f"step_{step:08d}.pt"


def checkpoint_step(path: str | Path) -> int | None:
    """The step a checkpoint file's name says (`.../step_00000600.pt` -> 600); None for other names."""
    match = _NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_checkpoints(directory: Path) -> list[tuple[int, Path]]:
    """(step, path) of every complete checkpoint, oldest first. Temp files are ignored."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        step = checkpoint_step(path)
        if step is not None:
            found.append((step, path))
    return sorted(found)


def latest_checkpoint(directory: Path) -> Path | None:
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(directory: Path, step: int, state: dict[str, Any], keep_last: int,
                    pinned: Collection[int] = ()) -> Path:
    """Write `state` for `step` atomically, then delete all but the newest `keep_last` of the
    checkpoints whose step is not `pinned`: pinned steps (train.checkpoint_at, e.g. the branch points
    of a cooldown study) are never deleted and do not count toward `keep_last`."""
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, step)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(directory)
    rotating = [path for s, path in list_checkpoints(directory) if s not in pinned]
    for old in rotating[:-keep_last]:
        old.unlink(missing_ok=True)
    return final


def load_checkpoint(path: Path) -> dict[str, Any]:
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
