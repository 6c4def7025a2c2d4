"""The results of the runs done so far, looked up by config hash: what a kind that plans in rounds
(`ExperimentKind.replan`) reads to decide its next runs, and what its report reads back.

    results = RunResults(spec.base, out_dir)
    r = results.of(request)      # RunResult: run_id, run_dir, state, final_val_loss, final_loss
    r.loss                       # final val loss of a completed run (its train loss if it has no
                                 # val), +inf for a run that failed on a non-finite loss (a diverged
                                 # setting: a result, the worst one), None while unknown

A request is composed exactly as plan.py composes it (base + overrides), so a run is found by its
identity wherever it came from: a run planned by an earlier round, by another cell of the same
experiment, or trained before under the same directory. Compositions are cached per override set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from harness.experiment.kinds import RunRequest
from harness.files import read_json
from harness.formatting import finite

DIVERGED_MARKERS = ("non-finite", "nonfinite", "NonFiniteLoss")


@dataclass(frozen=True)
class RunResult:
    run_id: str
    run_dir: Path
    state: str                       # completed, running, preempted, failed, not started
    final_val_loss: Optional[float]
    final_loss: Optional[float]
    reason: Optional[str] = None

    @property
    def diverged(self) -> bool:
        return self.state == "failed" and any(m in (self.reason or "") for m in DIVERGED_MARKERS)

    @property
    def loss(self) -> Optional[float]:
        """The number a round compares: final val loss (else train loss); +inf if it diverged."""
        if self.diverged:
            return math.inf
        if self.state != "completed":
            return None
        return self.final_val_loss if self.final_val_loss is not None else self.final_loss

    @property
    def done(self) -> bool:
        """Finished for good: completed, or diverged (relaunching would diverge again)."""
        return self.state == "completed" or self.diverged


class RunResults:
    """Run results under `out_dir`/runs, by the config hash of `base + request.overrides`."""

    def __init__(self, base: Sequence[str], out_dir: Path):
        self.base = tuple(base)
        self.runs_root = Path(out_dir).resolve() / "runs"
        self._ids: dict[tuple[str, ...], str] = {}

    def run_id(self, request: RunRequest) -> str:
        from harness.experiment.compose import compose_run
        from harness.identity import config_hash

        key = tuple(request.overrides)
        if key not in self._ids:
            self._ids[key] = config_hash(compose_run([*self.base, *key], request.source))
        return self._ids[key]

    def of(self, request: RunRequest) -> RunResult:
        run_id = self.run_id(request)
        run_dir = self.runs_root / run_id
        status: dict = {}
        if (run_dir / "status.json").is_file():
            try:
                status = read_json(run_dir / "status.json")
            except (OSError, ValueError):  # being replaced right now
                status = {"state": "running"}
        return RunResult(run_id=run_id, run_dir=run_dir, state=status.get("state", "not started"),
                         final_val_loss=finite(status.get("final_val_loss")),
                         final_loss=finite(status.get("final_loss")), reason=status.get("reason"))
