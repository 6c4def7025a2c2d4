"""Mixture-of-experts proxy (arch=moe): Mixtral equivalence, hand counts, dropless routing,
balancing (aux loss, z-loss, aux-loss-free bias), and the curve columns of a real run."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
import torch
import transformers.models.mixtral.modeling_mixtral as hf_mixtral

from conftest import logits_vs_transformers, read_rows, run_train
from harness.config import ConfigError, ModelConfig, MoeConfig
from harness.models import active_params, build_model, flops_per_token, matmul_params, num_params
from harness.models.hf_convert import to_hf_model
from harness.models.moe import MoEFeedForward, load_balancing_loss, router_z_loss

VOCAB = 100
SEQ = 16


def tiny_moe(**overrides) -> ModelConfig:
    """A tiny arch=moe config; overrides that are MoeConfig fields go to the `moe` block."""
    moe_fields = {f.name for f in dataclasses.fields(MoeConfig)}
    moe = dict(n_experts=4, top_k=2, expert_ffn=24)
    moe.update({k: v for k, v in overrides.items() if k in moe_fields})
    fields = dict(arch="moe", d_model=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, max_seq_len=SEQ)
    fields.update({k: v for k, v in overrides.items() if k not in moe_fields})
    return ModelConfig(**fields, moe=MoeConfig(**moe))


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(n_experts=8, top_k=1, tie_embeddings=True, balance="aux_free"),
    dict(n_experts=6, top_k=3, n_kv_heads=None, expert_ffn=None),
], ids=["top2-untied", "top1-tied-auxfree", "top3-mha-ffn-default"])
def test_logits_match_mixtral(overrides) -> None:
    # Mixtral (transformers 5.x): softmax over all experts, top-k, top-k weights renormalised to sum
    # to 1; no shared expert, no sigmoid router, no selection bias, so this is the exportable config.
    cfg = tiny_moe(init_std=0.25, **overrides)
    _, _, ours, theirs = logits_vs_transformers(cfg, VOCAB, SEQ)
    assert ours.std() > 0.3, "logits too small for a meaningful comparison"
    assert (ours - theirs).abs().max().item() <= 1e-5


def test_export_refuses_what_mixtral_cannot_express() -> None:
    for overrides, needle in ((dict(router_score="sigmoid"), "moe.router_score"),
                              (dict(shared_expert=True), "moe.shared_expert")):
        with pytest.raises(ValueError, match=needle):
            to_hf_model(build_model(tiny_moe(**overrides)))
    model = build_model(tiny_moe(balance="aux_free"))
    model.layers[1].mlp.expert_bias[2] = 0.1  # a trained aux-free bias changes routing
    with pytest.raises(ValueError, match="aux_free"):
        to_hf_model(model)


def test_aux_loss_matches_mixtral_convention() -> None:
    # Ours is normalised to 1 for uniform routing; Hugging Face's Mixtral loss (one layer) is top_k times it.
    torch.manual_seed(0)
    logits = torch.randn(64, 8)
    ours = load_balancing_loss(logits.softmax(-1), logits.topk(2, dim=-1).indices)
    theirs = hf_mixtral.load_balancing_loss_func((logits,), num_experts=8, top_k=2)
    assert ours.item() * 2 == pytest.approx(theirs.item(), rel=1e-6)


# Hand count for tiny_moe(shared_expert=True): d=32, 2 layers, 4 heads of dim 8, 2 kv heads (kv
# width 16), 4 experts of width 24, top-2, one shared expert, vocab 100, untied.
ATTENTION = 32 * 32 + 32 * 16 + 32 * 16 + 32 * 32  # q k v out = 3072
ROUTER = 32 * 4  # 128
EXPERT = 3 * 32 * 24  # gate, up, down = 2304
BLOCK_ALL = ATTENTION + ROUTER + (4 + 1) * EXPERT  # 14720
BLOCK_ACTIVE = ATTENTION + ROUTER + (2 + 1) * EXPERT  # 10112
NORMS = 2 * 2 * 32 + 32  # two RMSNorms per block, final norm
EMBED = READOUT = 100 * 32


def test_param_and_flop_counts_by_hand() -> None:
    cfg = tiny_moe(shared_expert=True)
    model = build_model(cfg)
    total = 2 * BLOCK_ALL + NORMS + EMBED + READOUT  # 36000
    active = 2 * BLOCK_ACTIVE + NORMS + EMBED + READOUT  # 26784
    assert model.num_params() == num_params(cfg) == total == 36000
    assert model.num_active_params() == active_params(cfg) == active == 26784
    assert model.num_params(include_embedding=False) == num_params(cfg, include_embedding=False) == total - EMBED
    assert model.num_active_params(include_embedding=False) == active_params(cfg, include_embedding=False)
    # FLOPs come from the active matrices only (router included): 6 * N_active_matmul + 12 L T d.
    assert matmul_params(cfg) == 2 * BLOCK_ACTIVE + READOUT == 23424
    assert model.flops_per_token(SEQ) == flops_per_token(cfg, SEQ) == 6 * 23424 + 12 * 2 * SEQ * 32 == 152832
    # A dense model reports active == total.
    dense = build_model(ModelConfig(arch="llama", d_model=32, n_layers=2, n_heads=4, vocab_size=VOCAB))
    assert dense.num_active_params() == dense.num_params() and dense.aux_losses() == {}
    assert dense.expert_load() is None


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(router_score="sigmoid", shared_expert=True, balance="aux_free", n_experts=5, top_k=3),
], ids=["softmax", "sigmoid-shared-auxfree"])
def test_dropless_routing_equals_per_token_computation(overrides) -> None:
    cfg = tiny_moe(init_std=0.25, **overrides)
    torch.manual_seed(0)
    layer = MoEFeedForward(cfg, std=0.25, out_std=0.1)
    for p in layer.parameters():
        torch.nn.init.normal_(p, std=0.25)
    layer.expert_bias.normal_(std=0.1)  # only aux_free uses it, for selection only
    x_BTD = torch.randn(3, 7, cfg.d_model)
    y_BTD = layer(x_BTD)
    for x_D, y_D in zip(x_BTD.reshape(-1, cfg.d_model), y_BTD.reshape(-1, cfg.d_model)):
        logits_E = layer.router.weight @ x_D
        scores_E = logits_E.softmax(-1) if cfg.moe.router_score == "softmax" else logits_E.sigmoid()
        select_E = scores_E + layer.expert_bias if cfg.moe.balance == "aux_free" else scores_E
        chosen = select_E.topk(cfg.moe.top_k).indices
        weights = scores_E[chosen] / scores_E[chosen].sum()
        expect = sum(w * layer.experts[e](x_D[None])[0] for w, e in zip(weights, chosen.tolist()))
        if layer.shared is not None:
            expect = expect + layer.shared(x_D[None])[0]
        torch.testing.assert_close(y_D, expect, rtol=1e-5, atol=1e-6)
    # Every expert took part (on zero rows if unchosen), so all get a gradient (DDP needs that).
    y_BTD.square().sum().backward()
    assert all(p.grad is not None for p in layer.parameters())


def test_aux_loss_minimal_for_uniform_and_larger_for_collapsed() -> None:
    n, n_experts, k = 64, 4, 2
    uniform_probs = torch.full((n, n_experts), 1 / n_experts)
    balanced = torch.stack([torch.arange(n) % n_experts, (torch.arange(n) + 1) % n_experts], dim=1)
    assert load_balancing_loss(uniform_probs, balanced).item() == pytest.approx(1.0)
    collapsed_probs = torch.tensor([0.97, 0.01, 0.01, 0.01]).expand(n, n_experts)
    collapsed = torch.tensor([0, 1]).expand(n, k)  # everyone picks experts 0 and 1
    assert load_balancing_loss(collapsed_probs, collapsed).item() == pytest.approx(4 * (0.5 * 0.97 + 0.5 * 0.01))
    torch.manual_seed(0)
    random_logits = torch.randn(n, n_experts) * 3
    random = load_balancing_loss(random_logits.softmax(-1), random_logits.topk(k).indices).item()
    assert 1.0 <= random < load_balancing_loss(collapsed_probs, collapsed).item()
    # z-loss grows with the logits' scale.
    assert router_z_loss(random_logits) > router_z_loss(random_logits / 10) > 0


def test_model_exposes_aux_losses_by_balance_mode() -> None:
    ids = torch.randint(0, VOCAB, (2, SEQ))
    for balance, expect in (("aux_loss", {"aux_loss", "z_loss"}), ("aux_free", {"z_loss"}), ("none", {"z_loss"})):
        model = build_model(tiny_moe(balance=balance))
        model(ids)
        aux = model.aux_losses()
        assert set(aux) == expect and all(v.requires_grad and v > 0 for v in aux.values())
    model = build_model(tiny_moe(balance="none", z_loss_coef=0.0))
    model(ids)
    assert model.aux_losses() == {}


def test_aux_free_bias_moves_load_toward_uniform() -> None:
    cfg = tiny_moe(balance="aux_free", bias_update_rate=0.002, aux_loss_coef=0.0, z_loss_coef=0.0)
    torch.manual_seed(0)
    model = build_model(cfg)
    for layer in model.layers:
        layer.mlp.expert_bias[0] = 0.1  # (nearly) every token picks expert 0: load collapsed
    ids = torch.randint(0, VOCAB, (8, SEQ))

    def step() -> torch.Tensor:
        model(ids)
        model.after_optimizer_step()
        return model.expert_load()

    first = step()
    assert first.shape == (2, 4) and torch.allclose(first.sum(-1), torch.ones(2))
    assert (first[:, 0] > 0.45).all()  # top-2: at most half of all routed slots
    loads = torch.stack([step() for _ in range(80)])
    # Sign updates oscillate around balance; judge the load averaged over the last steps.
    load = loads[-10:].mean(0)
    ratio = load.max(-1).values / load.mean(-1)
    assert (ratio < 1.25).all(), load
    assert all(layer.mlp.expert_bias[0] < 0.1 for layer in model.layers)
    # The bias is a persistent buffer: it is in the state dict, so checkpoints carry it.
    assert "layers.0.mlp.expert_bias" in model.state_dict()


def test_dense_configs_reject_moe_fields() -> None:
    with pytest.raises(ConfigError, match="model.moe"):
        ModelConfig(arch="llama", moe=MoeConfig(n_experts=4)).validate()
    assert ModelConfig(arch="moe").moe == MoeConfig()  # arch=moe without a block: the defaults
    with pytest.raises(ConfigError, match="model.moe.top_k"):
        tiny_moe(top_k=5).validate()
    with pytest.raises(ConfigError, match="model.moe.balance"):
        tiny_moe(balance="sinkhorn").validate()


MOE_RUN = ["model=moe_tiny", "train.micro_batch_size=2", "train.deterministic=true"]


def test_moe_run_logs_pure_cross_entropy_and_aux_columns(train_env, tmp_path):
    """`loss` is the cross-entropy alone: at step 1 (same init, same batch) it does not depend on the
    aux coefficients, while the logged aux terms scale with them."""
    small, large = tmp_path / "small", tmp_path / "large"
    proc = run_train(train_env, f"run_dir={small}", *MOE_RUN, "train.steps=8", "train.checkpoint_every=4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_train(train_env, f"run_dir={large}", *MOE_RUN, "train.steps=3",
                     "model.moe.aux_loss_coef=1.0", "model.moe.z_loss_coef=0.1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows, big = read_rows(small), read_rows(large)
    assert all({"aux_loss", "z_loss"} <= set(r) for r in rows)
    assert rows[0]["loss"] == big[0]["loss"]  # bit-identical: aux terms never enter `loss`
    assert big[0]["aux_loss"] == pytest.approx(100 * rows[0]["aux_loss"], rel=1e-5)
    assert big[0]["z_loss"] == pytest.approx(100 * rows[0]["z_loss"], rel=1e-5)
    # ...but they are backpropagated: the same first batch and LR with 100x the coefficients gives a
    # different update, so the step-2 losses part.
    assert rows[1]["loss"] != big[1]["loss"]
    assert all(0.01 <= r["aux_loss"] < 0.04 for r in rows)  # coef 0.01 x (1 .. n_experts), 2 layers
    eval_rows = [r for r in rows if "val_loss" in r]
    assert eval_rows[0]["step"] == 1 and eval_rows[-1]["step"] == 8
    for r in eval_rows:
        for i in range(2):
            load = r[f"expert_load_l{i}"]
            assert len(load) == 4 and sum(load) == pytest.approx(1.0, abs=1e-5)
            assert r[f"expert_load_max_over_mean_l{i}"] == pytest.approx(max(load) / (sum(load) / 4), rel=1e-4)
        assert r["expert_load_max_over_mean"] == max(r["expert_load_max_over_mean_l0"],
                                                     r["expert_load_max_over_mean_l1"])
    assert not any("expert_load_l0" in r for r in rows if "val_loss" not in r)
    status = json.loads((small / "status.json").read_text())
    assert status["params_active"] < status["params"]


def test_aux_free_resume_is_bit_identical(train_env, tmp_path):
    """The aux-free bias is checkpointed: resuming from an earlier checkpoint replays the same losses."""
    run_dir = tmp_path / "run"
    common = [*MOE_RUN, "model.moe.balance=aux_free", "model.moe.bias_update_rate=0.01", "train.steps=12",
              "train.checkpoint_every=4", "train.keep_checkpoints=3"]
    proc = run_train(train_env, f"run_dir={run_dir}", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reference = read_rows(run_dir)
    ckpt = torch.load(run_dir / "checkpoints" / "step_00000008.pt", weights_only=True)
    assert ckpt["model"]["layers.0.mlp.expert_bias"].abs().sum() > 0  # the bias did move
    (run_dir / "checkpoints" / "step_00000012.pt").unlink()
    (run_dir / "status.json").unlink()
    proc = run_train(train_env, f"run_dir={run_dir}", *common)
    assert proc.returncode == 0, proc.stderr[-3000:]
    resumed = read_rows(run_dir)
    assert [r["step"] for r in resumed] == list(range(1, 13))
    for key in ("loss", "aux_loss" if "aux_loss" in reference[0] else "z_loss", "grad_norm"):
        assert [r[key] for r in resumed] == [r[key] for r in reference]
    assert resumed[-1]["expert_load_l0"] == reference[-1]["expert_load_l0"]
    shutil.rmtree(run_dir)
