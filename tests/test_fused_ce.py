"""train.fused_ce (harness/models/fused_ce.py): liger-kernel's fused linear cross-entropy on the readout.

On a CPU machine: the choice is checked, refused with the fix before a run writes anything, kept out
of the run's identity, and the model routes its loss to liger's kernel. Where liger-kernel and triton
are importable, the kernel itself runs on the CPU in Triton's interpreter and must give the torch
loss and gradients (scripts/check_fused_ce.py, the same check gpu_check.sh runs on CUDA in bf16).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT, run_train
from harness.config import ConfigError, ModelConfig, RunConfig, TrainConfig
from harness.models import build_model
from harness.models.fused_ce import liger_chunk_mem_const
from harness.runtime import setup_runtime

LIGER_IMPORTABLE = all(importlib.util.find_spec(name) is not None for name in ("triton", "liger_kernel"))


def test_fused_ce_is_one_of_none_or_liger():
    TrainConfig(fused_ce="none").validate()
    with pytest.raises(ConfigError, match=r"train\.fused_ce: got 'fused'; choose one of none, liger"):
        TrainConfig(fused_ce="fused").validate()


def test_liger_on_a_cpu_run_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as err:
        TrainConfig(device="cpu", fused_ce="liger").validate()
    message = str(err.value)
    assert message.startswith("train.fused_ce: liger needs a CUDA GPU but train.device=cpu")
    assert "train.fused_ce=none" in message and "train.loss_chunk" in message and ".[gpu]" in message


def test_liger_with_device_auto_validates_so_a_gpu_sweep_can_be_planned_without_a_gpu():
    TrainConfig(device="auto", fused_ce="liger").validate()  # a login node plans; the GPU node runs


@pytest.mark.skipif(torch.cuda.is_available() and LIGER_IMPORTABLE, reason="liger can run here")
def test_liger_is_refused_where_the_run_starts_when_it_cannot_run():
    # device=auto resolved where the run starts: no GPU here, or (with one) triton / liger-kernel missing
    expected = (r"liger needs a CUDA GPU but this run resolved to cpu" if not torch.cuda.is_available()
                else r"liger needs (triton|liger_kernel)")
    with pytest.raises(ConfigError, match=r"^train\.fused_ce: " + expected):
        setup_runtime(TrainConfig(device="auto", fused_ce="liger"))


@pytest.mark.skipif(torch.cuda.is_available() and LIGER_IMPORTABLE, reason="liger can run here")
def test_a_liger_run_on_cpu_exits_as_a_bad_config_before_writing_anything(train_env, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_train(train_env, f"run_dir={run_dir}", "train.fused_ce=liger")
    assert proc.returncode == 2, proc.stderr  # harness/outcome.py: 2 = bad config
    assert "train.fused_ce" in proc.stderr
    assert not run_dir.exists()


def test_fused_ce_is_not_identity():
    from harness.identity import config_hash

    cfg = RunConfig(model=ModelConfig(vocab_size=512), train=TrainConfig())
    assert config_hash(cfg) == config_hash(dataclasses.replace(cfg, train=TrainConfig(fused_ce="liger")))


def test_liger_chunks_follow_loss_chunk():
    # The 124M model at 32 x 1024 tokens (D 768, V 50,304): liger's default budget (1) means chunks of
    # 512 rows; loss_chunk 8192 asks for 16x that: 17 gives liger's inc_factor cdiv(V, 17 D) = 4, so
    # chunks of 32,768 / 4 = 8,192 rows.
    assert liger_chunk_mem_const(32768, 768, 50304, 0) == 1
    assert liger_chunk_mem_const(32768, 768, 50304, 8192) == 17
    assert liger_chunk_mem_const(65536, 768, 50304, 8192) == 9
    # More rows than the batch has: one chunk of all of them (the budget of N x V logits).
    assert liger_chunk_mem_const(1024, 768, 50304, 10**6) == liger_chunk_mem_const(1024, 768, 50304, 1024) == 66
    assert liger_chunk_mem_const(64, 32, 300, 16) == 3


@pytest.mark.parametrize("tie", [False, True])
def test_the_model_routes_its_loss_to_liger(tie, monkeypatch):
    # A CPU forward with fused_ce=liger reaches the liger path (and, without Triton's interpreter, says
    # it needs CUDA); the logits path stays as it was.
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    cfg = ModelConfig(arch="llama", d_model=32, n_layers=1, n_heads=2, vocab_size=300, max_seq_len=16, tie_embeddings=tie)
    model = build_model(cfg)
    model.fused_ce = "liger"
    x = torch.randint(0, 300, (2, 17))
    assert model(x[:, :-1]).shape == (2, 16, 300)
    with pytest.raises(ConfigError, match=r"^train\.fused_ce: liger runs on CUDA only"):
        model(x[:, :-1], targets=x[:, 1:])


needs_liger = pytest.mark.skipif(not LIGER_IMPORTABLE, reason="liger-kernel and triton are not installed "
                                 "(pip install '.[gpu]')")


def run_in_triton_interpreter(*args: str) -> subprocess.CompletedProcess:
    """`python *args` with Triton's interpreter on (it must be on before triton is imported: a fresh process)."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@needs_liger
def test_liger_loss_and_gradients_match_torch_in_the_triton_interpreter():
    proc = run_in_triton_interpreter("scripts/check_fused_ce.py", "--device", "cpu")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("tolerance 1e-05: ok") == 2 and "fused_ce check: ok" in proc.stdout


# Five optimizer steps of harness.loop.Trainer (2 micro-batches each: a loss gradient of 1/2 into
# liger's backward), printed as JSON: the losses with fused_ce=none and with liger (set after
# validate(), which refuses liger on a CPU run).
TRAINER_STEPS = """
import json
from pathlib import Path
import numpy as np, torch
from harness.config import ModelConfig, RunConfig, TrainConfig
from harness.data.tokens import TokenData
from harness.loop import Trainer
from harness.models import build_model
from harness.runtime import setup_runtime

def losses(fused_ce):
    model = ModelConfig(arch="llama", d_model=32, n_layers=1, n_heads=2, vocab_size=300, max_seq_len=16)
    train = TrainConfig(steps=5, seq_len=16, batch_size=4, micro_batch_size=2, device="cpu", precision="fp32",
                        eval_sequences=2, loss_chunk=16, deterministic=True)
    cfg = RunConfig(model=model, train=train, name="fused_ce")
    cfg.validate()
    train.fused_ce = fused_ce
    rng = np.random.default_rng(0)
    data = TokenData(train=rng.integers(0, 300, 100_000, dtype=np.uint16), val=rng.integers(0, 300, 68, dtype=np.uint16),
                     vocab_size=300, tokenizer=None, manifest={}, cache_path=Path("."))
    torch.manual_seed(0)
    trainer = Trainer(cfg, setup_runtime(train), data, build_model(model))
    return [trainer.train_step(step)["loss"] for step in range(1, 6)]

print(json.dumps({"none": losses("none"), "liger": losses("liger")}))
"""


@needs_liger
def test_training_steps_with_liger_match_the_torch_loss_in_the_triton_interpreter():
    proc = run_in_triton_interpreter("-c", TRAINER_STEPS)
    assert proc.returncode == 0, proc.stderr
    losses = json.loads(proc.stdout.strip().splitlines()[-1])
    worst = max(abs(a - b) / b for a, b in zip(losses["liger"], losses["none"]))
    assert len(losses["liger"]) == 5 and worst <= 1e-6, (worst, losses)
