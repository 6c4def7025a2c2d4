"""The run directory: where one run keeps everything it produces.

    <run_dir>/
      config.yaml     the resolved config (vocab size filled in)
      env.json        versions, git sha, device, seed, host
      curve.jsonl     one JSON row per optimizer step (see harness/tracking/curve.py)
      status.json     running | completed | failed | preempted, with the step reached and final losses
      checkpoints/    step_<8-digit step>.pt, atomic, keep-last-k
      tokenizer/      the run's tokenizer (save_pretrained format)
      curve.png       the curve plot, written at the end
      wandb/          the wandb mirror, when enabled

A directory whose status is `completed` is skipped on relaunch; one with a checkpoint resumes.
An exclusive lock stops two processes from writing the same run.
"""

from __future__ import annotations

import fcntl
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from harness.files import atomic_write_json, atomic_write_text, read_json

RUNNING, COMPLETED, FAILED, PREEMPTED = "running", "completed", "failed", "preempted"


class RunLockedError(RuntimeError):
    pass


@dataclass
class RunDir:
    path: Path
    _lock_fd: Optional[int] = field(default=None, repr=False)

    @property
    def config_file(self) -> Path:
        return self.path / "config.yaml"

    @property
    def env_file(self) -> Path:
        return self.path / "env.json"

    @property
    def curve_file(self) -> Path:
        return self.path / "curve.jsonl"

    @property
    def status_file(self) -> Path:
        return self.path / "status.json"

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def plot_file(self) -> Path:
        return self.path / "curve.png"

    def create(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)

    def lock(self) -> None:
        """Take an exclusive, process-lifetime lock (released by the OS if the process dies)."""
        self.create()
        fd = os.open(self.path / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunLockedError(
                f"{self.path} is in use by another process; wait for it or choose another run_dir"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def read_status(self) -> dict[str, Any] | None:
        return read_json(self.status_file) if self.status_file.exists() else None

    def is_completed(self) -> bool:
        status = self.read_status()
        return status is not None and status.get("state") == COMPLETED

    def write_status(self, state: str, **fields: Any) -> None:
        atomic_write_json(self.status_file, {"state": state, "updated": time.time(), **fields})

    def write_config(self, yaml_text: str) -> None:
        atomic_write_text(self.config_file, yaml_text)

    def write_env(self, **extra: Any) -> None:
        atomic_write_json(self.env_file, environment_info() | extra)


def git_sha() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment_info() -> dict[str, Any]:
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.version.cuda,
        "git_sha": git_sha(),
        "argv": sys.argv,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
    }
    for name in ("transformers", "datasets", "tokenizers"):
        try:
            info[name] = __import__(name).__version__
        except ImportError:
            info[name] = None
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["gpu_count"] = torch.cuda.device_count()
    return info
