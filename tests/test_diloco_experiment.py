"""Kind `diloco_scaling` (harness/experiment/diloco_scaling.py): the report's gap verdict on synthetic
tables with a known answer, bad specs named by their field, the presets' plans, and the tiny spec
trained end to end (local launcher) with its report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import run_experiment as experiment
from harness.experiment.diloco_scaling import DilocoScalingKind
from harness.experiment.diloco_scaling_report import diloco_scaling_report
from harness.experiment.spec import ExperimentError, load_spec

TINY = "diloco_tiny"


# ------------------------------------------------------------------ the report on synthetic tables


def synthetic(gaps: dict[str, float], dp_seed_spread: float) -> tuple[pd.DataFrame, dict, DilocoScalingKind.Config]:
    """DP at L = 10 N^-0.1 (two seeds, +-spread) and DiLoCo M=2 H=4 at DP + gap[size] with the best
    outer LR 0.7 (0.3 is worse by 0.05)."""
    params = DilocoScalingKind.Config(sizes=list(gaps), replicas=[2], inner_steps=[4], outer_lrs=[0.3, 0.7],
                                      dp_seeds=2, batch_size=4, n_boot=20)
    sizes = {"a": 1e4, "b": 4e4, "c": 1.6e5}
    rows = []
    for size, gap in gaps.items():
        n = sizes[size]
        dp = 10 * n ** -0.1
        for k, sign in enumerate((-1, 1)):
            rows.append({"settings": {"size": size, "N": n, "mode": "dp", "replicas": 1, "seed": 1000 * k},
                         "loss": dp + sign * dp_seed_spread})
        for lr, extra in ((0.3, 0.05), (0.7, 0.0)):
            rows.append({"settings": {"size": size, "N": n, "mode": "diloco", "replicas": 2, "inner_steps": 4,
                                      "outer_lr": lr, "seed": 0}, "loss": dp + gap + extra})
    table = pd.DataFrame.from_records([
        {"index": i, "run_id": f"r{i}", "overrides": "", "settings": json.dumps(r["settings"]),
         "status": "completed", "final_val_loss": r["loss"]} for i, r in enumerate(rows)])
    plan = {"spec": {"name": "synthetic", "diloco_scaling": {}}}
    return table, plan, params


def test_report_finds_a_gap_that_shrinks_beyond_the_noise(tmp_path):
    table, plan, params = synthetic({"a": 0.20, "b": 0.10, "c": 0.02}, dp_seed_spread=0.002)
    report = diloco_scaling_report(tmp_path, table, plan, params)
    s = report.summary
    trend = s["gap_trend"]["DiLoCo M=2 H=4"]
    assert trend["verdict"].startswith("shrinks")  # (0.7, the best LR, is the grid top: flagged)
    assert "tuning incomplete" in trend["verdict"]
    assert trend["gap_smallest"] == pytest.approx(0.20) and trend["gap_largest"] == pytest.approx(0.02)
    assert s["caveats"] == []
    assert s["laws"]["DP"]["exponent_N"] == pytest.approx(-0.1, abs=1e-3)  # the power law it was built from
    best = s["best"]["DiLoCo M=2 H=4"]
    assert {size: e["outer_lr"] for size, e in best.items()} == {"a": 0.7, "b": 0.7, "c": 0.7}
    assert s["outer_lr_laws"]["DiLoCo M=2 H=4"] == {"constant": 0.7}
    assert any("largest of the grid" in w for w in s["warnings"])  # 0.7 is the grid's top
    assert (tmp_path / "diloco_scaling.png").is_file()
    assert "CAVEAT" not in report.markdown


def test_report_says_loudly_when_the_trend_is_within_noise(tmp_path):
    table, plan, params = synthetic({"a": 0.10, "b": 0.09, "c": 0.08}, dp_seed_spread=0.03)
    report = diloco_scaling_report(tmp_path, table, plan, params)
    trend = report.summary["gap_trend"]["DiLoCo M=2 H=4"]
    assert trend["verdict"].startswith("not resolved (within noise)")
    assert len(report.summary["caveats"]) == 1 and "NOT resolved" in report.summary["caveats"][0]
    assert "**CAVEAT" in report.markdown


# ------------------------------------------------------------------ specs and plans


@pytest.mark.parametrize("override, field", [
    ("diloco_scaling.replicas=[0]", "diloco_scaling.replicas"),
    ("diloco_scaling.replicas=[3]", "diloco_scaling.batch_size"),  # 4 sequences do not split over 3 replicas
    ("diloco_scaling.outer_lrs=[0.0]", "diloco_scaling.outer_lrs"),
    ("diloco_scaling.outer_optimizer=adam", "diloco_scaling.outer_optimizer"),
    ("diloco_scaling.inner_steps=[]", "diloco_scaling.inner_steps"),
    ("diloco_scaling.sizes=[d33]", "diloco_scaling.sizes[0]"),
    ("diloco_scaling.dp_seeds=0", "diloco_scaling.dp_seeds"),
    ("diloco_scaling.outer_lr=0.7", "diloco_scaling.outer_lr"),  # a misspelled key (it is outer_lrs)
])
def test_bad_spec_names_the_field(override, field):
    with pytest.raises(ExperimentError) as err:
        load_spec(TINY, [override])
    assert str(err.value).startswith(f"{field}:"), str(err.value)


def test_presets_plan(module_env, tmp_path):
    for name, n_sizes, n_runs in (("diloco_cpu", 3, 3 * (2 + 3 * 2 * 3)), ("diloco_gpu", 4, 4 * (3 + 3 * 2 * 4))):
        out = tmp_path / name
        proc = experiment(module_env, "plan", name, "--dir", str(out), "--no-data-check")
        assert proc.returncode == 0, proc.stderr
        runs = json.loads((out / "plan.json").read_text())["runs"]
        assert len(runs) == n_runs
        assert len({r["settings"]["size"] for r in runs}) == n_sizes
        assert {r["settings"]["replicas"] for r in runs if r["settings"]["mode"] == "diloco"} == {1, 2, 4}
        for size in {r["settings"]["size"] for r in runs}:  # matched tokens: one D and one step count per size
            of_size = [r for r in runs if r["settings"]["size"] == size]
            assert len({(r["D"], r["steps"]) for r in of_size}) == 1
        assert not (out / "runs").exists()


# ------------------------------------------------------------------ the tiny study, trained


def test_tiny_study_runs_and_reports(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "run", TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    plan = json.loads((out / "plan.json").read_text())["runs"]
    assert len(plan) == 2 * (2 + 2 * 1 * 2)
    for run in plan:
        status = json.loads((out / "runs" / run["run_id"] / "status.json").read_text())
        assert status["state"] == "completed"
        assert status["tokens"] == run["D"]  # every replica's tokens counted: DP and DiLoCo match
        if run["settings"]["mode"] == "diloco":
            m = run["settings"]["replicas"]
            assert status["diloco_replicas"] == m
            assert status["comm_bytes_per_outer_step"] == 2 * (m - 1) * 4 * status["params"]
    proc = experiment(module_env, "report", str(out))
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "report.json").read_text())
    assert summary["kind"] == "diloco_scaling" and summary["counts"] == {"completed": 12}
    for cell in ("DiLoCo M=1 H=4", "DiLoCo M=2 H=4"):
        assert set(summary["best"][cell]) == {"32x1", "d32"}
        assert summary["laws"][cell]["exponent_N"] < 0  # the larger model reaches a lower loss
        assert cell in summary["gap_trend"]
    assert summary["seed_std"] is not None and summary["seed_std"] > 0
    assert (out / "diloco_scaling.png").is_file()
    markdown = (out / "report.md").read_text()
    assert "## Power laws L = c N^k" in markdown and "## Does the gap to DP shrink with size?" in markdown
