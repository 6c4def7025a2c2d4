"""The on-disk cache: where it lives, and how a directory appears in it all at once or not at all."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.config import ConfigError, DataConfig

# A temp directory this old belongs to a process that died mid-write; it is safe to delete.
_STALE_TMP_SECONDS = 24 * 3600
_TMP_PREFIX = ".tmp-"


def resolve_cache_dir(cfg: DataConfig) -> Path:
    """`cfg.cache_dir` as an absolute path.

    A DataConfig built in Python (not through Hydra) still holds the schema's default
    `${oc.env:HARNESS_CACHE,...}` interpolation, so it is resolved here the way OmegaConf would.
    """
    raw = cfg.cache_dir
    if "${" in raw:
        from omegaconf import OmegaConf

        try:
            raw = str(OmegaConf.create({"cache_dir": raw}).cache_dir)
        except Exception as err:
            raise ConfigError(
                f"data.cache_dir: cannot resolve {cfg.cache_dir!r} ({err}); give a plain path"
            ) from err
    if not raw:
        raise ConfigError("data.cache_dir: is empty; give a directory for token and tokenizer caches")
    return Path(os.path.expanduser(raw)).resolve()


@contextmanager
def atomic_directory(final_dir: Path) -> Iterator[Path]:
    """Yield an empty temp directory next to `final_dir`; on success it becomes `final_dir`.

    The body writes files into the temp directory; they are fsynced and the directory is renamed
    into place in one `os.rename`, so readers see either nothing or the complete directory. If the
    body fails, the temp directory is removed. If another process renamed its own copy into place
    first, ours is discarded and theirs is kept: both were built from the same inputs.
    """
    parent = final_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_tmp_dirs(parent)
    tmp_dir = parent / f"{_TMP_PREFIX}{final_dir.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp_dir.mkdir()
    try:
        yield tmp_dir
        _fsync_tree(tmp_dir)
        try:
            os.rename(tmp_dir, final_dir)
        except OSError:
            if not final_dir.is_dir():
                raise
            # Lost the race: a complete directory is already there.
        else:
            _fsync_path(parent)
    finally:
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir, ignore_errors=True)


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        if path.is_file():
            _fsync_path(path)
    _fsync_path(directory)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError:
        pass  # some filesystems refuse fsync on directories; the rename is still atomic
    finally:
        os.close(fd)


def _remove_stale_tmp_dirs(parent: Path) -> None:
    now = time.time()
    for path in parent.glob(f"{_TMP_PREFIX}*"):
        try:
            if now - path.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(path, ignore_errors=True)
        except FileNotFoundError:
            continue  # its owner finished or cleaned up meanwhile
