"""Chunked readout + cross-entropy (train.loss_chunk, harness/models/chunked_ce.py): the same loss
and gradients as the full logits, inside the model's forward; not part of a run's identity."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from conftest import read_rows, run_train
from harness.config import ModelConfig, RunConfig, TrainConfig
from harness.loop import cross_entropy
from harness.models import build_model
from harness.models.chunked_ce import chunked_readout_cross_entropy


@pytest.mark.parametrize("chunk", [1, 7, 24, 1000])
def test_chunked_ce_equals_full_ce_values_and_gradients(chunk):
    gen = torch.Generator().manual_seed(0)
    h = torch.randn(2, 12, 16, generator=gen, requires_grad=True)
    w = torch.randn(50, 16, generator=gen, requires_grad=True)
    t = torch.randint(0, 50, (2, 12), generator=gen)
    full = F.cross_entropy((h @ w.t()).flatten(0, 1), t.flatten())
    g_full = torch.autograd.grad(full, (h, w))
    chunked = chunked_readout_cross_entropy(h, w, t, chunk)
    g_chunked = torch.autograd.grad(chunked, (h, w))
    torch.testing.assert_close(chunked, full, rtol=1e-6, atol=1e-6)
    for a, b in zip(g_chunked, g_full):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("arch,tie", [("llama", False), ("gpt2", True)])
def test_model_forward_with_targets_is_the_loop_loss(arch, tie):
    cfg = ModelConfig(arch=arch, d_model=32, n_layers=2, n_heads=2, vocab_size=300, max_seq_len=16, tie_embeddings=tie)
    torch.manual_seed(0)
    model = build_model(cfg)
    x = torch.randint(0, 300, (3, 17))
    reference = cross_entropy(model(x[:, :-1]), x[:, 1:])
    ref_grads = torch.autograd.grad(reference, list(model.parameters()))
    for chunk in (0, 5, 48):
        model.loss_chunk = chunk
        loss = model(x[:, :-1], targets=x[:, 1:])
        grads = torch.autograd.grad(loss, list(model.parameters()))
        torch.testing.assert_close(loss, reference, rtol=1e-6, atol=1e-6)
        for a, b in zip(grads, ref_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_chunked_ce_under_bf16_autocast_matches_within_bf16_rounding():
    gen = torch.Generator().manual_seed(1)
    h = torch.randn(64, 32, generator=gen)
    w = torch.randn(100, 32, generator=gen) * 0.1
    t = torch.randint(0, 100, (64,), generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        full = F.cross_entropy(F.linear(h, w).float(), t)
        chunked = chunked_readout_cross_entropy(h, w, t, 10)
    assert chunked.dtype == torch.float32
    torch.testing.assert_close(chunked, full, rtol=1e-3, atol=1e-3)


def test_loss_chunk_is_not_identity():
    from harness.identity import config_hash

    cfg = RunConfig(model=ModelConfig(vocab_size=512), train=TrainConfig())
    assert config_hash(cfg) == config_hash(dataclasses.replace(cfg, train=TrainConfig(loss_chunk=128)))


def test_training_with_loss_chunk_matches_the_full_logits_run(train_env, tmp_path):
    common = ["train.deterministic=true", "train.micro_batch_size=2"]
    for name, chunk in (("full", 0), ("chunked", 19)):
        proc = run_train(train_env, f"run_dir={tmp_path / name}", f"train.loss_chunk={chunk}", *common)
        assert proc.returncode == 0, proc.stderr
    full, chunked = read_rows(tmp_path / "full"), read_rows(tmp_path / "chunked")
    assert [r["step"] for r in chunked] == list(range(1, 21))
    worst = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(chunked, full))
    assert worst <= 1e-5, worst
