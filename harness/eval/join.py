"""The evals of a run as table columns, for `python -m harness.collect` (no lm-eval needed).

For each task, the rows of its last evaluated step: `<metric>/<task>` (acc/pydoc_cloze,
error/pydoc_cloze, p_correct/..., pass_rate/sequence_next, ...) and `eval_step/<task>`. The column
`error`, the target of `python -m harness.fit scaling --law gadre-error` (Gadre et al.'s average
top-1 error), is the mean of error/<task> over the multiple-choice tasks, set only when every one of
them was evaluated at `final_step` (the model whose loss is the row's `loss`); else it stays empty.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.eval.evals_file import EVALS_FILE, read_evals


def eval_columns(run_dir: Path, final_step: int | None) -> dict[str, Any]:
    rows = read_evals(Path(run_dir) / EVALS_FILE)
    if not rows:
        return {}
    last: dict[str, int] = {}
    for r in rows:
        last[r["task"]] = max(last.get(r["task"], -1), int(r["step"]))
    out: dict[str, Any] = {f"eval_step/{task}": step for task, step in sorted(last.items())}
    for r in rows:
        if int(r["step"]) == last[r["task"]]:
            out[f"{r['metric']}/{r['task']}"] = r["value"]
    mc = [task for task in last if f"error/{task}" in out]
    if mc and final_step is not None and all(last[t] == final_step for t in mc):
        out["error"] = sum(out[f"error/{t}"] for t in mc) / len(mc)
    return out
