"""Model architectures: one registered class per `model.arch`, holding everything that differs
between archs outside the torch modules themselves: config rules, the default MLP width,
parameter accounting (harness/models/flops.py builds the FLOPs formula on it), where the torch
model class lives, and its Hugging Face export (if any). Pure Python: harness.config imports it.

| arch  | positions | norm      | MLP                      | biases | grouped-query attention | export  |
|-------|-----------|-----------|--------------------------|--------|-------------------------|---------|
| llama | RoPE      | RMSNorm   | SwiGLU                   | no     | yes                     | Llama   |
| gpt2  | learned   | LayerNorm | GELU                     | yes    | no                      | GPT-2   |
| moe   | RoPE      | RMSNorm   | top-k SwiGLU experts     | no     | yes                     | Mixtral |

Adding an arch: a class here with `@ARCHS.register("name")` (its torch module named by `model`, its
export by `hf_export`), plus conf/model/name_*.yaml.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Optional

from harness.checks import require
from harness.registry import Registry

if TYPE_CHECKING:
    from harness.config import ModelConfig

ARCHS: Registry["Arch"] = Registry("model.arch")


def import_object(path: str) -> Any:
    """`"package.module:Name"` -> the object (imported only when first needed)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


class Arch:
    """Base: what every decoder in the zoo shares. Subclasses override what differs."""

    name = ""
    # The DecoderLM subclass that implements the arch, and the harness/models/hf_convert.py exporter.
    model = ""
    hf_export: Optional[str] = None
    grouped_query_attention = True
    rope = True
    uses_moe = False

    def validate(self, cfg: "ModelConfig") -> None:
        if not self.grouped_query_attention:
            require(cfg.n_kv_heads is None, "model.n_kv_heads",
                    f"grouped-query attention is not part of arch={self.name}; set it to null")
        if self.rope:
            require(cfg.head_dim % 2 == 0, "model.n_heads", "RoPE needs an even head dimension (d_model / n_heads)")
        if self.uses_moe:
            require(cfg.moe is not None, "model.moe",
                    f"arch={self.name} needs a moe block (e.g. model.moe.n_experts=8; see conf/model/moe_tiny.yaml)")
        else:
            require(cfg.moe is None, "model.moe",
                    f"only used by arch=moe (this is arch={self.name}); remove it or set model.arch=moe")

    def default_ffn_dim(self, cfg: "ModelConfig") -> int:
        """SwiGLU: 8/3 d_model rounded up to a multiple of ffn_multiple_of (about the FLOPs of a 4x GELU MLP)."""
        m = cfg.ffn_multiple_of
        raw = int(8 * cfg.d_model / 3)
        return m * ((raw + m - 1) // m)

    # ---- parameter accounting (the conventions are in harness/models/flops.py) ----
    def attention_matrix_params(self, cfg: "ModelConfig") -> int:
        d, kv_width = cfg.d_model, cfg.kv_heads * cfg.head_dim
        return d * d + 2 * d * kv_width + d * d  # q, k, v, out

    def mlp_matrix_params(self, cfg: "ModelConfig", active: bool) -> int:
        return 3 * cfg.d_model * cfg.ffn_dim  # SwiGLU: gate, up, down

    def block_vector_params(self, cfg: "ModelConfig") -> int:
        """Norm gains and biases of one block."""
        return 2 * cfg.d_model  # two RMSNorm gains

    def final_norm_params(self, cfg: "ModelConfig") -> int:
        return cfg.d_model

    def position_params(self, cfg: "ModelConfig") -> int:
        """Learned position embeddings (counted with the embedding); 0 under RoPE."""
        return 0


@ARCHS.register("llama")
class Llama(Arch):
    """RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases."""

    name = "llama"
    model = "harness.models.llama:Llama"
    hf_export = "harness.models.hf_convert:LLAMA"


@ARCHS.register("gpt2")
class GPT2(Arch):
    """LayerNorm, GELU MLP, learned absolute positions, biases."""

    name = "gpt2"
    model = "harness.models.gpt2:GPT2"
    hf_export = "harness.models.hf_convert:GPT2"
    grouped_query_attention = False
    rope = False

    def default_ffn_dim(self, cfg: "ModelConfig") -> int:
        return 4 * cfg.d_model

    def mlp_matrix_params(self, cfg: "ModelConfig", active: bool) -> int:
        return 2 * cfg.d_model * cfg.ffn_dim  # GELU: up, down

    def block_vector_params(self, cfg: "ModelConfig") -> int:
        d = cfg.d_model
        attention_biases = 3 * d + d  # qkv, out
        mlp_biases = cfg.ffn_dim + d
        return 2 * 2 * d + attention_biases + mlp_biases  # two LayerNorms (gain + bias)

    def final_norm_params(self, cfg: "ModelConfig") -> int:
        return 2 * cfg.d_model

    def position_params(self, cfg: "ModelConfig") -> int:
        return cfg.max_seq_len * cfg.d_model


@ARCHS.register("moe")
class MoE(Llama):
    """The llama block with its MLP replaced by routed experts (harness/models/moe.py, `model.moe`)."""

    name = "moe"
    model = "harness.models.moe:MoE"
    hf_export = "harness.models.hf_convert:MIXTRAL"
    uses_moe = True

    def validate(self, cfg: "ModelConfig") -> None:
        super().validate(cfg)
        assert cfg.moe is not None
        cfg.moe.validate()

    def mlp_matrix_params(self, cfg: "ModelConfig", active: bool) -> int:
        moe = cfg.moe
        assert moe is not None
        expert = 3 * cfg.d_model * cfg.expert_ffn_dim  # SwiGLU: gate, up, down
        routed = moe.top_k if active else moe.n_experts
        return cfg.d_model * moe.n_experts + (routed + int(moe.shared_expert)) * expert  # router + experts


def arch_of(cfg: "ModelConfig") -> Arch:
    """The registered arch of a model config (an unknown name fails here, listing the known ones)."""
    return ARCHS.get(cfg.arch)()
