"""How a run ends: the state `status.json` records and the exit code the process returns.

    completed  0   (also: already completed, skipped)
    failed     2   bad config (ConfigError): nothing was trained
    failed     3   non-finite loss (NonFiniteLossError): the last good checkpoint is kept
    preempted  75  a preemption signal (Preempted): checkpointed; relaunch to resume
    failed     1   anything else
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.config import ConfigError
from harness.preemption import Preempted
from harness.run import COMPLETED, FAILED, PREEMPTED

EXIT_OK, EXIT_ERROR, EXIT_BAD_CONFIG, EXIT_NON_FINITE, EXIT_PREEMPTED = 0, 1, 2, 3, 75


class NonFiniteLossError(RuntimeError):
    def __init__(self, step: int, loss: float, grad_norm: float, checkpoint: str | None):
        self.step, self.loss, self.grad_norm, self.checkpoint = step, loss, grad_norm, checkpoint
        kept = f"the last good checkpoint ({checkpoint}) is kept" if checkpoint else "no checkpoint was written"
        super().__init__(
            f"non-finite training loss at step {step} (loss={loss}, grad_norm={grad_norm}); {kept}. "
            "Lower optim.lr, add warmup (schedule.warmup_steps) or clipping (train.grad_clip)."
        )


@dataclass(frozen=True)
class Outcome:
    state: str
    exit_code: int
    reason: str | None = None


def outcome_of(err: BaseException | None) -> Outcome:
    """The outcome of a run that ended by raising `err` (None: it finished)."""
    if err is None:
        return Outcome(COMPLETED, EXIT_OK)
    if isinstance(err, Preempted):
        return Outcome(PREEMPTED, EXIT_PREEMPTED, str(err))
    if isinstance(err, NonFiniteLossError):
        return Outcome(FAILED, EXIT_NON_FINITE, str(err))
    if isinstance(err, ConfigError):
        return Outcome(FAILED, EXIT_BAD_CONFIG, str(err))
    return Outcome(FAILED, EXIT_ERROR, f"{type(err).__name__}: {err}")
