"""LLaMA-style decoder: RMSNorm, RoPE, SwiGLU, grouped-query attention, no biases."""

from __future__ import annotations

import torch
from torch import nn

from harness.config import ModelConfig
from harness.models.base import DecoderLM
from harness.models.layers import (
    CausalSelfAttention, PreNormBlock, RMSNorm, RotaryEmbedding, SwiGLU, embedding, residual_out_std,
)


class Llama(DecoderLM):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        std, out_std = cfg.init_std, residual_out_std(cfg.init_std, cfg.n_layers)
        self.tok_embeddings = embedding(cfg.vocab_size, cfg.d_model, std=std)
        # One table of cos/sin shared by all layers.
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.layers = nn.ModuleList(
            PreNormBlock(
                attn_norm=RMSNorm(cfg.d_model, cfg.norm_eps),
                attn=CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.kv_heads, std=std, out_std=out_std,
                                         bias=False, rotary=self.rotary, scale=self.mup_rules.attn_scale),
                mlp_norm=RMSNorm(cfg.d_model, cfg.norm_eps),
                mlp=self._make_mlp(cfg, std, out_std),
            )
            for _ in range(cfg.n_layers)
        )
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self._make_readout()
        self._init_parameters()

    def _make_mlp(self, cfg: ModelConfig, std: float, out_std: float) -> nn.Module:
        """The feed-forward of each block (MoE overrides this with routed experts)."""
        return SwiGLU(cfg.d_model, cfg.ffn_dim, std=std, out_std=out_std)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        self._check_seq_len(input_ids)  # RoPE tables cover max_seq_len positions
        x_BTD = self._embed_scale(self.tok_embeddings(input_ids))
        for layer in self.layers:
            x_BTD = layer(x_BTD)
        return self._output(self.norm(x_BTD), targets)
