"""What every model in the zoo shares: the config, parameter/FLOP accounting and the readout."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.config import ModelConfig
from harness.models import flops, mup
from harness.models.chunked_ce import chunked_readout_cross_entropy
from harness.models.fused_ce import liger_readout_cross_entropy
from harness.models.layers import linear
from harness.models.roles import ParamRole, initialize, spec_of


class DecoderLM(nn.Module):
    """Base class: `forward(input_ids[B, T]) -> logits[B, T, V]`, no loss inside; given `targets`
    [B, T] as well, the mean next-token cross-entropy instead (so the loss runs inside a compiled
    forward), computed `loss_chunk` tokens at a time when that is set (harness/models/chunked_ce.py),
    or by liger-kernel's fused linear cross-entropy when `fused_ce` is "liger" (harness/models/fused_ce.py)."""

    # Tokens per chunk of the readout + cross-entropy of a forward given targets; 0: whole logits.
    # Set by the training loop from train.loss_chunk: a way of computing, not part of the model.
    loss_chunk: int = 0
    # "liger": the readout + cross-entropy of a forward given targets as liger-kernel's fused kernel
    # (CUDA), in chunks of loss_chunk rows when set; "none": torch. Set from train.fused_ce, like loss_chunk.
    fused_ce: str = "none"

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.vocab_size is None:
            raise ValueError("model.vocab_size is None; the run must set it from the tokenizer "
                             "before build_model")
        cfg.validate()
        self.config = cfg
        # Read here, at construction, so subclasses build attention with the scale and every forward
        # applies the multipliers (neutral unless model.mup.enabled; see harness.models.mup).
        self.mup_rules = mup.forward_rules(cfg)

    def _init_parameters(self) -> None:
        """Initialize every parameter from its role tag, under muP's init rule when enabled."""
        initialize(self, mup.init_rule(self.config))

    def _embed_scale(self, x_BTD: torch.Tensor) -> torch.Tensor:
        m = self.mup_rules.input_mult
        return x_BTD if m == 1.0 else x_BTD * m

    # Subclasses create `self.tok_embeddings` (an nn.Embedding) before calling _make_readout.
    tok_embeddings: nn.Embedding

    def _make_readout(self) -> None:
        """Create the output projection, unless it is tied to the token embedding."""
        cfg = self.config
        self.lm_head = None if cfg.tie_embeddings else linear(
            cfg.d_model, cfg.vocab_size, role=ParamRole.READOUT, std=cfg.init_std)

    def _readout(self, h_BTD: torch.Tensor) -> torch.Tensor:
        # muP's readout multiplier, applied to the (D-wide) input rather than the (V-wide) logits.
        m = self.mup_rules.output_mult
        if m != 1.0:
            h_BTD = h_BTD * m
        if self.lm_head is not None:
            return self.lm_head(h_BTD)
        return F.linear(h_BTD, self.tok_embeddings.weight)

    def _output(self, h_BTD: torch.Tensor, targets_BT: torch.Tensor | None) -> torch.Tensor:
        """Logits of the final hidden states, or with targets the mean cross-entropy (fp32 scalar),
        as harness.loop.cross_entropy computes it on the logits."""
        if targets_BT is None:
            return self._readout(h_BTD)
        if self.fused_ce == "none" and self.loss_chunk <= 0:
            return F.cross_entropy(self._readout(h_BTD).float().flatten(0, 1), targets_BT.flatten())
        # The readout's weight and (muP-scaled) input go to a kernel that never holds all the logits.
        m = self.mup_rules.output_mult
        if m != 1.0:
            h_BTD = h_BTD * m
        weight_VD = self.lm_head.weight if self.lm_head is not None else self.tok_embeddings.weight
        if self.fused_ce == "liger":
            return liger_readout_cross_entropy(h_BTD, weight_VD, targets_BT, self.loss_chunk)
        return chunked_readout_cross_entropy(h_BTD, weight_VD, targets_BT, self.loss_chunk)

    def _check_seq_len(self, input_ids: torch.Tensor) -> None:
        seq_len, limit = input_ids.shape[1], self.config.max_seq_len
        if seq_len > limit:
            raise ValueError(f"sequence of {seq_len} tokens exceeds model.max_seq_len={limit}")

    def num_params(self, include_embedding: bool = True) -> int:
        """Counted from the actual tensors (shared ones once); see harness.models.flops for the rules."""
        return sum(
            p.numel() for p in self.parameters()
            if include_embedding or spec_of(p).role is not ParamRole.EMBEDDING
        )

    def num_active_params(self, include_embedding: bool = True) -> int:
        """Parameters one token uses; the same as num_params for dense models (see the MoE)."""
        return self.num_params(include_embedding)

    def flops_per_token(self, seq_len: int) -> float:
        return flops.flops_per_token(self.config, seq_len)

    # ---- hooks the training loop calls; no-ops for dense models (see harness.models.moe) ----
    def aux_losses(self) -> dict[str, torch.Tensor]:
        """Auxiliary loss terms of the last forward, each already weighted by its coefficient; the
        loop adds their sum to the cross-entropy it backpropagates (and logs them apart)."""
        return {}

    def after_optimizer_step(self) -> None:
        """Called once after every optimizer step (e.g. to update MoE balancing biases)."""

    def expert_load(self) -> torch.Tensor | None:
        """[n_layers, n_experts] fraction of routed token slots per expert over the last optimizer
        step (all micro-batches and ranks), or None for dense models."""
        return None
