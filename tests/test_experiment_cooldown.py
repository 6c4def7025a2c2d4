"""Kind `cooldown_branches` (harness/experiment/cooldown.py): the plan (parents, branches from their
checkpoints, independent runs; stages), a real tiny run through the local launcher, the report
comparing the two Approach-3 fits, and bad specs. Also the repetition flag of `plan`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from conftest import run_experiment as experiment

TINY = [
    "base=[model=llama_tiny,data.max_chars=300000,data.val_tokens=4096,train.eval_every=10,"
    "train.eval_sequences=8,logging.progress=false,logging.plot=false]",
    "cooldown_branches.sizes=[d32,d64]",
    "cooldown_branches.tokens=[1280,2560,5120]",
    "cooldown_branches.batch_size=4",
    "cooldown_branches.seq_len=32",
    "cooldown_branches.vocab_size=300",
    "cooldown_branches.n_boot=20",
    "cooldown_branches.cooldown_fraction=0.2",
]






@pytest.fixture(scope="module")
def finished(module_env, tmp_path_factory) -> Path:
    """The tiny study, run once through the local launcher and reported."""
    out = tmp_path_factory.mktemp("cooldown") / "exp"
    proc = experiment(module_env, "run", "cooldown_cpu", *TINY, "name=cooldown_tiny", "--dir", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    report = experiment(module_env, "report", str(out))
    assert report.returncode == 0, report.stderr[-3000:]
    return out


def test_plan_has_parents_branches_and_independent_runs(module_env, tmp_path):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", "cooldown_cpu", *TINY, "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads((out / "plan.json").read_text())
    runs = plan["runs"]
    roles = [r["settings"]["role"] for r in runs]
    assert roles == ["parent", "branch", "branch", "branch", "independent", "independent", "independent"] * 2
    # 1280 tokens at 4 x 32 per step, cooldown 0.2: branch at round(10 / 1.2) = 8, cooldown 2, end 10.
    parent = runs[0]
    branches = runs[1:4]
    assert [b["start_step"] for b in branches] == [8, 17, 33]
    assert [b["steps"] for b in branches] == [10, 20, 40]
    assert parent["steps"] == 33 and "train.checkpoint_at=[8,17,33]" in parent["overrides"]
    for b, independent in zip(branches, runs[4:7]):
        assert b["stage"] == 1 and b["parent"] == parent["run_id"]
        assert f"train.init_from={parent['run_dir']}/checkpoints/step_{b['start_step']:08d}.pt" in b["train_overrides"]
        assert independent["stage"] == 0 and independent["steps"] == b["steps"] and independent["D"] == b["D"]
        assert "schedule=cosine" in independent["overrides"]
    with open(out / "plan.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[1]["stage"] == "1" and rows[1]["start_step"] == "8"
    assert int(rows[0]["unique_tokens"]) > 0 and float(rows[0]["epochs"]) < 1
    assert "stages: 2" in proc.stdout


def test_branch_schedule_is_the_parent_lr_then_a_cooldown_from_the_branch_step(module_env, tmp_path):
    """The branch's LR equals the constant parent's up to the branch step, then cools down to 0."""
    from harness.experiment.plan import compose_run
    from harness.schedules import build_schedule

    out = tmp_path / "exp"
    assert experiment(module_env, "plan", "cooldown_cpu", *TINY, "--dir", str(out)).returncode == 0
    runs = json.loads((out / "plan.json").read_text())["runs"]
    parent_cfg = compose_run([o for o in runs[0]["train_overrides"] if not o.startswith("run_dir=")], "parent")
    branch = runs[2]
    branch_cfg = compose_run([o for o in branch["train_overrides"] if not o.startswith("run_dir=")], "branch")
    lr = lambda cfg, t: build_schedule(cfg.schedule, total_steps=cfg.train.steps, peak_lr=cfg.optim.lr,
                                       batch_size=cfg.train.batch_size,
                                       tokens_per_step=cfg.train.batch_size * cfg.train.seq_len).lr(t)
    s = branch["start_step"]
    for t in range(1, s + 1):
        assert lr(branch_cfg, t) == pytest.approx(lr(parent_cfg, t), rel=1e-12)
    assert lr(branch_cfg, s + 1) < lr(parent_cfg, s + 1)
    assert lr(branch_cfg, branch["steps"]) == pytest.approx(0.0, abs=1e-12)


def test_run_trains_branches_from_their_parents_and_reports_both_fits(finished):
    plan = json.loads((finished / "plan.json").read_text())
    by_id = {r["run_id"]: r for r in plan["runs"]}
    for run in plan["runs"]:
        status = json.loads((Path(run["run_dir"]) / "status.json").read_text())
        assert status["state"] == "completed" and status["step"] == run["steps"]
        if run["settings"]["role"] == "branch":
            parent_rows = [json.loads(line) for line in (Path(by_id[run["parent"]]["run_dir"]) / "curve.jsonl").open()]
            rows = [json.loads(line) for line in (Path(run["run_dir"]) / "curve.jsonl").open()]
            assert [r["step"] for r in rows] == list(range(1, run["steps"] + 1))
            s = run["start_step"]
            assert [r["loss"] for r in rows[:s]] == [r["loss"] for r in parent_rows[:s]]  # continues the parent
    summary = json.loads((finished / "report.json").read_text())
    assert set(summary["fits"]) == {"branches", "independent"}
    for fit in summary["fits"].values():
        assert fit["n_points"] == 6 and set(fit["params"]) >= {"E", "A", "alpha", "B", "beta"}
    ratio = summary["compute"]["ratio"]
    assert 0 < ratio < 1  # one parent + short cooldowns cost less than every run from scratch
    assert summary["pointwise"]["matched"] == 6
    assert summary["goal_met"] in (True, False)
    markdown = (finished / "report.md").read_text()
    assert "## Compute" in markdown and "## Approach 3: parameters" in markdown
    assert (finished / "cooldown.png").stat().st_size > 10_000
    with open(finished / "runs.csv") as f:
        table = list(csv.DictReader(f))
    branch_rows = [r for r in table if r.get("branch_step")]
    assert sorted(int(float(r["branch_step"])) for r in branch_rows) == [8, 8, 17, 17, 33, 33]


def test_relaunch_trains_nothing(module_env, finished):
    proc = experiment(module_env, "launch", str(finished))
    assert proc.returncode == 0, proc.stderr
    assert "all 14 run(s) completed; nothing to launch" in proc.stdout


@pytest.mark.parametrize("override, field", [
    ("cooldown_branches.tokens=[1280]", "cooldown_branches.tokens"),
    ("cooldown_branches.sizes=[d33]", "cooldown_branches.sizes[0]"),
    ("cooldown_branches.cooldown=cubic", "cooldown_branches.cooldown"),
    ("cooldown_branches.independent=linear", "cooldown_branches.independent"),
    ("cooldown_branches.tokens=[1280,1300]", "cooldown_branches.tokens"),
])
def test_bad_spec_exits_2_naming_the_field(module_env, tmp_path, override, field):
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", "cooldown_cpu", *TINY, override, "--dir", str(out))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert field in proc.stderr
    assert not out.exists()


def test_plan_flags_runs_that_repeat_data(module_env, tmp_path):
    """D beyond the training split's unique tokens: the plan says so per run."""
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", "cooldown_cpu", *TINY, "cooldown_branches.tokens=[1280,600000]",
                      "cooldown_branches.sizes=[d32]", "--dir", str(out))
    assert proc.returncode == 0, proc.stderr
    rows = {int(r["index"]): r for r in csv.DictReader(open(out / "plan.csv"))}
    repeating = [i for i, r in rows.items() if float(r["epochs"]) > 1]
    assert repeating and all(int(rows[i]["D"]) > int(rows[i]["unique_tokens"]) for i in repeating)
    assert f"run #{repeating[0]} ({rows[repeating[0]]['run_id']}) repeats data" in proc.stdout


def test_no_wait_drives_the_stages_in_the_background(module_env, tmp_path):
    """`run --no-wait` on a staged plan returns at once; a background `launch` trains the parents,
    then the branches (submitit_local: one process per run)."""
    import time

    out = tmp_path / "exp"
    small = [*TINY, "cooldown_branches.sizes=[d32]", "cooldown_branches.independent=none"]
    started = time.time()
    proc = experiment(module_env, "run", "cooldown_cpu", *small, "--dir", str(out), "--launcher", "submitit_local", "--no-wait")
    assert proc.returncode == 0, proc.stderr
    assert "background process" in proc.stdout
    plan = json.loads((out / "plan.json").read_text())
    status_files = [Path(r["run_dir"]) / "status.json" for r in plan["runs"]]
    while time.time() - started < 300 and not all(
            f.is_file() and json.loads(f.read_text())["state"] == "completed" for f in status_files):
        time.sleep(1)
    states = [json.loads(f.read_text())["state"] if f.is_file() else "not started" for f in status_files]
    assert states == ["completed"] * 4, states
    logs = list((out / "launches").glob("*-stages.log"))
    assert len(logs) == 1 and "stage 1 of 2" in logs[0].read_text() and "stage 2 of 2" in logs[0].read_text()


def test_gpu_preset_is_planned(module_env, tmp_path):
    """conf/experiment/cooldown_gpu.yaml (30M-300M): valid, planned, nothing downloaded or trained."""
    out = tmp_path / "exp"
    proc = experiment(module_env, "plan", "cooldown_gpu", "--dir", str(out), "--tokens-per-s", "4e5")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads((out / "plan.json").read_text())["runs"]
    assert len(runs) == 4 * (1 + 6 + 6)
    n_non_embedding = sorted({r["N_non_embedding"] for r in runs})
    assert 25e6 < n_non_embedding[0] and n_non_embedding[-1] < 300e6
    assert "unique tokens not counted at plan time" in proc.stdout  # a hub dataset: not downloaded to plan
    assert not (out / "runs").exists()
