"""Batched proxies (harness/batched/): K runs of one shape as one stacked model.

Each run of a batch must be its separate run: same directory (identity hash), same files, losses
within 1e-5 relative over 200 steps on CPU fp32 (deterministic), resume after SIGKILL exact, and a
batched checkpoint that `python -m harness.train` resumes as its own.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, read_rows

COMMON = ["train.deterministic=true", "train.num_threads=1"]


def batched_cmd(sweep_dir: Path, *overrides: str) -> list[str]:
    return [sys.executable, "-m", "harness.train_batched", "--sweep-dir", str(sweep_dir), *TINY, *COMMON, *overrides]


def separate_cmd(sweep_dir: Path, *overrides: str) -> list[str]:
    """The same sweep as separate runs: a Hydra multirun, each job in sweep_dir/<hash>."""
    return [sys.executable, "-m", "harness.train", "-m", f"hydra.sweep.dir={sweep_dir}", *TINY, *COMMON, *overrides]


def run(cmd: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def run_dirs(sweep_dir: Path) -> dict[str, Path]:
    return {p.name: p for p in sweep_dir.iterdir() if (p / "config.yaml").exists()}


def max_rel(a: list[float], b: list[float]) -> float:
    return max(abs(x - y) / abs(y) for x, y in zip(a, b, strict=True))


# LR, seed and schedule differ per run (init scale: the checkpoint test); the shape is shared.
SWEEP = ["train.steps=200", "train.checkpoint_every=50", "optim.lr=1e-3,4e-3", "train.seed=0,1",
         "schedule=cosine,wsd"]


def test_batched_runs_match_their_separate_runs(train_env, tmp_path):
    run(batched_cmd(tmp_path / "batched", *SWEEP), train_env)
    run(separate_cmd(tmp_path / "separate", *SWEEP), train_env)
    batched, separate = run_dirs(tmp_path / "batched"), run_dirs(tmp_path / "separate")
    assert len(batched) == 8 and batched.keys() == separate.keys()  # same identity hashes
    worst = 0.0
    for run_id, b_dir in batched.items():
        s_dir = separate[run_id]
        assert sorted(p.name for p in b_dir.iterdir() if not p.name.startswith(".")) == \
            sorted(p.name for p in s_dir.iterdir() if not p.name.startswith("."))
        assert sorted(p.name for p in (b_dir / "checkpoints").iterdir()) == \
            sorted(p.name for p in (s_dir / "checkpoints").iterdir())
        b_rows, s_rows = read_rows(b_dir), read_rows(s_dir)
        assert [r["step"] for r in b_rows] == list(range(1, 201))
        assert [list(r) for r in b_rows] == [list(r) for r in s_rows]  # same columns at the same steps
        worst = max(worst, max_rel([r["loss"] for r in b_rows], [r["loss"] for r in s_rows]))
        val = [(r["val_loss"], q["val_loss"]) for r, q in zip(b_rows, s_rows) if "val_loss" in q]
        assert max_rel(*zip(*val)) <= 1e-5
        assert [r["lr"] for r in b_rows] == [r["lr"] for r in s_rows]
        b_status, s_status = (json.loads((d / "status.json").read_text()) for d in (b_dir, s_dir))
        assert b_status["state"] == "completed" and b_status.keys() == s_status.keys()
        assert b_status["params"] == s_status["params"] and b_status["tokens"] == s_status["tokens"]
    assert worst <= 1e-5, worst
    print(f"worst relative loss difference over 8 runs x 200 steps: {worst:.3g}")


def test_batched_checkpoint_has_the_separate_format(train_env, tmp_path):
    sweep = ["train.steps=10", "optim.lr=1e-3,2e-3", "model.init_std=0.02,0.04", "train.checkpoint_every=5"]
    run(batched_cmd(tmp_path / "batched", *sweep), train_env)
    run(separate_cmd(tmp_path / "separate", *sweep), train_env)
    for run_id, b_dir in run_dirs(tmp_path / "batched").items():
        b = torch.load(b_dir / "checkpoints" / "step_00000010.pt", weights_only=True)
        s = torch.load(tmp_path / "separate" / run_id / "checkpoints" / "step_00000010.pt", weights_only=True)
        assert b.keys() == s.keys() and b["step"] == s["step"] == 10
        assert b["model"].keys() == s["model"].keys()
        for name in s["model"]:
            torch.testing.assert_close(b["model"][name], s["model"][name], rtol=1e-5, atol=1e-7)
        assert b["optimizer"]["param_groups"] == s["optimizer"]["param_groups"]
        for idx, state in s["optimizer"]["state"].items():
            assert b["optimizer"]["state"][idx].keys() == state.keys()
            assert float(b["optimizer"]["state"][idx]["step"]) == float(state["step"]) == 10
            torch.testing.assert_close(b["optimizer"]["state"][idx]["exp_avg"], state["exp_avg"], rtol=1e-4, atol=1e-8)
        assert torch.equal(b["rng"]["torch"], s["rng"]["torch"])


def test_separate_trainer_resumes_a_batched_checkpoint(train_env, tmp_path):
    """Indistinguishable: cut a batched run back to its step-10 checkpoint and let harness.train finish it."""
    sweep = ["train.steps=20", "train.checkpoint_every=10", "train.keep_checkpoints=3", "optim.lr=1e-3,3e-3"]
    run(batched_cmd(tmp_path / "batched", *sweep), train_env)
    run(separate_cmd(tmp_path / "separate", *sweep), train_env)
    run_id, b_dir = sorted(run_dirs(tmp_path / "batched").items())[0]
    (b_dir / "status.json").unlink()
    (b_dir / "checkpoints" / "step_00000020.pt").unlink()
    overrides = json.loads(json.dumps(["train.steps=20", "train.checkpoint_every=10", "train.keep_checkpoints=3"]))
    lr = next(line.split(":")[1].strip() for line in (b_dir / "config.yaml").read_text().splitlines()
              if line.strip().startswith("lr:"))
    run([sys.executable, "-m", "harness.train", *TINY, *COMMON, *overrides, f"optim.lr={lr}", f"run_dir={b_dir}"],
        train_env)
    status = json.loads((b_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["resumed_from"] == 10
    rows, ref = read_rows(b_dir), read_rows(tmp_path / "separate" / run_id)
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert max_rel([r["loss"] for r in rows], [r["loss"] for r in ref]) <= 1e-5


def test_sigkill_and_relaunch_of_a_batch_is_exact(train_env, tmp_path):
    sweep = ["train.steps=150", "train.checkpoint_every=20", "train.eval_every=50", "optim.lr=1e-3,3e-3",
             "schedule=cosine,wsd"]
    run(batched_cmd(tmp_path / "reference", *sweep), train_env)
    killed = tmp_path / "killed"
    child = subprocess.Popen(batched_cmd(killed, *sweep), cwd=ROOT, env=train_env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        curves = list(killed.glob("*/curve.jsonl"))
        if len(curves) == 4 and min(sum(1 for _ in open(c)) for c in curves) >= 50:
            break
        time.sleep(0.01)
    assert child.poll() is None, child.stderr.read()
    child.send_signal(signal.SIGKILL)
    child.wait()
    rows_at_kill = {p.parent.name: len(read_rows(p.parent)) for p in killed.glob("*/curve.jsonl")}
    assert all(50 <= n < 150 for n in rows_at_kill.values()), rows_at_kill

    run(batched_cmd(killed, *sweep), train_env)
    reference = run_dirs(tmp_path / "reference")
    for run_id, k_dir in run_dirs(killed).items():
        status = json.loads((k_dir / "status.json").read_text())
        assert status["state"] == "completed" and status["resumed_from"] % 20 == 0
        rows, ref = read_rows(k_dir), read_rows(reference[run_id])
        assert [r["step"] for r in rows] == list(range(1, 151))  # no row lost or doubled
        assert [r["loss"] for r in rows] == [r["loss"] for r in ref]  # bit-identical to the uninterrupted batch
        assert [r.get("val_loss") for r in rows] == [r.get("val_loss") for r in ref]


def test_grouping_batches_compatible_runs_and_names_why_others_run_alone():
    from harness.batched.compat import group_runs
    from harness.ladder.overrides import compose_base

    base = ["model=llama_tiny", "train=tiny"]
    cfgs = [compose_base(tuple([*base, *extra])) for extra in (
        ["optim.lr=1e-3"], ["optim.lr=2e-3", "train.seed=3"], ["optim=sgd"], ["model.d_model=64"],
        ["optim.lr=4e-3", "schedule=wsd", "model.init_std=0.05"], ["model=moe_tiny"])]
    grouping = group_runs(cfgs, batch_runs=2)
    assert grouping.batches == [[0, 1]]  # 4 has the shape of 0 and 1, but batches hold 2
    reasons = dict(grouping.separate)
    assert set(reasons) == {2, 3, 4, 5}
    assert "optim.name=sgd" in reasons[2] and "model.arch=moe" in reasons[5]
    assert group_runs(cfgs, batch_runs=8).batches == [[0, 1, 4]]


def test_mixture_and_eval_runs_train_separately():
    """The stacked trainer reads one val set and runs no hooks: a data mixture (per-source val sets)
    and downstream evals during training fall back to separate runs, with the reason named."""
    from harness.batched.compat import group_runs
    from harness.ladder.overrides import compose_base

    base = ["model=llama_tiny", "train=tiny"]
    cfgs = [compose_base(tuple([*base, *extra])) for extra in (
        ["optim.lr=1e-3"], ["optim.lr=2e-3"], ["data=prose_code"], ["train.eval_tasks=[pydoc_cloze]"])]
    grouping = group_runs(cfgs, batch_runs=4)
    assert grouping.batches == [[0, 1]]
    reasons = dict(grouping.separate)
    assert "data.sources" in reasons[2] and "train.eval_tasks" in reasons[3]


def test_a_diverging_run_fails_alone_and_the_batch_goes_on(train_env, tmp_path):
    sweep = ["optim.lr=1e-3,1e30", "train.grad_clip=0", "schedule.warmup_steps=0", "train.checkpoint_every=1"]
    proc = subprocess.run(batched_cmd(tmp_path / "batched", *sweep), cwd=ROOT, env=train_env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-3000:]  # the worst run's code: non-finite loss
    states = {}
    for run_dir in run_dirs(tmp_path / "batched").values():
        status = json.loads((run_dir / "status.json").read_text())
        states[status["state"]] = (status, run_dir)
    assert states.keys() == {"failed", "completed"}
    failed, failed_dir = states["failed"]
    assert "non-finite" in failed["reason"]
    assert len(read_rows(failed_dir)) == failed["step"] - 1  # the bad step is not logged
    assert sorted(p.name for p in (failed_dir / "checkpoints").iterdir())[-1] == f"step_{failed['step'] - 1:08d}.pt"
    completed, completed_dir = states["completed"]
    assert completed["step"] == 20 and [r["step"] for r in read_rows(completed_dir)] == list(range(1, 21))


def test_bad_sweep_exits_2_naming_the_field_and_writes_nothing(train_env, tmp_path):
    proc = subprocess.run(batched_cmd(tmp_path / "sweep", "optim.lrr=1e-3,2e-3"), cwd=ROOT, env=train_env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "optim.lrr" in proc.stderr
    assert not (tmp_path / "sweep").exists()
