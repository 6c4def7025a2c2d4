"""`batch_runs: K` in an experiment spec: the launcher groups runs of one shape into stacked jobs
(harness/experiment/launch.py, harness/experiment/job.py), and each run ends as it would alone."""

from __future__ import annotations

import json

from conftest import read_rows, run_experiment as experiment


# grid_tiny's base, deterministic (the two launches are compared to 1e-5).
BASE = ("base=[model=llama_tiny,train=tiny,schedule.warmup_steps=2,data.max_chars=300000,data.vocab_size=300,"
        "data.val_tokens=4096,logging.progress=false,logging.plot=false,train.deterministic=true]")


def test_batch_runs_groups_the_grid_into_one_stacked_job(module_env, tmp_path):
    batched, separate = tmp_path / "batched", tmp_path / "separate"
    proc = experiment(module_env, "run", "grid_tiny", "batch_runs=4", BASE, "--dir", str(batched), "--launcher", "local")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "as 1 job(s), 1 of them batched (0+1+2+3)" in out
    assert "training 4 runs as one batch" in out
    proc = experiment(module_env, "run", "grid_tiny", BASE, "--dir", str(separate), "--launcher", "local")
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    plan = json.loads((batched / "plan.json").read_text())
    assert plan["spec"]["batch_runs"] == 4
    for run in plan["runs"]:
        b_dir, s_dir = batched / "runs" / run["run_id"], separate / "runs" / run["run_id"]
        assert json.loads((b_dir / "status.json").read_text())["state"] == "completed"
        b_rows, s_rows = read_rows(b_dir), read_rows(s_dir)
        assert [r["step"] for r in b_rows] == list(range(1, 21))
        assert max(abs(b["loss"] - s["loss"]) / s["loss"] for b, s in zip(b_rows, s_rows)) <= 1e-5

    relaunch = experiment(module_env, "run", "grid_tiny", "batch_runs=4", BASE, "--dir", str(batched),
                          "--launcher", "local", in_process=True)  # launches nothing
    assert relaunch.returncode == 0 and "nothing to launch" in relaunch.stdout


def test_runs_of_other_shapes_or_optimizers_stay_separate_jobs():
    from harness.experiment.launch import job_units
    from harness.ladder.overrides import compose_base  # noqa: F401  (composes conf/ as harness.train does)

    base = ["model=llama_tiny", "train=tiny"]
    runs = [[*base, "optim.lr=1e-3"], [*base, "optim=sgd"], [*base, "optim.lr=2e-3"], [*base, "model.d_model=64"],
            [*base, "optim.lr=4e-3"]]
    plan = {"spec": {"batch_runs": 2}, "runs": [{"train_overrides": r} for r in runs]}
    assert job_units(plan, [0, 1, 2, 3, 4]) == ["0+2", "1", "3", "4"]
    plan["spec"]["batch_runs"] = 1
    assert job_units(plan, [0, 1, 2, 3, 4]) == ["0", "1", "2", "3", "4"]
