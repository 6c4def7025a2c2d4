"""Model zoo: `build_model(cfg)` returns the decoder of the arch registered as `cfg.arch`
(harness/archs.py: llama, gpt2, moe).

Model API (relied on by the training loop):
    model(input_ids: LongTensor[B, T]) -> logits FloatTensor[B, T, V]   (no loss inside)
    model.num_params(include_embedding=True) -> int
    model.flops_per_token(seq_len) -> float    (training FLOPs; convention in harness.models.flops)
    model.config -> ModelConfig
    model.num_active_params(include_embedding=True) -> int   (per token; < num_params for MoE)
    model.aux_losses() -> dict[str, Tensor]   (weighted aux terms of the last forward; {} if dense)
    model.after_optimizer_step() -> None      (MoE balancing-bias update; no-op if dense)
    model.expert_load() -> Tensor[L, E] | None  (routed-token fractions of the last step)
"""

from __future__ import annotations

from harness.archs import arch_of, import_object
from harness.config import ModelConfig
from harness.models.base import DecoderLM
from harness.models import fused_ops
from harness.models.flops import active_params, flops_per_token, matmul_params, num_params
from harness.models.gpt2 import GPT2
from harness.models.llama import Llama
from harness.models.moe import MoE
from harness.models.roles import ParamRole, param_roles

def build_model(cfg: ModelConfig) -> DecoderLM:
    """Build and initialize the model `cfg` describes (on CPU, fp32; the caller moves it)."""
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is None; set it from the tokenizer before build_model")
    return import_object(arch_of(cfg).model)(cfg)


__all__ = [
    "DecoderLM", "GPT2", "Llama", "MoE", "ModelConfig", "ParamRole", "active_params", "build_model",
    "flops_per_token", "fused_ops", "matmul_params", "num_params", "param_roles",
]
