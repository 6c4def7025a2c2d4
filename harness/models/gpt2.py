"""GPT-2-style decoder: LayerNorm, GELU MLP, learned absolute positions, biases."""

from __future__ import annotations

import torch
from torch import nn

from harness.config import ModelConfig
from harness.models.base import DecoderLM
from harness.models.layers import CausalSelfAttention, GeluMLP, PreNormBlock, embedding, layer_norm, residual_out_std


class GPT2(DecoderLM):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        std, out_std = cfg.init_std, residual_out_std(cfg.init_std, cfg.n_layers)
        self.tok_embeddings = embedding(cfg.vocab_size, cfg.d_model, std=std)
        self.pos_embeddings = embedding(cfg.max_seq_len, cfg.d_model, std=std)
        self.layers = nn.ModuleList(
            PreNormBlock(
                attn_norm=layer_norm(cfg.d_model, cfg.norm_eps),
                attn=CausalSelfAttention(cfg.d_model, cfg.n_heads, cfg.n_heads, std=std, out_std=out_std,
                                         bias=True, scale=self.mup_rules.attn_scale),
                mlp_norm=layer_norm(cfg.d_model, cfg.norm_eps),
                mlp=GeluMLP(cfg.d_model, cfg.ffn_dim, std=std, out_std=out_std),
            )
            for _ in range(cfg.n_layers)
        )
        self.norm = layer_norm(cfg.d_model, cfg.norm_eps)
        self._make_readout()
        self._init_parameters()

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        self._check_seq_len(input_ids)
        seq_len = input_ids.shape[1]
        # [T, D] position rows broadcast over the batch.
        x_BTD = self._embed_scale(self.tok_embeddings(input_ids) + self.pos_embeddings.weight[:seq_len])
        for layer in self.layers:
            x_BTD = layer(x_BTD)
        return self._output(self.norm(x_BTD), targets)
