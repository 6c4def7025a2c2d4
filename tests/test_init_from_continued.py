"""Continued pre-training (issue 16): train.init_from as `<dir>@<step>` / `<dir>`, with and without the
parent's optimizer state (train.init_optimizer), the parent's curve in status.json, refusals when
shapes differ, and a continuation equal to the uninterrupted parent bit for bit on CPU."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, TINY, read_rows
from harness.checkpoint import load_checkpoint
from harness.config import ConfigError, to_run_config
from harness.identity import config_hash

BASE = [o for o in TINY if not o.startswith("schedule")] + ["train.deterministic=true"]
PARENT = ["schedule=cosine", "schedule.warmup_steps=2", "train.steps=12", "train.checkpoint_at=[6]"]


def train(env, *overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "harness.train", *BASE, *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def status(run_dir) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.fixture
def parent(train_env, tmp_path):
    run_dir = tmp_path / "parent"
    proc = train(train_env, f"run_dir={run_dir}", *PARENT)
    assert proc.returncode == 0, proc.stderr
    return run_dir


def test_continuation_with_the_parents_schedule_and_data_is_bit_identical(train_env, tmp_path, parent):
    child = tmp_path / "child"
    proc = train(train_env, f"run_dir={child}", *PARENT, f"train.init_from={parent}@6")  # the <dir>@<step> form
    assert proc.returncode == 0, proc.stderr
    mine, theirs = read_rows(child), read_rows(parent)
    assert [r["step"] for r in mine] == list(range(1, 13))
    for a, b in zip(mine[6:], theirs[6:]):  # steps 7..12 trained by the child: exactly the parent's numbers
        assert (a["loss"], a["grad_norm"], a["lr"], a.get("val_loss")) == (b["loss"], b["grad_norm"], b["lr"],
                                                                           b.get("val_loss"))
    done = status(child)
    assert done["branch_step"] == 6 and done["init_from"].endswith("parent/checkpoints/step_00000006.pt")
    assert done["parent_curve"] == str(parent / "curve.jsonl")  # the parent's curve, linked
    final_a = load_checkpoint(child / "checkpoints" / "step_00000012.pt")["model"]
    final_b = load_checkpoint(parent / "checkpoints" / "step_00000012.pt")["model"]
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_b)


def test_weights_with_and_without_optimizer_state(train_env, tmp_path, parent):
    runs = {}
    for flag in ("false", "true"):
        run_dir = tmp_path / f"cpt_{flag}"
        proc = train(train_env, f"run_dir={run_dir}", "schedule=constant", "train.steps=3", "train.checkpoint_every=3",
                     f"train.init_from={parent}", "train.init_mode=weights", f"train.init_optimizer={flag}")
        assert proc.returncode == 0, proc.stderr
        runs[flag] = run_dir
    parent_state = load_checkpoint(parent / "checkpoints" / "step_00000012.pt")["optimizer"]["state"]
    for flag, run_dir in runs.items():
        rows, done = read_rows(run_dir), status(run_dir)
        assert [r["step"] for r in rows] == [1, 2, 3] and done["branch_step"] == 12  # `<dir>`: its newest checkpoint
        adam_steps = load_checkpoint(run_dir / "checkpoints" / "step_00000003.pt")["optimizer"]["state"][0]["step"]
        # Adam's per-parameter step count continues the parent's 12 only when its state was taken.
        assert float(adam_steps) == (15.0 if flag == "true" else 3.0)
        assert done.get("init_optimizer", False) == (flag == "true")
    assert float(parent_state[0]["step"]) == 12.0
    a, b = read_rows(runs["false"]), read_rows(runs["true"])
    assert a[0]["loss"] == b[0]["loss"]  # same weights, same first batch
    assert a[1]["loss"] != b[1]["loss"]  # different first updates: fresh vs the parent's moments
    assert config_hash_of(runs["false"]) != config_hash_of(runs["true"])


def config_hash_of(run_dir) -> str:
    from omegaconf import OmegaConf

    return config_hash(to_run_config(OmegaConf.load(run_dir / "config.yaml")))


def test_shape_mismatch_is_refused_with_a_message(train_env, tmp_path, parent):
    run_dir = tmp_path / "wider"
    proc = train(train_env, f"run_dir={run_dir}", "model.d_model=48", "schedule=constant", "train.steps=2",
                 f"train.init_from={parent}@6", "train.init_mode=weights")
    assert proc.returncode == 2, proc.stderr
    assert "train.init_from" in proc.stderr and "shapes" in proc.stderr and "(32," in proc.stderr
    assert not (run_dir / "curve.jsonl").exists()


def test_init_from_forms_and_identity(tmp_path):
    (tmp_path / "p" / "checkpoints").mkdir(parents=True)
    for step in (5, 9):
        (tmp_path / "p" / "checkpoints" / f"step_{step:08d}.pt").write_bytes(b"")
    file_form = str(tmp_path / "p" / "checkpoints" / "step_00000009.pt")

    def cfg(init_from, **train):
        return to_run_config({"run_dir": "x", "train": {"device": "cpu", "steps": 20, "init_from": init_from,
                                                        "init_mode": "weights", **train}})

    assert cfg(f"{tmp_path}/p@9").train.init_from == file_form
    assert cfg(f"{tmp_path}/p").train.init_from == file_form  # the newest
    assert config_hash(cfg(f"{tmp_path}/p")) == config_hash(cfg(file_form))
    assert config_hash(cfg(file_form)) != config_hash(cfg(f"{tmp_path}/p@5"))  # the parent step is identity
    assert config_hash(cfg(file_form, init_optimizer=True)) != config_hash(cfg(file_form))
    # weights alone hashes as before the flag existed: init_optimizer=false leaves the identity unchanged
    from harness.identity import identity_fields
    assert "train.init_optimizer" not in identity_fields(cfg(file_form))
    with pytest.raises(ConfigError, match="train.init_from"):
        cfg(str(tmp_path / "nothing_here"))
    with pytest.raises(ConfigError, match="train.init_optimizer"):
        to_run_config({"train": {"steps": 20, "init_from": file_form, "init_optimizer": True}})  # resume mode


def test_a_parent_with_another_tokenizer_is_refused(train_env, tmp_path, parent):
    # Same vocab size (same shapes), but a BPE trained on other text: the token ids mean other strings.
    run_dir = tmp_path / "other_tokenizer"
    proc = train(train_env, f"run_dir={run_dir}", "data.max_chars=200000", "schedule=constant", "train.steps=2",
                 f"train.init_from={parent}@6", "train.init_mode=weights")
    assert proc.returncode == 2, proc.stderr
    assert "train.init_from" in proc.stderr and "tokenizer" in proc.stderr
    assert not (run_dir / "curve.jsonl").exists()
