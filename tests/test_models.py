"""Dense model zoo: equivalence with Hugging Face, hand-counted parameters and FLOPs, causality."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import logits_vs_transformers
from harness.config import ConfigError, ModelConfig
from harness.models import ParamRole, build_model, flops_per_token, fused_ops, matmul_params, num_params, param_roles
from harness.models.hf_convert import to_hf_model

VOCAB = 100
SEQ = 16


def tiny(arch: str, **overrides) -> ModelConfig:
    fields = dict(arch=arch, d_model=32, n_layers=2, n_heads=4, vocab_size=VOCAB, max_seq_len=SEQ)
    fields.update(overrides)
    return ModelConfig(**fields)


CONFIGS = {
    "llama-mha-untied": tiny("llama", tie_embeddings=False),
    "llama-gqa-tied": tiny("llama", n_kv_heads=2, tie_embeddings=True, d_model=64, d_ff=96),
    "llama-mqa-untied": tiny("llama", n_kv_heads=1, rope_theta=500.0),
    "gpt2-untied": tiny("gpt2", tie_embeddings=False),
    "gpt2-tied": tiny("gpt2", tie_embeddings=True, d_model=64),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_logits_match_huggingface(name: str) -> None:
    # A large init std makes logits O(1) and attention far from uniform, so a wrong mapping
    # (RoPE pairing, q/k/v order, Conv1D transpose) cannot hide under tiny numbers.
    cfg = dataclasses.replace(CONFIGS[name], init_std=0.25)
    model, input_ids, ours, theirs = logits_vs_transformers(cfg, VOCAB, SEQ)
    assert ours.shape == (3, SEQ, VOCAB)
    assert ours.std() > 0.3, "logits too small for a meaningful comparison"
    assert (ours - theirs).abs().max().item() <= 1e-5
    # A shorter sequence uses a prefix of the position tables.
    with torch.no_grad():
        short = model(input_ids[:, :5])
    assert (short - ours[:, :5]).abs().max().item() <= 1e-5


# Hand counts for tiny("llama", n_kv_heads=2, d_ff=64): d=32, 2 layers, 4 heads of dim 8, 2 kv heads
# (kv width 16), vocab 100.
LLAMA_GQA = dict(n_kv_heads=2, d_ff=64)
LLAMA_BLOCK_MATRICES = (32 * 32) + (32 * 16) + (32 * 16) + (32 * 32) + 3 * (32 * 64)  # q k v out, gate up down = 9216
LLAMA_BLOCK_VECTORS = 2 * 32  # two RMSNorm gains
LLAMA_NON_EMBEDDING_TIED = 2 * (LLAMA_BLOCK_MATRICES + LLAMA_BLOCK_VECTORS) + 32  # + final norm = 18592
TOKEN_EMBEDDING = 100 * 32

# Hand counts for tiny("gpt2"): d=32, 2 layers, d_ff 4*32=128, vocab 100, 16 positions.
GPT2_BLOCK = (
    (32 * 96 + 96)  # c_attn weight + bias
    + (32 * 32 + 32)  # attention out + bias
    + (32 * 128 + 128)  # MLP up + bias
    + (128 * 32 + 32)  # MLP down + bias
    + 2 * (32 + 32)  # two LayerNorms, gain + bias
)  # = 12704
GPT2_NON_EMBEDDING_TIED = 2 * GPT2_BLOCK + (32 + 32)  # + final LayerNorm = 25472
POSITION_EMBEDDING = 16 * 32


@pytest.mark.parametrize("tied", [False, True])
def test_llama_param_count_by_hand(tied: bool) -> None:
    cfg = tiny("llama", tie_embeddings=tied, **LLAMA_GQA)
    readout = 0 if tied else TOKEN_EMBEDDING
    expect_non_embedding = LLAMA_NON_EMBEDDING_TIED + readout
    expect_total = expect_non_embedding + TOKEN_EMBEDDING
    assert (expect_total, expect_non_embedding) == ((24992, 21792) if not tied else (21792, 18592))
    model = build_model(cfg)
    assert model.num_params() == num_params(cfg) == expect_total
    assert model.num_params(include_embedding=False) == num_params(cfg, include_embedding=False) == expect_non_embedding


@pytest.mark.parametrize("tied", [False, True])
def test_gpt2_param_count_by_hand(tied: bool) -> None:
    cfg = tiny("gpt2", tie_embeddings=tied)
    expect_non_embedding = GPT2_NON_EMBEDDING_TIED + (0 if tied else TOKEN_EMBEDDING)
    expect_total = expect_non_embedding + TOKEN_EMBEDDING + POSITION_EMBEDDING
    assert (expect_total, expect_non_embedding) == ((32384, 28672) if not tied else (29184, 25472))
    model = build_model(cfg)
    assert model.num_params() == num_params(cfg) == expect_total
    assert model.num_params(include_embedding=False) == num_params(cfg, include_embedding=False) == expect_non_embedding


@pytest.mark.parametrize("tied", [False, True])
def test_flops_per_token_by_hand(tied: bool) -> None:
    seq_len = 16
    attention_scores = 12 * 2 * seq_len * 32  # 12 * n_layers * seq_len * d_model = 12288
    readout = 100 * 32  # counted even when tied: it is still a matmul

    llama = tiny("llama", tie_embeddings=tied, **LLAMA_GQA)
    llama_matmul = 2 * LLAMA_BLOCK_MATRICES + readout  # 21632
    assert matmul_params(llama) == llama_matmul == 21632
    assert flops_per_token(llama, seq_len) == 6 * llama_matmul + attention_scores == 142080
    assert build_model(llama).flops_per_token(seq_len) == 142080

    gpt2 = tiny("gpt2", tie_embeddings=tied)
    gpt2_matmul = 2 * (4 * 32 * 32 + 2 * 32 * 128) + readout  # 27776; biases are not matmul weights
    assert flops_per_token(gpt2, seq_len) == 6 * gpt2_matmul + attention_scores == 178944
    assert build_model(gpt2).flops_per_token(seq_len) == 178944


@pytest.mark.parametrize("name", ["llama-gqa-tied", "gpt2-untied"])
def test_backward_and_causal_mask(name: str) -> None:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = build_model(cfg)
    input_ids = torch.randint(0, VOCAB, (2, SEQ))
    logits = model(input_ids)
    loss = F.cross_entropy(logits[:, :-1].flatten(0, 1), input_ids[:, 1:].flatten())
    loss.backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got a zero gradient"

    # Changing token t must leave the logits before t untouched and change those from t on.
    t = 9
    changed = input_ids.clone()
    changed[:, t] = (changed[:, t] + 1) % VOCAB
    with torch.no_grad():
        before, after = model(input_ids), model(changed)
    assert torch.equal(before[:, :t], after[:, :t])
    assert (before[:, t:] - after[:, t:]).abs().amax(dim=-1).min() > 0


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_initialization_and_roles(arch: str) -> None:
    cfg = tiny(arch, d_model=128, n_layers=8, vocab_size=512, init_std=0.02)
    torch.manual_seed(0)
    model = build_model(cfg)
    roles = param_roles(model)
    assert roles["tok_embeddings.weight"] is ParamRole.EMBEDDING
    assert roles["lm_head.weight"] is ParamRole.READOUT
    assert roles["layers.0.attn.qkv.weight"] is ParamRole.HIDDEN
    assert roles["norm.weight"] is ParamRole.VECTOR
    residual_std = 0.02 / math.sqrt(2 * 8)
    for name, p in model.named_parameters():
        if name.endswith(("attn.out.weight", "mlp.down.weight")):
            assert p.std().item() == pytest.approx(residual_std, rel=0.1), name
        elif roles[name] is ParamRole.VECTOR:
            expected = 1.0 if "norm" in name and name.endswith("weight") else 0.0
            assert torch.all(p == expected), name
        else:
            assert p.std().item() == pytest.approx(0.02, rel=0.1), name
    # RoPE tables are derived from the config, so they stay out of checkpoints.
    assert not any("rotary" in key for key in model.state_dict())


def test_tied_embedding_is_one_tensor() -> None:
    model = build_model(tiny("llama", tie_embeddings=True))
    assert model.lm_head is None
    assert "lm_head.weight" not in dict(model.named_parameters())
    hf_model = to_hf_model(model)
    assert hf_model.lm_head.weight.data_ptr() == hf_model.get_input_embeddings().weight.data_ptr()


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_too_long_sequence_is_refused(arch: str) -> None:
    model = build_model(tiny(arch))
    with pytest.raises(ValueError, match="max_seq_len"):
        model(torch.zeros(1, SEQ + 1, dtype=torch.long))


def test_build_model_needs_vocab_size() -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        build_model(tiny("llama", vocab_size=None))
    with pytest.raises(ValueError, match="vocab_size"):
        flops_per_token(tiny("gpt2", vocab_size=None), 16)


def _fused_cases() -> dict[str, tuple]:
    """(fused fn, composite fn, differentiable float64 inputs, extra args) per hand-written op."""
    gen = torch.Generator().manual_seed(0)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, generator=gen).requires_grad_()

    angles = torch.rand(5, 3, dtype=torch.float64, generator=gen) * 6.0  # T=5, E/2=3
    cos_sin = (angles.cos(), angles.sin())
    return {
        "rms_norm": (fused_ops.rms_norm, fused_ops.composite_rms_norm, (rand(2, 5, 8), rand(8)), (1e-5,)),
        "split_heads_rope_gqa": (fused_ops.split_heads, fused_ops.composite_split_heads,
                                 (rand(2, 5, 4 + 2 * 2, 6),), (4, 2, *cos_sin)),
        "split_heads_plain": (fused_ops.split_heads, fused_ops.composite_split_heads, (rand(2, 5, 9, 6),), (3, 3)),
        "swiglu_gate_up": (fused_ops.swiglu_gate_up, fused_ops.composite_swiglu_gate_up,
                           (rand(2, 5, 8), rand(2 * 12, 8)), ()),
    }


@pytest.mark.parametrize("name", list(_fused_cases()))
def test_fused_ops_match_autograd(name: str) -> None:
    fused, composite, inputs, extra = _fused_cases()[name]
    assert torch.autograd.gradcheck(lambda *xs: fused(*xs, *extra), inputs)
    outs_fused, outs_composite = fused(*inputs, *extra), composite(*inputs, *extra)
    if isinstance(outs_fused, torch.Tensor):
        outs_fused, outs_composite = (outs_fused,), (outs_composite,)
    for a, b in zip(outs_fused, outs_composite):
        assert torch.allclose(a, b, atol=1e-12)
    weights = [torch.randn_like(o) for o in outs_fused]
    grads_fused = torch.autograd.grad(outs_fused, inputs, weights)
    grads_composite = torch.autograd.grad(outs_composite, inputs, weights)
    for a, b in zip(grads_fused, grads_composite):
        assert torch.allclose(a, b, atol=1e-12)


def test_swiglu_gate_up_under_autocast() -> None:
    # The training loop runs bf16 autocast on GPU; the fused matmul must follow it like nn.Linear.
    x = torch.randn(4, 16, requires_grad=True)
    weight = torch.randn(2 * 24, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        h = fused_ops.swiglu_gate_up(x, weight)
        reference = fused_ops.composite_swiglu_gate_up(x, weight)
    assert h.dtype == reference.dtype == torch.bfloat16
    assert torch.allclose(h.float(), reference.float(), atol=3e-2, rtol=3e-2)
    h.float().sum().backward()
    assert weight.grad.dtype == torch.float32 and x.grad.dtype == torch.float32


def test_each_arch_is_one_registered_class() -> None:
    from harness.archs import ARCHS
    from harness.models.gpt2 import GPT2
    from harness.models.llama import Llama
    from harness.models.moe import MoE

    assert ARCHS.names() == ("llama", "gpt2", "moe")
    for arch, cls in (("llama", Llama), ("gpt2", GPT2), ("moe", MoE)):
        assert type(build_model(ModelConfig(arch=arch, d_model=32, n_layers=1, n_heads=2, vocab_size=40,
                                            max_seq_len=8))) is cls
    with pytest.raises(ConfigError, match="model.arch: got 'mamba'; choose one of llama, gpt2, moe"):
        ModelConfig(arch="mamba").validate()
    # Arch rules live on the arch: no grouped-query attention in gpt2, its MLP is 4x, SwiGLU's 8/3x
    # rounded up to ffn_multiple_of.
    with pytest.raises(ConfigError, match="model.n_kv_heads"):
        ModelConfig(arch="gpt2", n_kv_heads=2).validate()
    assert ModelConfig(arch="gpt2", d_model=96).ffn_dim == 384
    assert ModelConfig(arch="llama", d_model=100, ffn_multiple_of=16).ffn_dim == 272  # 266 -> 272
    with pytest.raises(ConfigError, match="model.moe"):
        ModelConfig(arch="llama", moe=ModelConfig(arch="moe").moe).validate()
