"""Preemption: a signal asks the run to stop cleanly at the end of the current step.

Slurm sends SIGTERM (or, with `--signal=USR1@120`, SIGUSR1) before it kills or requeues a job. The
handler only sets a flag; the loop finishes the step it is in, writes a checkpoint, and raises
`Preempted` (harness.hooks.PreemptionHook). The entry point then marks the run `preempted` and, when
asked to, requeues the Slurm job (`scontrol requeue`), whose next start resumes from that
checkpoint: no row is lost or doubled.
"""

from __future__ import annotations

import os
import signal
import subprocess
from types import FrameType


class Preempted(Exception):
    def __init__(self, step: int, signal_name: str):
        self.step, self.signal_name = step, signal_name
        super().__init__(f"stopped by {signal_name} after step {step}; checkpoint written, relaunch to resume")


class PreemptionWatcher:
    """While installed, the signals in `signal_names` only set `requested` (the signal's name)."""

    def __init__(self, signal_names: list[str]):
        self.signals = [signal.Signals[name] for name in signal_names]
        self.requested: str | None = None
        self._previous: dict[signal.Signals, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = signal.Signals(signum).name

    def install(self) -> None:
        for sig in self.signals:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        """Put the previous handlers back (safe to call when not installed)."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._previous.clear()

    def __enter__(self) -> "PreemptionWatcher":
        self.install()
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def requeue_slurm_job() -> bool:
    """Ask Slurm to requeue this job (it restarts from the top and resumes); False outside Slurm."""
    job_id = os.environ.get("SLURM_ARRAY_JOB_ID") and os.environ.get("SLURM_ARRAY_TASK_ID") and \
        f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}" or os.environ.get("SLURM_JOB_ID")
    if not job_id:
        return False
    result = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    return result.returncode == 0
