"""Unit tests of the run's building blocks: eval steps, curve file, checkpoints, config checks."""

from __future__ import annotations

import json

import pytest
import torch

from harness.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from harness.config import ConfigError, RunConfig, to_run_config
from harness.loop import eval_steps
from harness.optim.optimizers import param_groups
from harness.tracking.curve import CurveWriter, read_curve
from harness.train import check_resume_compatible, config_yaml


def test_eval_steps_log_spaced_periodic_boundaries_and_last():
    steps = eval_steps(1000, 250, boundaries=[50, 800, 1000])
    assert {1, 2, 4, 8, 16, 32, 64, 128, 256, 512} <= steps
    assert {250, 500, 750, 1000} <= steps
    assert {50, 51, 800, 801} <= steps  # at and just after the phase boundaries
    assert {850, 900, 950} <= steps  # inside the cooldown
    assert max(steps) == 1000 and min(steps) == 1


def test_curve_writer_appends_and_truncates_with_torn_last_line(tmp_path):
    path = tmp_path / "curve.jsonl"
    writer = CurveWriter(path).open()
    for step in range(1, 6):
        writer.append({"step": step, "loss": float(step), "val_loss": float("nan")})
    writer.close()
    with open(path, "a") as f:
        f.write('{"step": 6, "lo')  # a process killed mid-write
    rows = read_curve(path)
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]
    assert rows[0]["val_loss"] == "nan"  # NaN is kept as a string: the file stays valid JSON
    assert CurveWriter(path).truncate_after(3) == 3
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]


def test_checkpoints_atomic_keep_last_k_and_weights_only(tmp_path):
    directory = tmp_path / "ckpt"
    for step in (10, 20, 30):
        save_checkpoint(directory, step, {"step": step, "w": torch.full((2,), float(step))}, keep_last=2)
    (directory / ".step_00000040.pt.tmp-123").write_bytes(b"partial")  # a write that never finished
    assert [s for s, _ in list_checkpoints(directory)] == [20, 30]
    state = load_checkpoint(directory / "step_00000030.pt")
    assert state["step"] == 30 and torch.equal(state["w"], torch.full((2,), 30.0))

    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    torch.save({"x": Evil()}, directory / "step_00000050.pt")
    with pytest.raises(Exception, match="[Ww]eights only"):
        load_checkpoint(directory / "step_00000050.pt")


def test_to_run_config_validates_and_names_fields():
    with pytest.raises(ConfigError, match="train.micro_batch_size"):
        to_run_config({"train": {"batch_size": 16, "micro_batch_size": 5}})
    with pytest.raises(ConfigError, match="train.seq_len"):
        to_run_config({"train": {"seq_len": 4096}})
    with pytest.raises(ConfigError, match="model.n_kv_heads"):
        to_run_config({"model": {"n_heads": 4, "n_kv_heads": 3}})
    with pytest.raises(Exception, match="stpes"):
        to_run_config({"train": {"stpes": 3}})


def test_resume_compatibility_allows_cadence_changes_only():
    cfg = to_run_config({"run_dir": "runs/x"})
    saved = config_yaml(cfg)
    cfg.train.eval_every = 7
    cfg.logging.wandb = True
    check_resume_compatible(saved, cfg)  # fine: no numbers change
    cfg.optim.lr = 1.0
    with pytest.raises(ConfigError, match="optim.lr"):
        check_resume_compatible(saved, cfg)


def test_weight_decay_on_matrices_not_vectors():
    from harness.config import ModelConfig
    from harness.models import build_model

    model = build_model(ModelConfig(arch="gpt2", d_model=16, n_layers=1, n_heads=2, vocab_size=40, max_seq_len=8))
    groups = param_groups(model, RunConfig().optim)
    for group in groups:
        ndims = {p.ndim for p in group["params"]}
        if group["role"] == "vector":
            assert ndims == {1} and group["weight_decay"] == 0.0
        else:
            assert ndims == {2} and group["weight_decay"] == 0.1


def test_run_identity_hash_ignores_cadence_and_logging_only():
    from harness.identity import config_hash, resolve_run_dir

    def run_dir(cfg: dict) -> str:
        return resolve_run_dir(to_run_config({"run_dir": "runs/sweep/{hash}", **cfg}))

    base = run_dir({})
    assert base.startswith("runs/sweep/") and len(base.split("/")[-1]) == 12
    same = run_dir({"name": "other", "logging": {"wandb": True}, "train": {"eval_every": 7, "num_threads": 1}})
    assert same == base
    assert run_dir({"optim": {"lr": 1e-2}}) != base
    assert config_hash(to_run_config({})) == base.split("/")[-1]
