"""Unit tests of the run's building blocks: eval steps, val loss, curve file, checkpoints, config
checks and the run identity (device and precision included)."""

from __future__ import annotations

import json

import pytest
import torch

from harness.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from harness.config import ConfigError, RunConfig, to_run_config
from harness.identity import check_same_run, config_hash, resolve_run_dir
from harness.loop import evaluate, eval_steps
from harness.optim.routing import param_groups
from harness.tracking.curve import CurveWriter, read_curve
from harness.runtime import Runtime
from harness.train import config_yaml


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
    check_same_run(saved, cfg)  # fine: no numbers change
    cfg.optim.lr = 1.0
    with pytest.raises(ConfigError, match="optim.lr"):
        check_same_run(saved, cfg)


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


def hashed(overrides: dict) -> RunConfig:
    cfg = to_run_config({"run_dir": "runs/sweep/{hash}", **overrides})
    cfg.run_dir = resolve_run_dir(cfg)  # what harness.train does after to_run_config
    return cfg


def test_run_identity_hash_ignores_cadence_and_logging_only():
    base = hashed({})
    assert base.run_dir.startswith("runs/sweep/") and len(base.run_dir.split("/")[-1]) == 12
    assert resolve_run_dir(base) == base.run_dir  # idempotent
    same = hashed({"name": "other", "logging": {"wandb": True}, "train": {"eval_every": 7, "num_threads": 1}})
    assert same.run_dir == base.run_dir
    different = hashed({"optim": {"lr": 1e-2}})
    assert different.run_dir != base.run_dir
    assert config_hash(base) == base.run_dir.split("/")[-1]


def test_device_and_precision_are_part_of_the_identity():
    here = "cuda" if torch.cuda.is_available() else "cpu"
    other = "cpu" if here == "cuda" else "cuda"
    implied = {"cuda": "bf16", "cpu": "fp32"}
    auto = hashed({})
    # `auto` is what it resolves to on this machine: the explicit equivalent is the same run.
    assert hashed({"train": {"device": here}}).run_dir == auto.run_dir
    assert hashed({"train": {"device": here, "precision": implied[here]}}).run_dir == auto.run_dir
    # Other hardware, or another precision, is another run.
    assert hashed({"train": {"device": other}}).run_dir != auto.run_dir
    assert hashed({"train": {"precision": implied[other]}}).run_dir != auto.run_dir


def test_resume_check_refuses_other_device_or_precision():
    cfg = to_run_config({"run_dir": "runs/x", "train": {"device": "cpu", "precision": "fp32"}})
    saved = config_yaml(cfg)
    check_same_run(saved, to_run_config({"run_dir": "runs/x", "train": {"device": "cpu"}}))  # auto precision = fp32
    with pytest.raises(ConfigError, match="train.device"):
        check_same_run(saved, to_run_config({"run_dir": "runs/x", "train": {"device": "cuda"}}))
    with pytest.raises(ConfigError, match="train.precision"):
        check_same_run(saved, to_run_config({"run_dir": "runs/x", "train": {"device": "cpu", "precision": "bf16"}}))


def test_val_loss_is_token_weighted_over_all_windows_whatever_the_micro_batch():
    """10 windows in micro-batches of 4 (4+4+2) or 3 (3+3+3+1): the smaller last chunk must not
    weigh more than its tokens. Both equal one full-batch cross-entropy."""
    torch.manual_seed(0)
    vocab, seq = 50, 12
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, 16), torch.nn.Linear(16, vocab)).double()
    windows = torch.randint(0, vocab, (10, seq + 1))
    rt = Runtime(device=torch.device("cpu"), autocast_dtype=None)
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(model(windows[:, :-1]).flatten(0, 1), windows[:, 1:].flatten())
    by_4 = evaluate(model, list(windows.split(4)), rt)
    by_3 = evaluate(model, list(windows.split(3)), rt)
    assert by_4 == pytest.approx(float(direct), abs=1e-6)
    assert by_3 == pytest.approx(float(direct), abs=1e-6)
    assert model.training  # left in training mode


CPU = Runtime(device=torch.device("cpu"), autocast_dtype=None)


def tiny_run(cache, **train):
    """A validated config for a one-layer model on the embedded text, and its tokens (in-process)."""
    from harness.train import tokens_rank0_first

    cfg = to_run_config({
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "max_seq_len": 16},
        "data": {"max_chars": 300000, "vocab_size": 300, "val_tokens": 4096, "cache_dir": str(cache)},
        "train": {"seq_len": 16, **train}, "schedule": {"warmup_steps": 0}, "run_dir": "unused",
    })
    return cfg, tokens_rank0_first(cfg, CPU)


def test_trainer_val_loss_does_not_depend_on_the_micro_batch(harness_cache):
    """The run's fixed val set (10 windows) evaluated in micro-batches of 4 (4+4+2) and of 3
    (3+3+3+1) by the same model: one value, the full-batch cross-entropy."""
    from harness.loop import Trainer, evaluate
    from harness.models import build_model

    values = []
    for micro in (4, 3):
        cfg, data = tiny_run(harness_cache, steps=2, batch_size=12, micro_batch_size=micro, eval_sequences=10)
        torch.manual_seed(0)
        trainer = Trainer(cfg, CPU, data, build_model(cfg.model))
        assert [len(b) for b in trainer.val][-1] == {4: 2, 3: 1}[micro]  # an uneven last chunk
        values.append(evaluate(trainer.model, trainer.val, CPU))
    windows = torch.cat(trainer.val)
    with torch.no_grad():
        direct = torch.nn.functional.cross_entropy(trainer.model(windows[:, :-1]).flatten(0, 1).double(),
                                                   windows[:, 1:].flatten())
    assert values[0] == pytest.approx(values[1], abs=1e-6)
    assert values[0] == pytest.approx(float(direct), abs=1e-6)


def test_hooks_see_each_step_then_one_error_path(harness_cache):
    """The loop calls hooks in order at start, every step, and end; an error raised by a hook reaches
    every hook's on_error once, closes them all, and propagates."""
    from harness.loop import Hook, Trainer
    from harness.models import build_model

    cfg, data = tiny_run(harness_cache, steps=4, batch_size=2, eval_sequences=2, eval_every=4)
    rt = CPU

    class Record(Hook):
        def __init__(self, name, events, stop_at=None):
            self.name, self.events, self.stop_at = name, events, stop_at

        def on_start(self, trainer):
            self.events.append((self.name, "start", trainer.step))

        def on_step(self, trainer, row):
            self.events.append((self.name, "step", row["step"], "val_loss" in row))
            if row["step"] == self.stop_at:
                raise KeyboardInterrupt

        def on_end(self, trainer):
            self.events.append((self.name, "end", trainer.step))

        def on_error(self, trainer, err):
            self.events.append((self.name, "error", type(err).__name__))

        def close(self):
            self.events.append((self.name, "close"))

    events: list = []
    trainer = Trainer(cfg, rt, data, build_model(cfg.model))
    trainer.fit([Record("a", events), Record("b", events)])
    assert events[:2] == [("a", "start", 0), ("b", "start", 0)]
    assert [e[2:] for e in events if e[0] == "a" and e[1] == "step"] == [(s, s in trainer.eval_at) for s in (1, 2, 3, 4)]
    assert {1, 2, 4} <= trainer.eval_at
    assert events[-4:] == [("a", "end", 4), ("b", "end", 4), ("a", "close"), ("b", "close")]
    summary = trainer.summary()
    assert summary["step"] == 4 and summary["tokens"] == 4 * 2 * 16
    assert summary["flops"] == summary["tokens"] * trainer.compute.flops_per_token

    events.clear()
    trainer = Trainer(cfg, rt, data, build_model(cfg.model))
    with pytest.raises(KeyboardInterrupt):
        trainer.fit([Record("a", events, stop_at=2), Record("b", events)])
    assert ("b", "step", 2, 2 in trainer.eval_at) not in events  # the raising hook stops the step's remaining hooks
    assert events[-4:] == [("a", "error", "KeyboardInterrupt"), ("b", "error", "KeyboardInterrupt"),
                           ("a", "close"), ("b", "close")]
    assert trainer.step == 2
