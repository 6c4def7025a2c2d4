"""Where each planned run stands, from its run directory's status.json (harness/run.py).

States: completed, running, preempted, failed (with the reason status.json gives), not started
(no status.json yet). A `running` whose status.json has not changed for a long time may belong to
a process that was killed without a chance to write: its age is shown.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from harness.files import read_json

NOT_STARTED = "not started"
STATE_ORDER = ("completed", "running", "preempted", "failed", NOT_STARTED)


@dataclass(frozen=True)
class RunState:
    index: int
    run_id: str
    overrides: str
    state: str
    step: Optional[int]
    steps: Optional[int]
    reason: Optional[str]
    updated: Optional[float]


def run_states(plan: dict[str, Any]) -> list[RunState]:
    out = []
    for run in plan["runs"]:
        status_file = Path(run["run_dir"]) / "status.json"
        status: dict[str, Any] = {}
        if status_file.is_file():
            try:
                status = read_json(status_file)
            except (OSError, ValueError):  # being replaced right now: read as running
                status = {"state": "running"}
        steps = run.get("steps")
        out.append(RunState(index=run["index"], run_id=run["run_id"], overrides=run["overrides"],
                            state=status.get("state", NOT_STARTED), step=status.get("step"), steps=steps,
                            reason=status.get("reason"), updated=status.get("updated")))
    return out


def counts(states: Sequence[RunState]) -> dict[str, int]:
    c = Counter(s.state for s in states)
    return {k: c[k] for k in (*STATE_ORDER, *sorted(set(c) - set(STATE_ORDER))) if c[k]}


def format_status(name: str, states: Sequence[RunState]) -> str:
    now = time.time()
    summary = ", ".join(f"{n} {state}" for state, n in counts(states).items())
    lines = [f"experiment {name}: {len(states)} run(s): {summary}",
             f"{'#':>3}  {'run_id':12}  {'state':11}  {'step':>11}  overrides / reason"]
    for s in states:
        step = "-" if s.step is None else (f"{s.step}/{s.steps}" if s.steps else str(s.step))
        detail = s.overrides
        if s.state in ("failed", "preempted") and s.reason:
            detail += f"  [{s.reason.splitlines()[0][:200]}]"
        if s.state == "running" and s.updated:
            detail += f"  [status.json {now - s.updated:.0f}s old]"
        lines.append(f"{s.index:>3}  {s.run_id:12}  {s.state:11}  {step:>11}  {detail}")
    return "\n".join(lines)
