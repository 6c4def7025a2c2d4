"""muP learning-rate transfer: sweep the LR on a factor-2 grid at several widths, with and without muP.

For each parameterization and width, trains a small LLaMA on the embedded text (short cosine runs,
AdamW, the loop's data order, optimizer and muP multipliers) and reports the final validation loss
per LR, the best LR per width and how many grid steps it moved from the smallest width. Under muP
the optimum should stay put; under the standard parameterization (SP) it drifts to smaller LRs as
width grows. Not a test: it takes minutes on a CPU.

    python scripts/bench_mup_transfer.py                                  # widths 32 64 128, ~3 min CPU
    python scripts/bench_mup_transfer.py --widths 64 128 256 512 --steps 300 --device cuda
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from harness.config import DataConfig, ModelConfig, MupConfig, optim_config, schedule_config
from harness.data.batches import train_batch, val_batches
from harness.data.tokens import prepare_tokens
from harness.models import build_model, mup
from harness.optim.routing import build_optimizer, set_lr
from harness.schedules import build_schedule


def train_once(data, width: int, log2_lr: float, use_mup: bool, args, val) -> float:
    torch.manual_seed(args.seed)
    model_cfg = ModelConfig(arch="llama", d_model=width, n_layers=args.layers, n_heads=args.heads,
                            vocab_size=data.vocab_size, max_seq_len=args.seq_len,
                            mup=MupConfig(enabled=use_mup, base_width=args.widths[0]))
    optim_cfg = optim_config("adamw", lr=2.0 ** log2_lr, weight_decay=args.weight_decay)
    device = torch.device(args.device)
    model = build_model(model_cfg).to(device)
    optimizer = build_optimizer(model, optim_cfg, device, **mup.optimizer_multipliers(model_cfg, optim_cfg))
    schedule = build_schedule(schedule_config("cosine", warmup_steps=args.steps // 10), total_steps=args.steps,
                              peak_lr=optim_cfg.lr)
    for step in range(1, args.steps + 1):
        set_lr(optimizer, schedule.multiplier(step))
        batch = train_batch(data, seed=args.seed, step=step, batch_size=args.batch_size, seq_len=args.seq_len)
        batch = batch.to(device)
        loss = F.cross_entropy(model(batch[:, :-1]).flatten(0, 1), batch[:, 1:].flatten())
        if not math.isfinite(loss.item()):
            return math.inf
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    model.eval()
    with torch.no_grad():
        v = val.to(device)
        return float(F.cross_entropy(model(v[:, :-1]).flatten(0, 1), v[:, 1:].flatten()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128], help="first one is muP's base width")
    ap.add_argument("--log2-lrs", type=float, nargs="+", default=[-11, -10, -9, -8, -7, -6, -5, -4])
    ap.add_argument("--steps", type=int, default=80)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--max-chars", type=int, default=2_000_000)
    ap.add_argument("--out", default="mup_transfer.json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = os.environ.get("HARNESS_CACHE", str(Path.home() / ".cache" / "harness"))
    data = prepare_tokens(DataConfig(source="embedded", vocab_size=512, max_chars=args.max_chars,
                                     val_tokens=65536, cache_dir=cache))
    (val,) = val_batches(data, batch_size=64, seq_len=args.seq_len, n_batches=1)

    results: dict[str, dict[int, dict[float, float]]] = {}
    start = time.time()
    for name, use_mup in (("SP", False), ("muP", True)):
        results[name] = {}
        for width in args.widths:
            results[name][width] = {}
            for log2_lr in args.log2_lrs:
                results[name][width][log2_lr] = loss = train_once(data, width, log2_lr, use_mup, args, val)
                print(f"{name:4s} width {width:5d} lr 2^{log2_lr:+.0f}: val {loss:.4f}  ({time.time() - start:.0f} s)",
                      flush=True)

    print(f"\nval loss after {args.steps} steps (llama, {args.layers} layers, batch {args.batch_size} x "
          f"{args.seq_len}, AdamW, cosine); muP base width {args.widths[0]}")
    header = "param  width  " + "  ".join(f"2^{x:+.0f}".rjust(7) for x in args.log2_lrs) + "   best lr  shift"
    print(header)
    summary = {}
    for name, by_width in results.items():
        first_best = None
        for width, by_lr in by_width.items():
            best = min(by_lr, key=by_lr.get)
            first_best = best if first_best is None else first_best
            shift = int(round(best - first_best))
            summary.setdefault(name, {})[width] = {"best_log2_lr": best, "grid_steps_moved": shift,
                                                   "best_val_loss": by_lr[best]}
            cells = "  ".join(f"{by_lr[x]:7.3f}" for x in args.log2_lrs)
            print(f"{name:5s} {width:6d}  {cells}   2^{best:+.0f}  {shift:+d}")
    Path(args.out).write_text(json.dumps({"args": vars(args), "val_loss": {n: {str(w): {str(k): v for k, v in d.items()}
                                          for w, d in r.items()} for n, r in results.items()}, "summary": summary},
                                         indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
