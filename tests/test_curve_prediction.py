"""Kind `curve_prediction` (harness/experiment/curve_prediction.py): the tiny preset planned, run
through the local launcher (both rounds) and reported: branches equal their constant parent up to the
branch step, every registered curve law in the table, the optimized schedule trained exactly as the
optimizer wrote it, paired seed differences; bad specs exit 2 naming the field."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import run_experiment as experiment

SPEC = "curve_prediction_tiny"


@pytest.fixture(scope="module")
def finished(module_env, tmp_path_factory) -> Path:
    """The tiny study, run once (round 0, then round 2) and reported."""
    out = tmp_path_factory.mktemp("curve_prediction") / "exp"
    proc = experiment(module_env, "run", SPEC, "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = experiment(module_env, "report", str(out))
    assert report.returncode == 0, report.stdout[-3000:] + report.stderr[-3000:]
    return out


def _plan(out: Path) -> dict:
    return json.loads((out / "plan.json").read_text())


def _compose(run: dict):
    from harness.experiment.compose import compose_run

    return compose_run([o for o in run["train_overrides"] if not o.startswith(("run_dir=", "name="))], "test")


def _lrs(cfg) -> list[float]:
    from harness.schedules import build_schedule

    run = build_schedule(cfg.schedule, total_steps=cfg.train.steps, peak_lr=cfg.optim.lr)
    return [run.lr(t) for t in range(1, cfg.train.steps + 1)]


def test_plan_branches_step_decays_off_one_constant_run_per_peak_lr(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", SPEC, "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    runs = _plan(out)["runs"]
    # Per peak LR: ONE constant run at the longest horizon (the 24-step constant curve is its start),
    # cosine at both horizons from scratch, WSD and the two-step decay branched at both horizons.
    assert len(runs) == 3 * 7
    parents = [r for r in runs if r["settings"]["role"] == "parent"]
    assert [(p["settings"]["schedule"], p["steps"]) for p in parents] == [("constant", 48)] * 3
    assert all("train.checkpoint_at=[13,19,25,38]" in p["overrides"] for p in parents)
    by_id = {r["run_id"]: r for r in runs}
    branches = [r for r in runs if r["settings"]["role"] == "branch"]
    assert {r["settings"]["schedule"] for r in branches} == {"wsd_lin20", "two_step"} and len(branches) == 12
    for b in branches[:4]:
        parent = by_id[b["parent"]]
        s = b["start_step"]
        assert b["stage"] == 1 and s == b["settings"]["branch_step"]
        mine, flat = _lrs(_compose(b)), _lrs(_compose(parent))
        assert mine[:s] == flat[:s] and mine[s] != flat[s]  # the parent's LR exactly, up to the branch step
    # WSD 20% of 24 steps: stable through 24 - round(4.8) = 19; two-step: 2 + round(0.5 x 22) = 13.
    assert sorted({b["start_step"] for b in branches}) == [13, 19, 25, 38]
    assert "round 2" in proc.stdout


def test_every_law_is_fitted_and_predicts_every_group(finished):
    from harness.fit.registry import CURVE_LAWS, DEFAULT_CURVE_LAW, DEFAULT_PEAK_LR_LAW

    summary = json.loads((finished / "report.json").read_text())
    assert summary["law_order"][:2] == ["default", DEFAULT_CURVE_LAW]
    assert set(summary["law_order"]) == set(CURVE_LAWS) | {"default"}
    # the `default` row is the CLI's: the default law's curves, the peak-LR law's at other peak LRs
    laws = summary["laws"]
    for row, main, peak in zip(laws["default"]["curves"], laws[DEFAULT_CURVE_LAW]["curves"],
                               laws[DEFAULT_PEAK_LR_LAW]["curves"]):
        assert row == (peak if row["group"] == "peak_lr" else main)
    assert laws["default"]["groups"]["peak_lr"] == laws[DEFAULT_PEAK_LR_LAW]["groups"]["peak_lr"]
    assert laws["default"]["groups"]["horizon"] == laws[DEFAULT_CURVE_LAW]["groups"]["horizon"]
    for name, law in summary["laws"].items():
        assert law["error"] is None, name
        for group in ("horizon", "peak_lr", "schedules", "optimized"):
            assert 0 < law["groups"][group] < 0.5, (name, group)  # a relative error, not a blow-up
        groups = {c["group"] for c in law["curves"]}
        assert groups == {"fit", "horizon", "peak_lr", "schedules", "optimized"}
    # 3 fit curves; horizon: the fit schedules at 48 steps; peak_lr: 2 LRs x 4 schedules x 2 horizons;
    # schedules: two_step at both horizons; optimized: seed 0.
    counts = {}
    for c in summary["laws"][DEFAULT_CURVE_LAW]["curves"]:
        counts[c["group"]] = counts.get(c["group"], 0) + 1
    assert counts == {"fit": 3, "horizon": 3, "peak_lr": 16, "schedules": 2, "optimized": 1}
    markdown = (finished / "report.md").read_text()
    table_rows = [line for line in markdown.splitlines() if line.startswith("| ") and "%" in line]
    assert [row.split("|")[1].strip() for row in table_rows[:len(CURVE_LAWS) + 1]] == summary["law_order"]
    with open(finished / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["law"] for r in rows} == set(summary["law_order"]) and len(rows) == (len(CURVE_LAWS) + 1) * 25
    for name in summary["law_order"]:
        assert (finished / f"overlay_{name}.png").stat().st_size > 10_000


def test_optimized_schedule_is_trained_exactly_as_written(finished):
    """The YAML loads as a schedule config, and the trainer ran those LRs step by step."""
    from harness.config import schedule_config
    from harness.schedules import build_schedule

    summary = json.loads((finished / "report.json").read_text())
    opt = summary["optimization"]
    loaded = schedule_config(**yaml.safe_load((finished / "optimized_schedule.yaml").read_text()))
    assert loaded.knot_multipliers == opt["schedule"]["knot_multipliers"]
    written = np.loadtxt(finished / "optimized_schedule_lr.csv", delimiter=",", skiprows=1)
    assert written[:, 0].tolist() == list(range(1, opt["total_steps"] + 1))
    run = build_schedule(loaded, total_steps=opt["total_steps"], peak_lr=opt["peak_lr"])
    assert [run.lr(t) for t in range(1, opt["total_steps"] + 1)] == written[:, 1].tolist()
    trained = [r for r in _plan(finished)["runs"] if r["settings"]["role"] == "optimized"]
    assert len(trained) == 2
    for r in trained:
        cfg = _compose(r)
        assert cfg.schedule.name == "piecewise" and _lrs(cfg) == written[:, 1].tolist()
        rows = [json.loads(line) for line in (Path(r["run_dir"]) / "curve.jsonl").open()]
        assert np.allclose([row["lr"] for row in rows], written[:, 1], rtol=1e-9, atol=0)


def test_optimized_schedule_yaml_is_a_schedule_preset(finished, tmp_path):
    """Copied into conf/schedule/, `schedule=optimized` composes the same schedule through Hydra."""
    import shutil

    from hydra import compose, initialize_config_dir

    from harness.config import register_configs, to_run_config

    conf = tmp_path / "conf"
    shutil.copytree(Path(__file__).resolve().parents[1] / "conf", conf)
    shutil.copy(finished / "optimized_schedule.yaml", conf / "schedule" / "optimized.yaml")
    register_configs()
    with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
        cfg = to_run_config(compose(config_name="config", overrides=["schedule=optimized", "train=tiny"]))
    opt = json.loads((finished / "report.json").read_text())["optimization"]
    assert cfg.schedule.name == "piecewise"
    assert cfg.schedule.knot_fractions == opt["schedule"]["knot_fractions"]
    assert cfg.schedule.knot_multipliers == opt["schedule"]["knot_multipliers"]
    assert cfg.schedule.warmup_steps == opt["schedule"]["warmup_steps"]


def test_round_two_compares_seed_by_seed_with_intervals(finished):
    summary = json.loads((finished / "report.json").read_text())
    opt = summary["optimization"]
    assert opt["predicted_final"] <= min(opt["predicted_references"].values()) + 1e-9
    for name in ("cosine", "wsd_lin20"):
        c = opt["comparisons"][name]
        assert c["seeds"] == [0, 1] and c["n"] == 2
        diffs = np.array(c["optimized"]) - np.array(c["compare"])
        assert c["mean"] == pytest.approx(diffs.mean())
        lo, hi = c["interval"]
        assert lo < c["mean"] < hi
    seeds = sorted({r["settings"]["seed"] for r in _plan(finished)["runs"] if r["settings"]["role"] == "compare"})
    assert seeds == [0, 1000]
    assert "## Schedule optimization" in (finished / "report.md").read_text()


def test_relaunch_and_replan_keep_every_run(module_env, finished):
    before = [r["run_id"] for r in _plan(finished)["runs"]]
    proc = experiment(module_env, "run", SPEC, "--dir", str(finished), in_process=True)  # launches nothing
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["run_id"] for r in _plan(finished)["runs"]] == before
    assert "round 2:" not in proc.stdout


@pytest.mark.parametrize("override, field", [
    ("curve_prediction.fit_schedules=[constant,cosinus]", "curve_prediction.fit_schedules[1]"),
    ("curve_prediction.optimize.compare=[wsd]", "curve_prediction.optimize.compare[0]"),
    ("curve_prediction.horizons=[2,48]", "curve_prediction.horizons"),
    ("curve_prediction.fit_lr=0.5", "curve_prediction.fit_lr"),
    ("curve_prediction.schedules.cosine=[optim.lr=1e-3]", "curve_prediction.schedules.cosine"),
    ("curve_prediction.optimize.law=nope", "curve_prediction.optimize.law"),
])
def test_bad_spec_exits_2_naming_the_field(module_env, tmp_path, override, field):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", SPEC, override, "--dir", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert field in proc.stderr
    assert not out.exists()


def test_group_of_puts_each_curve_in_one_group():
    from harness.experiment.curve_prediction import CurveKey, OptimizeConfig, CurvePredictionKind
    from harness.experiment.curve_prediction_report import group_of

    p = CurvePredictionKind.Config(horizons=[100, 200], peak_lrs=[1e-3, 2e-3, 4e-3], schedules={
        "constant": ["schedule=constant"], "cosine": ["schedule=cosine"], "wsd": ["schedule=wsd"],
        "step": ["schedule=step"]}, fit_schedules=["constant", "cosine", "wsd"], optimize=OptimizeConfig())
    assert p.fit_peak_lr == 2e-3 and p.fit_horizon == 100
    assert group_of(CurveKey("cosine", 100, 2e-3), p) == "fit"
    assert group_of(CurveKey("cosine", 200, 2e-3), p) == "horizon"
    assert group_of(CurveKey("step", 100, 2e-3), p) == "schedules"
    assert group_of(CurveKey("step", 200, 2e-3), p) == "schedules"
    assert group_of(CurveKey("cosine", 100, 4e-3), p) == "peak_lr"
    assert group_of(CurveKey("optimized", 100, 2e-3), p) == "optimized"
    assert group_of(CurveKey("optimized", 100, 2e-3, seed_index=1), p) is None


@pytest.mark.parametrize("spec, steps, lrs", [
    ("curve_prediction_cpu", (300, 600), (3e-3, 6e-3, 1.2e-2)),
    ("curve_prediction_gpu", (10000, 20000), (7.5e-4, 1.5e-3, 3e-3)),
])
def test_cpu_and_gpu_presets_plan_every_schedule_horizon_and_peak_lr(module_env, tmp_path, spec, steps, lrs):
    """The presets of issue 12: 8 schedules x 2 horizons x 3 peak LRs, WSD / step runs branched, a
    constant parent per LR at the longest horizon; planned only (nothing downloaded or trained)."""
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", spec, "--dir", str(out), "--tokens-per-s", "4e5")
    assert proc.returncode == 0, proc.stderr
    runs = _plan(out)["runs"]
    assert len(runs) == 3 * (1 + 2 * 2 + 5 * 2)  # parent + cosine x 2 from scratch + 5 branched x 2 horizons
    keys = {(r["settings"]["schedule"], r["settings"]["horizon"], r["settings"]["peak_lr"]) for r in runs}
    schedules = {k[0] for k in keys}
    assert schedules == {"constant", "cosine", "cosine_10", "wsd_lin10", "wsd_lin20", "wsd_lin40", "wsd_sqrt20", "two_step"}
    assert {k[2] for k in keys} == set(lrs) and {k[1] for k in keys} == set(steps)
    assert {r["settings"]["schedule"] for r in runs if r["settings"]["role"] == "branch"} == \
        {"wsd_lin10", "wsd_lin20", "wsd_lin40", "wsd_sqrt20", "two_step"}
    # Branching spends the parent once plus each branch's own steps: about half of independent runs.
    own = sum(r["steps"] - r["start_step"] for r in runs)
    assert own < 0.55 * 8 * sum(steps) * 3
    assert not (out / "runs").exists()
