"""Kind `mixture_sweep` (harness/experiment/mixture_sweep.py): the plan (a base, then one continued
run per ratio from the base's checkpoint with its own mix), the tiny study run end to end through
the local launcher and reported (per-domain tables, the CMR or the reason it is refused), bad specs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_experiment as experiment


@pytest.fixture(scope="module")
def finished(module_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mixture") / "exp"
    proc = experiment(module_env, "run", "mixture_tiny", "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = experiment(module_env, "report", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    return out


def test_plan_has_a_base_and_a_continued_run_per_ratio(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", "mixture_tiny", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    base, continued = runs[0], runs[1:]
    assert base["settings"]["role"] == "base" and base["stage"] == 0
    assert [r["settings"]["ratio"] for r in continued] == [0.0, 0.2, 0.5, 1.0]
    for r in continued:
        assert r["stage"] == 1 and r["parent"] == base["run_id"] and r["start_step"] == 0
        assert f"train.init_from={base['run_dir']}/checkpoints/step_00000030.pt" in r["overrides"]
        assert "train.init_mode=weights" in r["overrides"] and "train.init_optimizer=true" in r["overrides"]
        assert r["settings"]["token_steps"] == [4, 8, 16]  # 512, 1024, 2048 tokens at 4 x 32 per step
    assert len({r["run_id"] for r in runs}) == len(runs)  # each ratio its own identity


def test_run_continues_the_base_and_reports_per_domain_losses(finished):
    plan = json.loads((finished / "plan.json").read_text())
    base_dir = Path(plan["runs"][0]["run_dir"])
    for run in plan["runs"][1:]:
        status = json.loads((Path(run["run_dir"]) / "status.json").read_text())
        assert status["state"] == "completed" and status["init_optimizer"] is True
        assert status["parent_curve"] == str(base_dir / "curve.jsonl")
        ratio = run["settings"]["ratio"]
        share = status["tokens/code"] / status["tokens"]
        assert share == 0.0 if ratio == 0.0 else share == 1.0 if ratio == 1.0 else 0 < share < 1
    summary = json.loads((finished / "report.json").read_text())
    assert summary["base"]["general"] > 0 and len(summary["points"]) == 12  # 4 ratios x 3 token counts
    markdown = (finished / "report.md").read_text()
    assert "(general) val loss by domain ratio" in markdown and "(domain) val loss by domain ratio" in markdown
    # either a CMR with its interval, or the reason it is not reported: never silence
    assert (summary["cmr"] is not None and "**CMR at T" in markdown) or "CMR NOT REPORTED" in markdown
    assert (finished / "mixture.png").stat().st_size > 10_000
    # the surface is checked forward in time on both sources (12 points: 8 fitted, 4 held at the largest T)
    assert [h["source"] for h in summary["holdout"]] == ["prose", "code"]
    assert all(h["n_held"] == 4 and h["n_fit"] == 8 and h["mean_rel_error"] >= 0 for h in summary["holdout"])
    assert "Held-out check of the surface" in markdown
    import csv
    with open(finished / "runs.csv") as f:
        table = list(csv.DictReader(f))
    assert all(row["val_loss/code"] and row["tokens/prose"] for row in table)


@pytest.mark.parametrize("override,field", [
    ("mixture_sweep.ratios=[0.1,0.2]", "mixture_sweep.ratios"),
    ("mixture_sweep.domain=prose", "mixture_sweep.general / domain"),
    ("mixture_sweep.tokens=[100,110]", "mixture_sweep.tokens"),
])
def test_bad_spec_exits_2_naming_the_field(module_env, tmp_path, override, field):
    proc = experiment(module_env, "plan", "mixture_tiny", override, "--dir", str(tmp_path / "exp"))
    assert proc.returncode == 2 and field in proc.stderr, proc.stderr
