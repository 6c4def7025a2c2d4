"""Runs started from another run's checkpoint (train.init_from, harness/branch.py), and pinned
checkpoints (train.checkpoint_at).

The core claim: a cooldown branched off a constant-LR parent at step k is the run an independent
launch with the branch's schedule would have been (same losses, same LRs), and its curve is a full
curve whose first k rows are the parent's.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, read_rows, wait_for_rows
from harness.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from harness.config import ConfigError, to_run_config
from harness.identity import check_same_run, config_hash
from harness.train import config_yaml

# TINY with no schedule: each run here picks its own (Hydra refuses two values for one group).
BASE = [o for o in TINY if not o.startswith("schedule")] + ["train.deterministic=true"]
# The parent: a constant LR (the WSD stable phase) with a kept checkpoint at the branch step 6.
PARENT = ["schedule=constant", "schedule.warmup_steps=2", "train.steps=12", "train.checkpoint_at=[6]"]
# The branch's own schedule: WSD over 10 steps whose cooldown starts at 6 = 10 - round(0.4 * 10).
COOLDOWN = ["schedule=wsd", "schedule.warmup_steps=2", "schedule.decay_fraction=0.4", "train.steps=10"]


def train(env, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "harness.train", *BASE, *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def status(run_dir) -> dict:
    return json.loads((run_dir / "status.json").read_text())


def branch_point(parent_dir, step: int = 6) -> str:
    return str(parent_dir / "checkpoints" / f"step_{step:08d}.pt")


@pytest.fixture(scope="module")
def trained_parent(harness_cache, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The parent, trained once for the module (a launch costs ~4 s of interpreter start)."""
    from conftest import training_env

    run_dir = tmp_path_factory.mktemp("parent") / "run"
    return run_dir, train(training_env(harness_cache, tmp_path_factory.mktemp("hf_home")), f"run_dir={run_dir}",
                          *PARENT)


@pytest.fixture
def parent(trained_parent, tmp_path):
    """A copy of the parent at tmp_path/exp/runs/parent, so a test may branch beside it and collect both
    (`run_dir` is not part of a run's identity, and a branch names its parent by its checkpoint's path)."""
    run_dir, proc = trained_parent
    assert proc.returncode == 0, proc.stderr
    copy = tmp_path / "exp" / "runs" / "parent"
    shutil.copytree(run_dir, copy)
    return copy


def test_branch_equals_an_independent_run_and_starts_with_the_parents_rows(train_env, tmp_path, parent):
    # The pinned step 6 outlived keep-last-2 (checkpoints every 5: 5, 10, 12 rotate).
    assert [s for s, _ in list_checkpoints(parent / "checkpoints")] == [6, 10, 12]
    branch, independent = tmp_path / "exp" / "runs" / "branch", tmp_path / "independent"
    proc = train(train_env, f"run_dir={branch}", *COOLDOWN, f"train.init_from={branch_point(parent)}")
    assert proc.returncode == 0, proc.stderr
    assert "would not have trained as its parent" not in proc.stderr  # harness/branch.py's check agrees
    assert train(train_env, f"run_dir={independent}", *COOLDOWN).returncode == 0

    rows, reference, parent_rows = read_rows(branch), read_rows(independent), read_rows(parent)
    assert [r["step"] for r in rows] == list(range(1, 11))
    assert [r["lr"] for r in rows] == [r["lr"] for r in reference]  # exact
    assert [r["loss"] for r in rows] == pytest.approx([r["loss"] for r in reference], rel=1e-5)
    assert rows[:6] == parent_rows[:6]  # copied, as the parent wrote them
    assert rows[9]["val_loss"] == pytest.approx(reference[9]["val_loss"], rel=1e-5)
    # The cooldown really ran: the LR after step 6 is not the parent's constant.
    assert rows[9]["lr"] < rows[5]["lr"] == parent_rows[9]["lr"]
    assert "val_loss" in parent_rows[5]  # a pinned checkpoint step is also an eval step

    done = status(branch)
    assert done["state"] == "completed" and done["step"] == 10
    assert done["resumed_from"] == 6  # it trained steps 7..10 only: 1..6 are the parent's
    assert (done["init_from"], done["init_mode"], done["branch_step"]) == (branch_point(parent), "resume", 6)
    assert json.loads((branch / "env.json").read_text())["branch_step"] == 6
    assert "init_from" not in status(parent)  # ordinary runs: unchanged status.json

    from harness.collect import collect

    table = collect(tmp_path / "exp").set_index("run_dir")
    assert table.loc[str(branch), "branch_step"] == 6
    assert table.loc[str(branch), "init_from"] == branch_point(parent)
    assert table["branch_step"].isna()[str(parent)] and table["init_from"].isna()[str(parent)]


def test_pinned_checkpoints_survive_rotation(train_env, tmp_path):
    run_dir = tmp_path / "run"
    proc = train(train_env, f"run_dir={run_dir}", "schedule=constant", "train.steps=8", "train.keep_checkpoints=1",
                 "train.checkpoint_every=2", "train.checkpoint_at=[3,6]")
    assert proc.returncode == 0, proc.stderr
    assert [s for s, _ in list_checkpoints(run_dir / "checkpoints")] == [3, 6, 8]


def test_save_checkpoint_keeps_pinned_steps_outside_keep_last(tmp_path):
    for step in range(1, 8):
        save_checkpoint(tmp_path, step, {"step": step}, keep_last=2, pinned={2, 7})
    assert [s for s, _ in list_checkpoints(tmp_path)] == [2, 5, 6, 7]


@pytest.mark.parametrize("override, needle", [
    ("train.checkpoint_at=[0]", "train.checkpoint_at"),
    ("train.checkpoint_at=[301]", "train.checkpoint_at"),
    ("train.init_mode=copy", "train.init_mode"),
    ("train.init_from=/somewhere/model.pt", "train.init_from"),
])
def test_bad_branch_fields_are_config_errors(override, needle):
    key, value = override.split("=", 1)
    section, name = key.split(".")
    parsed = json.loads(value) if value.startswith("[") else value
    with pytest.raises(ConfigError, match=needle):
        to_run_config({"run_dir": "x", section: {name: parsed}})


def test_missing_parent_or_late_branch_step_exit_2_and_write_nothing(train_env, tmp_path, parent):
    missing = tmp_path / "nowhere" / "checkpoints" / "step_00000006.pt"
    run_dir = tmp_path / "branch"
    proc = train(train_env, f"run_dir={run_dir}", *COOLDOWN, f"train.init_from={missing}")
    assert proc.returncode == 2, proc.stderr
    assert f"train.init_from: {missing} does not exist; train the parent run first" in proc.stderr
    assert not run_dir.exists()

    # Branching at step 10 of a 10-step run (the parent has step 10: it exists) is refused up front.
    proc = train(train_env, f"run_dir={run_dir}", *COOLDOWN, f"train.init_from={branch_point(parent, 10)}")
    assert proc.returncode == 2, proc.stderr
    assert "train.init_from" in proc.stderr and "train.steps=10" in proc.stderr
    assert not run_dir.exists()


def test_preempted_branch_resumes_from_its_own_checkpoint(train_env, tmp_path):
    parent = tmp_path / "parent"
    assert train(train_env, f"run_dir={parent}", "schedule=constant", "schedule.warmup_steps=2", "train.steps=40",
                 "train.checkpoint_at=[20]").returncode == 0
    # 200 steps whose cooldown starts at the branch step: 200 - round(0.9 * 200) = 20.
    cooldown = ["schedule=wsd", "schedule.warmup_steps=2", "schedule.decay_fraction=0.9", "train.steps=200",
                "train.checkpoint_every=50", f"train.init_from={branch_point(parent, 20)}"]
    reference = tmp_path / "reference"
    assert train(train_env, f"run_dir={reference}", *cooldown).returncode == 0

    run_dir = tmp_path / "preempted"
    child = subprocess.Popen([sys.executable, "-m", "harness.train", *BASE, f"run_dir={run_dir}", *cooldown],
                             cwd=ROOT, env=train_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wait_for_rows(run_dir / "curve.jsonl", 40, child)  # 20 copied rows, then 20 of its own
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=120) == 75, child.stderr.read()
    stopped_at = status(run_dir)["step"]
    assert 40 <= stopped_at < 200
    # Without the parent's checkpoint, only the branch's own checkpoint can continue it.
    (parent / "checkpoints" / "step_00000020.pt").unlink()
    proc = train(train_env, f"run_dir={run_dir}", *cooldown)
    assert proc.returncode == 0, proc.stderr
    done = status(run_dir)
    assert done["resumed_from"] == stopped_at and done["branch_step"] == 20
    rows = read_rows(run_dir)
    assert [r["step"] for r in rows] == list(range(1, 201))
    assert [r["loss"] for r in rows] == [r["loss"] for r in read_rows(reference)]
    # Completed: relaunching skips it (the parent's checkpoint is gone, and not needed).
    assert train(train_env, f"run_dir={run_dir}", *cooldown).returncode == 0


def test_weights_mode_starts_at_step_0_from_the_parents_weights(train_env, tmp_path, parent, harness_cache):
    from harness.run import RunDir
    from harness.runtime import Runtime
    from harness.train import starting_trainer, tokens_rank0_first
    from harness.branch import open_parent

    checkpoint = branch_point(parent)
    cfg = to_run_config({"model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "max_seq_len": 32},
                         "data": {"max_chars": 300000, "vocab_size": 300, "val_tokens": 4096,
                                  "cache_dir": str(harness_cache)},
                         "train": {"steps": 4, "seq_len": 32, "batch_size": 4, "init_from": checkpoint,
                                   "init_mode": "weights"},
                         "run_dir": str(tmp_path / "fine_tune")})
    rt = Runtime(device=torch.device("cpu"), autocast_dtype=None)
    trainer = starting_trainer(cfg, rt, tokens_rank0_first(cfg, rt), RunDir(tmp_path / "fine_tune"), open_parent(cfg))
    expected = load_checkpoint(parent / "checkpoints" / "step_00000006.pt")["model"]
    loaded = trainer.model.module.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[k], expected[k]) for k in expected)
    assert trainer.step == 0 and not trainer.model.optimizer.state  # a fresh optimizer

    run_dir = tmp_path / "fine_tune_run"
    proc = train(train_env, f"run_dir={run_dir}", "schedule=constant", "train.steps=3",
                 f"train.init_from={checkpoint}", "train.init_mode=weights")
    assert proc.returncode == 0, proc.stderr
    assert [r["step"] for r in read_rows(run_dir)] == [1, 2, 3]  # no rows copied
    assert (status(run_dir)["init_mode"], status(run_dir)["branch_step"]) == ("weights", 6)
    # Starting from the trained weights, its first loss is far below a fresh model's.
    assert read_rows(run_dir)[0]["loss"] < read_rows(parent)[0]["loss"] - 0.3


def branch_cfg(experiment_dir: str, step: int = 6, parent_hash: str = "0123456789ab", **train):
    return to_run_config({"run_dir": "x", "train": {"device": "cpu", "steps": 10, **train,
                                                    "init_from": f"{experiment_dir}/runs/{parent_hash}/checkpoints/"
                                                                 f"step_{step:08d}.pt"}})


def test_identity_of_ordinary_runs_unchanged_and_of_branches_location_free():
    # The default config's hash as computed before init_from / init_mode / checkpoint_at existed.
    assert config_hash(to_run_config({"run_dir": "x", "train": {"device": "cpu"}})) == "2620581fa350"
    plain = to_run_config({"run_dir": "x", "train": {"device": "cpu", "steps": 10}})
    assert config_hash(to_run_config({"run_dir": "x", "train": {"device": "cpu", "steps": 10,
                                                                "checkpoint_at": [3, 6]}})) == config_hash(plain)

    here, there = branch_cfg("/home/a/experiments/cooldown"), branch_cfg("relative/moved")
    assert config_hash(here) == config_hash(there)
    check_same_run(config_yaml(here), there)  # a moved experiment resumes its branches
    assert config_hash(here) != config_hash(plain)
    assert config_hash(branch_cfg("/e", step=4)) != config_hash(branch_cfg("/e"))
    assert config_hash(branch_cfg("/e", parent_hash="ba9876543210")) != config_hash(branch_cfg("/e"))
    assert config_hash(branch_cfg("/e", init_mode="weights")) != config_hash(branch_cfg("/e"))


def test_branch_unlike_its_parent_before_the_branch_step_is_warned(parent, harness_cache, capsys):
    """A warmup given as a fraction of the branch's own (shorter) length, and another seed: the
    branch's rows 1..6 would not be the parent's, and the warning says where."""
    from harness.branch import open_parent

    def branch(**changes):
        train_cfg = {"steps": 10, "seq_len": 32, "batch_size": 4, "eval_sequences": 16, "deterministic": True,
                     "init_from": branch_point(parent), **changes.pop("train", {})}
        return to_run_config({
            "model": {"arch": "llama", "d_model": 32, "n_layers": 2, "n_heads": 2, "n_kv_heads": 1, "max_seq_len": 32,
                      "vocab_size": 300},
            "data": {"max_chars": 300000, "vocab_size": 300, "val_tokens": 4096, "cache_dir": str(harness_cache)},
            "schedule": {"name": "wsd", "decay_fraction": 0.4, **changes.pop("schedule", {"warmup_steps": 2})},
            "train": train_cfg, "run_dir": "x"})

    open_parent(branch())
    assert "warning" not in capsys.readouterr().err  # the cooldown of the equivalence test: like its parent
    open_parent(branch(schedule={"warmup_fraction": 0.3}, train={"seed": 1}))
    err = capsys.readouterr().err
    assert "train.seed: 0 -> 1" in err and "schedule: lr" in err and "at step 1," in err
