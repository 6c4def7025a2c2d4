"""muP's coord check (microsoft/mup, nanoGPT-mup): activation sizes over the first steps, per width.

Kept apart from harness/models/mup.py because it builds a model and an optimizer, which the
model package itself imports mup to do (harness.models -> base -> mup).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.config import ModelConfig
from harness.models import build_model
from harness.models.mup import optimizer_multipliers
from harness.optim.routing import build_optimizer
from harness.optimizers import OptimConfig


def coord_check(model_cfg: ModelConfig, optim_cfg: OptimConfig, tokens_BT, steps: int) -> dict[str, list[float]]:
    """Mean |x| of the embedding output, each block's attention and MLP output and the logits, at
    the forward of steps 1..`steps` (step t sees the weights after t-1 optimizer updates).

    The model is built from `model_cfg` (seed it first), trained on the fixed batch `tokens_BT` with
    the optimizer `optim_cfg` describes and muP's multipliers, as the training loop builds it. Under
    muP the numbers stay roughly flat across widths; under SP they grow with width (microsoft/mup's
    and nanoGPT-mup's coord check).
    """
    model = build_model(model_cfg)
    optimizer = build_optimizer(model, optim_cfg, torch.device("cpu"), **optimizer_multipliers(model_cfg, optim_cfg))
    record: dict[str, list[float]] = {}

    def hook(name: str):
        def fn(module, args, output) -> None:
            record.setdefault(name, []).append(float(output.detach().abs().mean()))
        return fn

    handles = [model.tok_embeddings.register_forward_hook(hook("embedding"))]
    for i, layer in enumerate(model.layers):
        handles.append(layer.attn.register_forward_hook(hook(f"attn.{i}")))
        handles.append(layer.mlp.register_forward_hook(hook(f"mlp.{i}")))
    try:
        for _ in range(steps):
            logits = model(tokens_BT[:, :-1])
            record.setdefault("logits", []).append(float(logits.detach().abs().mean()))
            loss = F.cross_entropy(logits.flatten(0, 1), tokens_BT[:, 1:].flatten())
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    finally:
        for h in handles:
            h.remove()
    return record
