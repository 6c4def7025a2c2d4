"""End-to-end runs of `python -m harness.train` in real subprocesses.

Covers: the run directory contents, bad config rejected before any compute (and nothing written),
SIGKILL + resume bit-identical to an uninterrupted run, NaN handling, skip of completed runs,
refusal to resume under a changed config, and the wandb mirror (offline mode).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, TINY, read_rows, run_train, train_cmd, wait_for_rows


# Runs that several tests read, trained once per module (a launch costs ~4 s of interpreter start).
# Tests that change a run directory work on a copy (`run_dir` is not part of a run's identity).
# The uninterrupted run the kill / preemption tests compare with: deterministic, one thread.
RESUMABLE = ["train.steps=200", "train.checkpoint_every=20", "train.deterministic=true", "train.num_threads=1",
             "train.eval_every=50"]


@pytest.fixture(scope="module")
def completed_run(harness_cache, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """A TINY run to its end (with the loss plot), and its launch."""
    run_dir = tmp_path_factory.mktemp("completed") / "run"
    return run_dir, run_train(module_train_env(harness_cache, tmp_path_factory), f"run_dir={run_dir}",
                              "logging.plot=true")


@pytest.fixture(scope="module")
def uninterrupted(harness_cache, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    proc = run_train(module_train_env(harness_cache, tmp_path_factory), f"run_dir={run_dir}", *RESUMABLE)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def module_train_env(harness_cache, tmp_path_factory) -> dict[str, str]:
    """conftest's `train_env`, for module-scoped fixtures (which cannot use a function-scoped one)."""
    from conftest import training_env

    return training_env(harness_cache, tmp_path_factory.mktemp("hf_home"))


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    return copy


def test_run_writes_complete_run_directory(completed_run):
    run_dir, proc = completed_run
    assert proc.returncode == 0, proc.stderr
    for name in ("config.yaml", "env.json", "curve.jsonl", "status.json", "curve.png", "tokenizer/tokenizer.json"):
        assert (run_dir / name).is_file(), name
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 21))
    for row in rows:
        for key in ("step", "tokens", "flops", "lr", "loss", "grad_norm", "tokens_per_s"):
            assert key in row, key
    assert rows[-1]["tokens"] == 20 * 4 * 32
    # FLOPs grow linearly with tokens at the model's documented rate.
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "completed" and status["step"] == 20
    assert rows[-1]["flops"] == pytest.approx(status["flops_per_token"] * rows[-1]["tokens"])
    # Eval steps: log-spaced early, every eval_every (10), and the last step.
    val_steps = [r["step"] for r in rows if "val_loss" in r]
    assert {1, 2, 4, 8, 10, 16, 20} <= set(val_steps)
    assert rows[-1]["val_loss"] == pytest.approx(status["final_val_loss"])
    # The saved config is resolved: vocab size filled in from the tokenizer.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["model"]["vocab_size"] == 300 or saved["model"]["vocab_size"] >= 256
    assert saved["train"]["steps"] == 20
    env = json.loads((run_dir / "env.json").read_text())
    assert env["seed"] == 0 and env["torch"] and "data_manifest" in env
    # Training actually learns something on real text.
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.3
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step_00000015.pt", "step_00000020.pt"]  # keep-last-2


@pytest.mark.parametrize(
    "override, needle",
    [
        ("train.stpes=10", "stpes"),  # misspelled key
        ("train.steps=many", "steps"),  # wrong type
        ("model.n_heads=3", "model.d_model"),  # semantic: 32 not divisible by 3
        ("schedule.cooldown=quadratic", "schedule.cooldown"),
    ],
)
def test_bad_config_fails_before_compute_and_writes_nothing(train_env, tmp_path, override, needle):
    run_dir = tmp_path / "run"
    proc = run_train(train_env, f"run_dir={run_dir}", override, timeout=120)
    assert proc.returncode != 0
    assert needle in proc.stderr + proc.stdout
    assert not run_dir.exists()


def test_sigkill_and_resume_is_bit_identical(train_env, tmp_path, uninterrupted):
    common, reference = RESUMABLE, uninterrupted
    killed = tmp_path / "killed"
    child = subprocess.Popen(train_cmd(f"run_dir={killed}", *common), cwd=ROOT, env=train_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(killed / "curve.jsonl", 50, child)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    rows_at_kill = read_rows(killed)
    assert 50 <= len(rows_at_kill) < 200
    status = json.loads((killed / "status.json").read_text())
    assert status["state"] == "running"  # a killed run cannot say anything else

    proc = run_train(train_env, f"run_dir={killed}", *common)
    assert proc.returncode == 0, proc.stderr
    status = json.loads((killed / "status.json").read_text())
    assert status["state"] == "completed"
    assert status["resumed_from"] is not None and status["resumed_from"] % 20 == 0
    assert status["resumed_from"] <= len(rows_at_kill)

    ref_rows, resumed_rows = read_rows(reference), read_rows(killed)
    assert [r["step"] for r in resumed_rows] == list(range(1, 201))  # no row duplicated or missing
    assert [r["loss"] for r in resumed_rows] == [r["loss"] for r in ref_rows]  # bit-identical
    assert [r.get("val_loss") for r in resumed_rows] == [r.get("val_loss") for r in ref_rows]
    assert [r["lr"] for r in resumed_rows] == [r["lr"] for r in ref_rows]


def test_nan_loss_stops_run_and_keeps_last_good_checkpoint(train_env, tmp_path):
    run_dir = tmp_path / "run"
    # An absurd LR with no clipping or warmup blows the weights up to inf within two steps.
    proc = run_train(train_env, f"run_dir={run_dir}", "optim.lr=1e30", "train.grad_clip=0",
                     "schedule.warmup_steps=0", "train.checkpoint_every=1")
    assert proc.returncode == 3, proc.stderr
    assert "non-finite training loss at step" in proc.stderr
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "failed"
    assert "non-finite" in status["reason"] and "optim.lr" in status["reason"]
    failed_step = status["step"]
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts and ckpts[-1] == f"step_{failed_step - 1:08d}.pt"
    assert status["last_checkpoint"] == ckpts[-1]
    assert len(read_rows(run_dir)) == failed_step - 1  # the bad step is not logged as a normal row


def test_completed_run_is_skipped(train_env, tmp_path, completed_run):
    assert completed_run[1].returncode == 0, completed_run[1].stderr
    run_dir = copy_of(completed_run[0], tmp_path)
    before = (run_dir / "curve.jsonl").read_bytes()
    proc = run_train(train_env, f"run_dir={run_dir}")
    assert proc.returncode == 0
    assert "already completed" in proc.stdout
    assert (run_dir / "curve.jsonl").read_bytes() == before
    # A different config pointed at a finished run is an error, not a silent skip.
    proc = run_train(train_env, f"run_dir={run_dir}", "optim.lr=1e-2")
    assert proc.returncode == 2 and "optim.lr" in proc.stderr
    assert (run_dir / "curve.jsonl").read_bytes() == before
    # The device is part of the run: `auto` was saved resolved, and the explicit equivalent is the
    # same run, while the other device (and the precision it implies) is not.
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())["train"]
    here = {"cpu": ("cpu", "fp32"), "cuda": ("cuda", "bf16")}[saved["device"]]
    assert (saved["device"], saved["precision"]) == here
    other = "cuda" if here[0] == "cpu" else "cpu"
    proc = run_train(train_env, f"run_dir={run_dir}", f"train.device={here[0]}", f"train.precision={here[1]}")
    assert proc.returncode == 0 and "already completed" in proc.stdout
    proc = run_train(train_env, f"run_dir={run_dir}", f"train.device={other}")
    assert proc.returncode == 2 and "train.device" in proc.stderr
    assert (run_dir / "curve.jsonl").read_bytes() == before


def test_run_killed_after_last_checkpoint_completes_with_its_real_final_losses(train_env, tmp_path, completed_run):
    """Killed between its final checkpoint and `completed` in status.json: the relaunch resumes at the
    last step, trains nothing, and must still report the final losses the curve holds."""
    assert completed_run[1].returncode == 0, completed_run[1].stderr
    run_dir = copy_of(completed_run[0], tmp_path)
    rows = read_rows(run_dir)
    status_file = run_dir / "status.json"
    status_file.write_text(json.dumps({"state": "running", "step": 0}))  # what a kill there leaves
    proc = run_train(train_env, f"run_dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(status_file.read_text())
    assert status["state"] == "completed" and status["step"] == 20 and status["resumed_from"] == 20
    assert status["final_loss"] == rows[-1]["loss"]
    assert status["final_val_loss"] == [r["val_loss"] for r in rows if "val_loss" in r][-1]
    assert status["tokens"] == rows[-1]["tokens"] and status["flops"] == rows[-1]["flops"]
    assert read_rows(run_dir) == rows  # nothing replayed or lost


def test_resume_refuses_changed_config(train_env, tmp_path):
    run_dir = tmp_path / "run"
    child = subprocess.Popen(train_cmd(f"run_dir={run_dir}", "train.steps=400", "train.checkpoint_every=10"),
                             cwd=ROOT, env=train_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(run_dir / "curve.jsonl", 15, child)
    child.kill()
    child.wait()
    proc = run_train(train_env, f"run_dir={run_dir}", "train.steps=400", "train.checkpoint_every=10",
                     "optim.lr=1e-2")
    assert proc.returncode == 2
    assert "optim.lr" in proc.stderr and "new run_dir" in proc.stderr


def test_wandb_offline_mirror_keeps_run_id_on_resume(train_env, tmp_path):
    run_dir = tmp_path / "run"
    args = [f"run_dir={run_dir}", "logging=wandb", "logging.progress=false", "logging.plot=false",
            "train.steps=200", "train.checkpoint_every=10"]
    child = subprocess.Popen(train_cmd(*args), cwd=ROOT, env=train_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(run_dir / "curve.jsonl", 25, child)
    child.kill()
    child.wait()
    run_id = (run_dir / "wandb_id.txt").read_text().strip()
    proc = run_train(train_env, *args)
    assert proc.returncode == 0, proc.stderr
    assert (run_dir / "wandb_id.txt").read_text().strip() == run_id
    offline_runs = sorted((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline_runs) >= 2  # one per launch, same id
    assert all((d / f"run-{run_id}.wandb").stat().st_size > 0 for d in offline_runs)


def test_grad_accumulation_ddp_and_fsdp_match_single_process(train_env, tmp_path):
    """The same global batch split into micro-batches, or across 2 ranks with DDP or FSDP2 (torchrun,
    gloo), gives the same curve up to float reduction order."""
    common = ["train.steps=8", "train.batch_size=4", "train.deterministic=true"]
    single, accum, ddp = tmp_path / "single", tmp_path / "accum", tmp_path / "ddp"
    assert run_train(train_env, f"run_dir={single}", *common).returncode == 0
    assert run_train(train_env, f"run_dir={accum}", *common, "train.micro_batch_size=1").returncode == 0
    fsdp = tmp_path / "fsdp"
    for run_dir, mode in ((ddp, "ddp"), (fsdp, "fsdp")):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "harness.train", *TINY, f"run_dir={run_dir}", *common, f"train.parallel={mode}"]
        proc = subprocess.run(cmd, cwd=ROOT, env=train_env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
    reference = [r["loss"] for r in read_rows(single)]
    for other in (accum, ddp, fsdp):
        losses = [r["loss"] for r in read_rows(other)]
        assert losses == pytest.approx(reference, rel=1e-4, abs=1e-5)
    env = json.loads((ddp / "env.json").read_text())
    assert env["world_size"] == 2


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_preemption_signal_checkpoints_and_resume_continues_curve(train_env, tmp_path, sig, uninterrupted):
    common, reference = RESUMABLE, uninterrupted
    run_dir = tmp_path / "preempted"
    child = subprocess.Popen(train_cmd(f"run_dir={run_dir}", *common), cwd=ROOT, env=train_env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(run_dir / "curve.jsonl", 30, child)
    child.send_signal(sig)
    assert child.wait(timeout=120) == 75, child.stderr.read()
    status = json.loads((run_dir / "status.json").read_text())
    assert status["state"] == "preempted" and sig.name in status["reason"]
    stopped_at = status["step"]
    assert 30 <= stopped_at < 200
    # The step it stopped at was checkpointed, so nothing is replayed.
    assert status["last_checkpoint"] == f"step_{stopped_at:08d}.pt"
    assert len(read_rows(run_dir)) == stopped_at

    proc = run_train(train_env, f"run_dir={run_dir}", *common)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "status.json").read_text())["resumed_from"] == stopped_at
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 201))
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_rows(reference)]
