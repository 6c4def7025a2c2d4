"""Mixture-of-experts proxy (arch=moe): the LLaMA block with its MLP replaced by routed experts.

Per token x (after the MLP's RMSNorm), in each layer:

    logits = x W_router^T                                  [n_experts], computed in fp32
    scores = softmax(logits)  or  sigmoid(logits)           (model.moe.router_score)
    chosen = top-k of (scores + expert_bias)                the bias only under moe.balance=aux_free
    w      = scores[chosen] / sum(scores[chosen])           renormalised top-k weights (as Mixtral)
    y      = sum_{e in chosen} w_e * SwiGLU_e(x)  (+ SwiGLU_shared(x) if moe.shared_expert)

Dropless: every token reaches all of its k experts (no capacity, no token dropping). Tokens are
sorted by expert and each expert runs one matmul over its contiguous slice (a loop over experts:
grouped_mm has no fp32 backward on CPU). Every expert runs on every step, on zero rows if no token
chose it, so DDP sees every parameter used.

Balancing (model.moe.balance):
- aux_loss: Switch Transformer's load-balancing loss, per layer and micro-batch,
  `n_experts * sum_e f_e * P_e` with f_e the fraction of the k*N routed slots that went to e and P_e
  the mean router probability of e (sigmoid scores normalised to sum to 1 first). It is 1 for a
  uniform router and up to n_experts for a collapsed one; summed over layers, times
  moe.aux_loss_coef. (Hugging Face's Mixtral loss is k times this for one layer.)
- aux_free: DeepSeek-V3's auxiliary-loss-free balancing. A per-expert bias (a persistent buffer,
  so it is checkpointed) is added to the scores for *selection only*; after each optimizer step it
  moves by moe.bias_update_rate toward equal load: bias_e += rate * sign(mean load - load_e), the
  load counted over the whole step (all micro-batches, all ranks).
- none: neither.
The router z-loss (ST-MoE), mean over tokens of logsumexp(logits)^2, times moe.z_loss_coef, summed
over layers, is added whenever that coefficient is positive.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from harness.config import ModelConfig
from harness.models.llama import Llama
from harness.models.layers import SwiGLU, linear
from harness.models.roles import ParamRole


def load_balancing_loss(probs_NE: torch.Tensor, chosen_NK: torch.Tensor) -> torch.Tensor:
    """Switch loss n_experts * sum_e f_e * P_e: 1 when routing is uniform, n_experts when collapsed.

    probs_NE: router probabilities (rows sum to 1); chosen_NK: the experts each token was sent to.
    f_e (counts, no gradient) is the fraction of routed slots at e; P_e is differentiable.
    """
    n_experts = probs_NE.shape[1]
    counts_E = torch.bincount(chosen_NK.flatten(), minlength=n_experts).to(probs_NE.dtype)
    f_E = counts_E / chosen_NK.numel()
    return n_experts * (f_E * probs_NE.mean(0)).sum()


def router_z_loss(logits_NE: torch.Tensor) -> torch.Tensor:
    """ST-MoE z-loss: mean over tokens of logsumexp(router logits)^2 (keeps logits small)."""
    return torch.logsumexp(logits_NE, dim=-1).square().mean()


class MoEFeedForward(nn.Module):
    """Token-choice top-k router over dropless SwiGLU experts, optionally plus a shared expert.

    After each forward it holds `aux` (weighted aux-loss terms of that forward) and, in training
    mode, adds the tokens routed to each expert to `load_counts` (a plain tensor attribute, not a
    buffer: DDP would overwrite buffers with rank 0's at every forward).
    """

    def __init__(self, cfg: ModelConfig, *, std: float, out_std: float) -> None:
        super().__init__()
        moe = cfg.moe
        assert moe is not None  # arch=moe requires the block (harness/archs.py)
        self.n_experts, self.top_k = moe.n_experts, moe.top_k
        self.score, self.balance = moe.router_score, moe.balance
        self.aux_loss_coef, self.z_loss_coef = moe.aux_loss_coef, moe.z_loss_coef
        self.bias_update_rate = moe.bias_update_rate
        d, f = cfg.d_model, cfg.expert_ffn_dim
        self.router = linear(d, moe.n_experts, role=ParamRole.HIDDEN, std=std)
        self.experts = nn.ModuleList(SwiGLU(d, f, std=std, out_std=out_std) for _ in range(moe.n_experts))
        self.shared = SwiGLU(d, f, std=std, out_std=out_std) if moe.shared_expert else None
        # Selection bias of aux-free balancing (always present so checkpoints have one layout).
        self.register_buffer("expert_bias", torch.zeros(moe.n_experts))
        self.aux: dict[str, torch.Tensor] = {}
        self.load_counts: torch.Tensor | None = None

    def route(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(logits [N, E], scores [N, E], chosen experts [N, k], their weights [N, k]), all fp32."""
        # Routing in fp32 even under bf16 autocast: top-k decisions are sensitive to rounding.
        with torch.autocast(x_ND.device.type, enabled=False):
            logits_NE = F.linear(x_ND.float(), self.router.weight.float())
        scores_NE = logits_NE.softmax(-1) if self.score == "softmax" else logits_NE.sigmoid()
        select_NE = scores_NE + self.expert_bias if self.balance == "aux_free" else scores_NE
        chosen_NK = select_NE.topk(self.top_k, dim=-1).indices
        weights_NK = scores_NE.gather(1, chosen_NK)
        weights_NK = weights_NK / weights_NK.sum(-1, keepdim=True)
        return logits_NE, scores_NE, chosen_NK, weights_NK

    # Eager even under torch.compile: each expert's slice length changes every step, so a compiled
    # dispatch hits a guard on the sizes and recompiles until the recompile limit (seen on an H200).
    @torch.compiler.disable
    def run_experts(self, x_sorted: torch.Tensor, counts_E: torch.Tensor) -> torch.Tensor:
        """Each expert on its contiguous slice of the expert-sorted token slots."""
        chunks = x_sorted.split(counts_E.tolist())
        return torch.cat([expert(chunk) for expert, chunk in zip(self.experts, chunks)])

    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor:
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(-1, D)
        logits_NE, scores_NE, chosen_NK, weights_NK = self.route(x_ND)

        # Sort the N*k (token, expert) slots by expert; each expert takes one contiguous slice.
        flat_K = chosen_NK.flatten()
        order = flat_K.argsort(stable=True)
        token_of = order // self.top_k
        counts_E = torch.bincount(flat_K, minlength=self.n_experts)
        x_sorted = x_ND.index_select(0, token_of)
        y_sorted = self.run_experts(x_sorted, counts_E)
        y_sorted = y_sorted * weights_NK.flatten()[order].unsqueeze(1).to(y_sorted.dtype)
        y_ND = y_sorted.new_zeros(x_ND.shape[0], D).index_add_(0, token_of, y_sorted)
        if self.shared is not None:
            y_ND = y_ND + self.shared(x_ND)

        self.aux = {}
        if self.balance == "aux_loss" and self.aux_loss_coef > 0:
            probs_NE = scores_NE if self.score == "softmax" else scores_NE / scores_NE.sum(-1, keepdim=True)
            self.aux["aux_loss"] = self.aux_loss_coef * load_balancing_loss(probs_NE, chosen_NK)
        if self.z_loss_coef > 0:
            self.aux["z_loss"] = self.z_loss_coef * router_z_loss(logits_NE)
        if self.training:
            counts = counts_E.detach().to(torch.float64)
            self.load_counts = counts if self.load_counts is None else self.load_counts + counts
        return y_ND.view(B, T, D).to(x_BTD.dtype)


class MoE(Llama):
    """LLaMA-style decoder whose every MLP is a MoEFeedForward (see the module docstring)."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__(cfg)
        self._last_load: torch.Tensor | None = None

    def _make_mlp(self, cfg: ModelConfig, std: float, out_std: float) -> nn.Module:
        return MoEFeedForward(cfg, std=std, out_std=out_std)

    def _moe_layers(self) -> list[MoEFeedForward]:
        return [layer.mlp for layer in self.layers]

    def num_active_params(self, include_embedding: bool = True) -> int:
        """All parameters minus the (n_experts - top_k) routed experts a token does not use."""
        first = self.layers[0].mlp
        per_expert = sum(p.numel() for p in first.experts[0].parameters())
        unused = self.config.n_layers * (first.n_experts - first.top_k) * per_expert
        return self.num_params(include_embedding) - unused

    def aux_losses(self) -> dict[str, torch.Tensor]:
        """Weighted aux terms of the last forward, each summed over layers."""
        total: dict[str, torch.Tensor] = {}
        for mlp in self._moe_layers():
            for name, value in mlp.aux.items():
                total[name] = total[name] + value if name in total else value
        return total

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Turn the step's routed-token counts into loads (across ranks); nudge aux-free biases."""
        layers = self._moe_layers()
        if any(mlp.load_counts is None for mlp in layers):
            return
        counts_LE = torch.stack([mlp.load_counts for mlp in layers])
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(counts_LE)  # every rank then applies the same bias update
        load_LE = counts_LE / counts_LE.sum(-1, keepdim=True).clamp_min(1)
        self._last_load = load_LE.float().cpu()
        for mlp, load_E in zip(layers, load_LE):
            mlp.load_counts = None
            if mlp.balance == "aux_free":
                mlp.expert_bias += mlp.bias_update_rate * torch.sign(load_E.mean() - load_E).to(mlp.expert_bias.dtype)

    def expert_load(self) -> torch.Tensor | None:
        return self._last_load
