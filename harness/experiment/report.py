"""`report DIR`: collect the experiment's runs (harness/collect.py) into DIR/runs.csv + parquet,
then write the kind's report: DIR/report.md, DIR/report.json and its PNG plots (atomically).

The collected table is joined to the plan by run directory, so each row carries its plan index,
run id, overrides and settings, and planned runs that never started appear as `not started`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness.experiment.kinds import KINDS, Report
from harness.experiment.plan import read_plan
from harness.files import atomic_write_json, atomic_write_text


def experiment_table(out_dir: Path, plan: dict[str, Any]):
    """runs.csv/parquet of DIR/runs (written), joined with the plan: one row per planned run."""
    import pandas as pd

    from harness.collect import collect, write_table

    runs_root = Path(out_dir) / "runs"
    frame = collect(runs_root) if runs_root.is_dir() else pd.DataFrame()
    by_dir = {str(Path(r).resolve()): i for i, r in enumerate(frame["run_dir"])} if len(frame) else {}
    rows = []
    for run in plan["runs"]:
        i = by_dir.get(str(Path(run["run_dir"]).resolve()))
        row = frame.iloc[i].to_dict() if i is not None else {"status": "not started", "run_dir": run["run_dir"]}
        row.update({"index": run["index"], "run_id": run["run_id"], "overrides": run["overrides"],
                    "settings": json.dumps(run["settings"], sort_keys=True), "reason": _reason(run["run_dir"])})
        rows.append(row)
    table = pd.DataFrame.from_records(rows)
    lead = ["index", "run_id", "overrides", "settings"]
    table = table[lead + [c for c in table.columns if c not in lead]]
    if len(frame):
        write_table(frame, Path(out_dir) / "runs")
    return table


def _reason(run_dir: str) -> str | None:
    """Why a run failed or was preempted (status.json `reason`; collect leaves it out)."""
    status = Path(run_dir) / "status.json"
    try:
        return json.loads(status.read_text()).get("reason") if status.is_file() else None
    except (OSError, ValueError):
        return None


def write_report(out_dir: Path) -> Report:
    out_dir = Path(out_dir)
    plan = read_plan(out_dir)
    kind = KINDS.get(plan["spec"]["kind"])()
    table = experiment_table(out_dir, plan)
    report = kind.report(out_dir, table, plan)
    atomic_write_text(out_dir / "report.md", report.markdown)
    atomic_write_json(out_dir / "report.json", report.summary)
    return report
