"""Optimizer FLOPs per step as a share of the model's training FLOPs per step, for a tiny CPU model
and a 124M model: `python scripts/bench_optimizer_flops.py` (counts from harness.optim.routing.step_flops
and harness/models/flops.py; nothing is trained)."""

from __future__ import annotations

from harness.config import ModelConfig, optim_config
from harness.models import build_model, flops
from harness.optim.routing import step_flops

CASES = (
    ("d=32 LLaMA, 2 layers, 128 tokens/step", ModelConfig(arch="llama", d_model=32, n_layers=2, n_heads=1,
                                                         vocab_size=512, max_seq_len=32), 128),
    ("124M LLaMA (768 x 12), 0.5M tokens/step", ModelConfig(arch="llama", d_model=768, n_layers=12, n_heads=12,
                                                           vocab_size=50257, max_seq_len=1024), 524288),
)


def main() -> None:
    for label, model_cfg, tokens_per_step in CASES:
        model = build_model(model_cfg)
        per_step = flops.flops_per_token(model_cfg, model_cfg.max_seq_len) * tokens_per_step
        shares = {name: step_flops(model, optim_config(name)) / per_step for name in ("adamw", "muon", "soap")}
        print(f"{label}: " + ", ".join(f"{k} {v:.2%}" for k, v in shares.items()))


if __name__ == "__main__":
    main()
