"""Parameter and FLOP counts as pure functions of a ModelConfig (no model needs to be built).

FLOPs convention (PaLM appendix B / Chinchilla), training FLOPs per token:

    flops_per_token = 6 * N_matmul + 12 * n_layers * seq_len * d_model

- N_matmul counts every weight matrix used in a matmul: all attention and MLP matrices plus the
  output projection V*d_model, which is counted even when it is tied to the input embedding (it is
  still a matmul). The input-embedding and position-embedding lookups cost nothing. Biases, norms,
  activations, softmax and RoPE are ignored.
- 6 = 2 (multiply + add) * 3 (forward, and a backward that costs twice the forward).
- The attention term: per layer and token, QK^T and AV each cost 2 * seq_len * d_model forward
  (d_model = n_heads * head_dim, also under grouped-query attention), times 3 for training; the
  causal mask is *not* used to halve it.

Mixture of experts (arch=moe): N_matmul counts the *active* matrices only, those one token uses:
attention, the router (d_model x moe.n_experts), the shared expert if any and moe.top_k of the
routed experts (3 * d_model * expert_ffn each). The total count (`num_params`) holds all experts;
`active_params` counts as a token sees the model (routed experts: top_k of n_experts). Softmax /
sigmoid, top-k and the weighted sum of expert outputs are ignored like other elementwise work.

The per-arch counts (attention and MLP matrices, norms and biases, position table) are methods of
the arch's class in harness/archs.py; this module adds them up.

Parameter counts: `num_params(cfg)` counts each distinct tensor once (a tied embedding/readout
matrix once). The non-embedding count leaves out the token embedding and, for gpt2, the learned
position embedding; an untied readout matrix *is* counted (it is a matmul weight), a tied one is not
(it is the token embedding).
"""

from __future__ import annotations

from harness.archs import arch_of
from harness.config import ModelConfig


def _require_vocab(cfg: ModelConfig) -> int:
    if cfg.vocab_size is None:
        raise ValueError("model.vocab_size is None; set it (the run sets it from the tokenizer) "
                         "before counting parameters or FLOPs")
    return cfg.vocab_size


def _block_matmul_params(cfg: ModelConfig, active: bool = False) -> int:
    """Weight-matrix parameters of one transformer block (no biases, no norms); for arch=moe all
    experts, or with `active` only the ones a token uses (shared + top_k routed)."""
    arch = arch_of(cfg)
    return arch.attention_matrix_params(cfg) + arch.mlp_matrix_params(cfg, active)


def matmul_params(cfg: ModelConfig) -> int:
    """N_matmul of the FLOPs formula: (active) block matrices plus the readout, tied or not."""
    return cfg.n_layers * _block_matmul_params(cfg, active=True) + _require_vocab(cfg) * cfg.d_model


def num_params(cfg: ModelConfig, include_embedding: bool = True, active: bool = False) -> int:
    """All parameters; with `active`, only those one token uses (differs from all for arch=moe)."""
    vocab, d, arch = _require_vocab(cfg), cfg.d_model, arch_of(cfg)
    block = _block_matmul_params(cfg, active) + arch.block_vector_params(cfg)
    non_embedding = cfg.n_layers * block + arch.final_norm_params(cfg)
    if not cfg.tie_embeddings:
        non_embedding += vocab * d  # the separate readout matrix
    if not include_embedding:
        return non_embedding
    embedding = vocab * d + arch.position_params(cfg)
    return non_embedding + embedding


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward); see the module docstring."""
    attention_scores = 12 * cfg.n_layers * seq_len * cfg.d_model
    return float(6 * matmul_params(cfg) + attention_scores)


def active_params(cfg: ModelConfig, include_embedding: bool = True) -> int:
    """Parameters one token uses: `num_params` with top_k of the n_experts routed experts."""
    return num_params(cfg, include_embedding, active=True)
