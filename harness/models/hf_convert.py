"""Export our models to Hugging Face transformers (LlamaForCausalLM / GPT2LMHeadModel /
MixtralForCausalLM).

The layouts were chosen so the mapping is a renaming plus two kinds of reshaping:
- fused matrices are split: qkv rows are [q | k | v], SwiGLU's gate_up rows are [gate | up];
- GPT-2's `Conv1D` stores weights as [in, out], the transpose of nn.Linear, so they are transposed
  (its fused c_attn is [q | k | v] along the output dimension, the same order as ours).
RoPE needs no permutation: ours uses the same "rotate half" pairing as HF Llama.
arch=moe maps to Mixtral (attention as Llama; router -> mlp.gate; the experts' fused [gate | up] and
down matrices stacked into Mixtral's [E, 2F, D] / [E, D, F] tensors). Mixtral has a softmax router
with renormalised top-k weights and no shared expert or selection bias, so only that configuration
exports: a sigmoid router, a shared expert or a nonzero aux-free bias is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import transformers

from harness.archs import arch_of, import_object
from harness.config import ModelConfig
from harness.models.base import DecoderLM

StateDict = dict[str, torch.Tensor]


def _llama_family_fields(cfg: ModelConfig) -> dict:
    """Config fields LlamaConfig and MixtralConfig share (same attention, norms and RoPE)."""
    return dict(
        vocab_size=cfg.vocab_size,
        hidden_size=cfg.d_model,
        num_hidden_layers=cfg.n_layers,
        num_attention_heads=cfg.n_heads,
        num_key_value_heads=cfg.kv_heads,
        head_dim=cfg.head_dim,
        hidden_act="silu",
        max_position_embeddings=cfg.max_seq_len,
        initializer_range=cfg.init_std,
        rms_norm_eps=cfg.norm_eps,
        tie_word_embeddings=cfg.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
    )


def _llama_config(cfg: ModelConfig) -> transformers.PretrainedConfig:
    return transformers.LlamaConfig(
        intermediate_size=cfg.ffn_dim,
        **_llama_family_fields(cfg),
        attention_bias=False,
        mlp_bias=False,
        bos_token_id=None,
        eos_token_id=None,
    )


def _mixtral_config(cfg: ModelConfig) -> transformers.PretrainedConfig:
    moe = cfg.moe
    assert moe is not None
    for ok, field_name, why in (
        (moe.router_score == "softmax", "model.moe.router_score", "Mixtral's router is a softmax"),
        (not moe.shared_expert, "model.moe.shared_expert", "Mixtral has no shared expert"),
    ):
        if not ok:
            raise ValueError(f"{field_name}: cannot export to MixtralForCausalLM ({why})")
    return transformers.MixtralConfig(
        intermediate_size=cfg.expert_ffn_dim,
        **_llama_family_fields(cfg),
        sliding_window=None,
        num_local_experts=moe.n_experts,
        num_experts_per_tok=moe.top_k,
        router_jitter_noise=0.0,
        router_aux_loss_coef=moe.aux_loss_coef,
        bos_token_id=None,
        eos_token_id=None,
    )


def _gpt2_config(cfg: ModelConfig) -> transformers.PretrainedConfig:
    return transformers.GPT2Config(
        vocab_size=cfg.vocab_size,
        n_positions=cfg.max_seq_len,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.ffn_dim,
        activation_function="gelu_new",  # the tanh approximation
        # No dropout: our models have none, and train-mode outputs must match too.
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        layer_norm_epsilon=cfg.norm_eps,
        initializer_range=cfg.init_std,
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=None,
        eos_token_id=None,
    )


def _llama_state(model: DecoderLM) -> Iterator[tuple[str, torch.Tensor]]:
    cfg = model.config
    q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    yield "model.embed_tokens.weight", model.tok_embeddings.weight
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        q, k, v = layer.attn.qkv.weight.split([q_rows, kv_rows, kv_rows], dim=0)
        gate, up = layer.mlp.gate_up.weight.chunk(2, dim=0)
        yield p + "input_layernorm.weight", layer.attn_norm.weight
        yield p + "self_attn.q_proj.weight", q
        yield p + "self_attn.k_proj.weight", k
        yield p + "self_attn.v_proj.weight", v
        yield p + "self_attn.o_proj.weight", layer.attn.out.weight
        yield p + "post_attention_layernorm.weight", layer.mlp_norm.weight
        yield p + "mlp.gate_proj.weight", gate
        yield p + "mlp.up_proj.weight", up
        yield p + "mlp.down_proj.weight", layer.mlp.down.weight
    yield "model.norm.weight", model.norm.weight


def _moe_state(model: DecoderLM) -> Iterator[tuple[str, torch.Tensor]]:
    cfg = model.config
    q_rows, kv_rows = cfg.n_heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
    yield "model.embed_tokens.weight", model.tok_embeddings.weight
    for i, layer in enumerate(model.layers):
        p = f"model.layers.{i}."
        moe = layer.mlp
        if moe.expert_bias.any():
            raise ValueError("model.moe.balance=aux_free: the learned selection bias is nonzero, and "
                             "MixtralForCausalLM has none, so its routing would differ; not exported")
        q, k, v = layer.attn.qkv.weight.split([q_rows, kv_rows, kv_rows], dim=0)
        yield p + "input_layernorm.weight", layer.attn_norm.weight
        yield p + "self_attn.q_proj.weight", q
        yield p + "self_attn.k_proj.weight", k
        yield p + "self_attn.v_proj.weight", v
        yield p + "self_attn.o_proj.weight", layer.attn.out.weight
        yield p + "post_attention_layernorm.weight", layer.mlp_norm.weight
        yield p + "mlp.gate.weight", moe.router.weight
        yield p + "mlp.experts.gate_up_proj", torch.stack([e.gate_up.weight for e in moe.experts])
        yield p + "mlp.experts.down_proj", torch.stack([e.down.weight for e in moe.experts])
    yield "model.norm.weight", model.norm.weight


def _gpt2_state(model: DecoderLM) -> Iterator[tuple[str, torch.Tensor]]:
    def conv1d(prefix: str, linear: torch.nn.Linear) -> Iterator[tuple[str, torch.Tensor]]:
        yield prefix + ".weight", linear.weight.t()  # Conv1D is [in, out]
        yield prefix + ".bias", linear.bias

    def norm(prefix: str, ln: torch.nn.LayerNorm) -> Iterator[tuple[str, torch.Tensor]]:
        yield prefix + ".weight", ln.weight
        yield prefix + ".bias", ln.bias

    yield "transformer.wte.weight", model.tok_embeddings.weight
    yield "transformer.wpe.weight", model.pos_embeddings.weight
    for i, layer in enumerate(model.layers):
        p = f"transformer.h.{i}."
        yield from norm(p + "ln_1", layer.attn_norm)
        yield from conv1d(p + "attn.c_attn", layer.attn.qkv)
        yield from conv1d(p + "attn.c_proj", layer.attn.out)
        yield from norm(p + "ln_2", layer.mlp_norm)
        yield from conv1d(p + "mlp.c_fc", layer.mlp.up)
        yield from conv1d(p + "mlp.c_proj", layer.mlp.down)
    yield from norm("transformer.ln_f", model.norm)


@dataclass(frozen=True)
class HFExport:
    """How one arch maps to transformers: its config, its weights (names and layouts), its class.
    An arch names its exporter in harness/archs.py (`hf_export = "harness.models.hf_convert:LLAMA"`)."""

    hf_class: type[transformers.PreTrainedModel]
    config: Callable[[ModelConfig], transformers.PretrainedConfig]
    state: Callable[[DecoderLM], Iterator[tuple[str, torch.Tensor]]]


LLAMA = HFExport(transformers.LlamaForCausalLM, _llama_config, _llama_state)
GPT2 = HFExport(transformers.GPT2LMHeadModel, _gpt2_config, _gpt2_state)
MIXTRAL = HFExport(transformers.MixtralForCausalLM, _mixtral_config, _moe_state)


def exporter(cfg: ModelConfig) -> HFExport:
    arch = arch_of(cfg)
    if arch.hf_export is None:
        raise ValueError(f"model.arch={cfg.arch!r} has no Hugging Face export")
    return import_object(arch.hf_export)


def to_hf_config(cfg: ModelConfig, attn_implementation: str = "sdpa") -> transformers.PretrainedConfig:
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is None; set it before exporting")
    if cfg.mup.enabled:
        raise ValueError("model.mup.enabled: muP's forward multipliers (readout, attention scale) have no "
                         "transformers equivalent; export a run trained with model.mup.enabled=false")
    hf_cfg = exporter(cfg).config(cfg)
    hf_cfg._attn_implementation = attn_implementation
    return hf_cfg


def to_hf_state_dict(model: DecoderLM) -> StateDict:
    """Our weights under Hugging Face names and layouts (fresh contiguous copies, detached)."""
    state = {name: t.detach().clone().contiguous() for name, t in exporter(model.config).state(model)}
    if not model.config.tie_embeddings:
        state["lm_head.weight"] = model.lm_head.weight.detach().clone()
    return state


def to_hf_model(model: DecoderLM, attn_implementation: str = "sdpa") -> transformers.PreTrainedModel:
    """A transformers model (fp32, on CPU, train mode like a fresh one) holding a copy of our weights."""
    cfg = model.config
    hf_model = exporter(cfg).hf_class(to_hf_config(cfg, attn_implementation))
    missing, unexpected = hf_model.load_state_dict(to_hf_state_dict(model), strict=False)
    # A tied lm_head.weight is the embedding itself, so it is legitimately absent from our state.
    missing = [k for k in missing if not (cfg.tie_embeddings and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping to {type(hf_model).__name__} is incomplete: "
                           f"missing={missing}, unexpected={unexpected}")
    if cfg.tie_embeddings and hf_model.lm_head.weight.data_ptr() != hf_model.get_input_embeddings().weight.data_ptr():
        raise RuntimeError("Hugging Face model did not tie lm_head to the input embedding")
    return hf_model
