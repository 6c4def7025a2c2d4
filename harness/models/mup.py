"""muP (maximal-update parameterization): the one module that owns it.

Every rule is applied through the role each parameter was tagged with at construction
(harness.models.roles), never by module name. width_mult = model.d_model / model.mup.base_width.
With `model.mup.enabled=false` every function here is the identity (standard parameterization, SP).

The Adam rules (Tensor Programs V, table 8, in the form microsoft/mup implements):

| rule | muP | where |
|---|---|---|
| init of HIDDEN matrices | std init_std / sqrt(width_mult) (variance ∝ 1/fan_in) | `init_rule` |
| LR of HIDDEN | lr / width_mult | `lr_multipliers` |
| readout, readout=multiplier | logits × output_mult / width_mult; init and LR unchanged | `forward_rules` |
| readout, readout=zero_init | zero init, LR lr / width_mult, logits × output_mult | `init_rule`, `lr_multipliers` |
| attention logits | 1/head_dim instead of 1/sqrt(head_dim) (attn_scale=1/d) | `forward_rules` |
| EMBEDDING, VECTOR | unchanged; the embedding output × input_mult | `forward_rules` |
| weight decay, weight_decay=width_scaled | HIDDEN wd × width_mult (lr·wd width-independent) | `wd_multipliers` |

readout=zero_init is the table-3 form for the readout (init variance 0 ≤ 1/fan_in², LR ∝ 1/fan_in);
weight decay is width-independent in AdamW when lr·wd is, the timescale 1/(lr·wd).

The model reads `forward_rules(cfg)` when it is constructed (DecoderLM.__init__) and
`init_rule(cfg)` when it initializes (DecoderLM._init_parameters); the training loop passes
`lr_multipliers` and `wd_multipliers` to `build_optimizer` (harness.loop.Trainer). A flag read
after construction would leave muP silently off, so nothing here is consulted later. The coord
check is in harness/models/coord_check.py.

Muon: with `optim.muon_adjust_lr=match_rms_adamw` (default) Muon's per-matrix update RMS matches
AdamW's, so the hidden LR multiplier 1/width_mult applies to it exactly as to AdamW. With
`muon_adjust_lr=original` (scale sqrt(max(1, fan_out/fan_in))) the orthogonalized update already has
the spectral norm muP asks for at every width, so the hidden multiplier is 1 there.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Mapping, Optional

from harness.config import ModelConfig
from harness.optimizers import OptimConfig
from harness.models.roles import InitKind, ParamRole, ParamSpec


def width_mult(cfg: ModelConfig) -> float:
    """d_model / base_width under muP; 1 when muP is off."""
    if not cfg.mup.enabled:
        return 1.0
    assert cfg.mup.base_width is not None  # ModelConfig.validate guarantees it
    return cfg.d_model / cfg.mup.base_width


@dataclass(frozen=True)
class ForwardRules:
    """Multipliers the forward applies; all neutral (SP) when muP is off."""

    input_mult: float = 1.0  # embedding output
    output_mult: float = 1.0  # readout input (equivalently the logits)
    # Softmax scale of attention logits; None means the kernel's default 1/sqrt(head_dim).
    attn_scale: Optional[float] = None


def forward_rules(cfg: ModelConfig) -> ForwardRules:
    if not cfg.mup.enabled:
        return ForwardRules()
    m = width_mult(cfg)
    readout_scale = 1.0 / m if cfg.mup.readout == "multiplier" else 1.0
    attn = 1.0 / cfg.head_dim if cfg.mup.attn_scale == "1/d" else None
    return ForwardRules(input_mult=cfg.mup.input_mult, output_mult=cfg.mup.output_mult * readout_scale,
                        attn_scale=attn)


def init_rule(cfg: ModelConfig) -> Callable[[ParamSpec], ParamSpec]:
    """Map a parameter's standard ParamSpec to its muP one (by role); the identity when muP is off."""
    if not cfg.mup.enabled:
        return lambda spec: spec
    m, zero_readout = width_mult(cfg), cfg.mup.readout == "zero_init"

    def rule(spec: ParamSpec) -> ParamSpec:
        if spec.role is ParamRole.HIDDEN and spec.init is InitKind.NORMAL:
            return dataclasses.replace(spec, std=spec.std / math.sqrt(m))
        if spec.role is ParamRole.READOUT and zero_readout:
            return dataclasses.replace(spec, init=InitKind.ZEROS, std=0.0)
        return spec

    return rule


def lr_multipliers(model_cfg: ModelConfig, optim_cfg: OptimConfig) -> dict[ParamRole, float]:
    """Per-role LR factors for build_optimizer; empty (all 1) when muP is off."""
    if not model_cfg.mup.enabled:
        return {}
    m = width_mult(model_cfg)
    factors = {ParamRole.HIDDEN: 1.0 if optim_cfg.width_independent_hidden_update else 1.0 / m}
    if model_cfg.mup.readout == "zero_init":
        factors[ParamRole.READOUT] = 1.0 / m
    return factors


def wd_multipliers(model_cfg: ModelConfig, optim_cfg: OptimConfig) -> dict[ParamRole, float]:
    """Per-role weight-decay factors: the inverse of the LR factor of HIDDEN under width_scaled, so
    that lr * weight_decay of hidden matrices is the same at every width ("Robust Layerwise Scaling
    Rules by Proper Weight Decay Tuning"; microsoft/mup's MuAdam/MuAdamW with decoupled_wd=False)."""
    if not model_cfg.mup.enabled or model_cfg.mup.weight_decay == "unchanged":
        return {}
    return {ParamRole.HIDDEN: 1.0 / lr_multipliers(model_cfg, optim_cfg)[ParamRole.HIDDEN]}


def optimizer_multipliers(model_cfg: ModelConfig, optim_cfg: OptimConfig) -> dict[str, Mapping[ParamRole, float]]:
    """Keyword arguments for harness.optim.routing.build_optimizer."""
    return {"lr_multipliers": lr_multipliers(model_cfg, optim_cfg),
            "wd_multipliers": wd_multipliers(model_cfg, optim_cfg)}
