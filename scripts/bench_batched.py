"""Tokens/s of K runs trained as one stacked batch (harness/batched/) vs the same K runs trained one
after another, in one process, with the same configs (K learning rates and seeds of one shape).

Both sides run the harness's own step: K ordinary `harness.loop.Trainer`s, each stepped in turn
(`train_step`: schedule, its batch, forward/backward, clip, AdamW step, loss fetched), against one
`BatchedTrainer` over K members. Eager mode on both sides. The two are timed in alternating rounds,
so a change in machine load hits both alike; each figure is the median round after warmup. The data
is random tokens (no tokenizer to train: nothing here depends on the text).

    CPU (default): K=8 LLaMA 4 x 64 (~0.26M params, vocab 512), batch 8 x 128 tokens, fp32, 2 threads
        python scripts/bench_batched.py
    GPU: K=16 LLaMA 4 x 256 (~3.4M params), batch 16 x 256 tokens, bf16 autocast
        python scripts/bench_batched.py --device cuda --k 16

Prints one line per side and the ratio (batched / sequential tokens/s); `--out FILE` writes JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.batched.trainer import BatchedTrainer, MemberTrainer  # noqa: E402
from harness.config import ModelConfig, RunConfig, TrainConfig, optim_config, schedule_config  # noqa: E402
from harness.data.tokens import TokenData  # noqa: E402
from harness.loop import Trainer  # noqa: E402
from harness.models import build_model  # noqa: E402
from harness.runtime import setup_runtime  # noqa: E402

PRESETS = {
    "cpu": dict(k=8, d_model=64, n_layers=4, n_heads=4, batch_size=8, seq_len=128, threads=2),
    "cuda": dict(k=16, d_model=256, n_layers=4, n_heads=4, batch_size=16, seq_len=256, threads=0),
}


def random_tokens(vocab: int, n_train: int, n_val: int) -> TokenData:
    rng = np.random.default_rng(0)
    return TokenData(train=rng.integers(0, vocab, n_train, dtype=np.uint16),
                     val=rng.integers(0, vocab, n_val, dtype=np.uint16), vocab_size=vocab, tokenizer=None,
                     manifest={}, cache_path=Path("."))


def run_configs(args: argparse.Namespace) -> list[RunConfig]:
    cfgs = []
    for k in range(args.k):
        model = ModelConfig(arch="llama", d_model=args.d_model, n_layers=args.n_layers, n_heads=args.n_heads,
                            vocab_size=args.vocab, max_seq_len=args.seq_len)
        train = TrainConfig(steps=10_000, seq_len=args.seq_len, batch_size=args.batch_size, seed=k,
                            device=args.device, precision=args.precision, num_threads=args.threads,
                            eval_sequences=args.batch_size)
        lr = 1e-3 * 2 ** (k / 4)  # an LR sweep, 2x every 4 runs
        cfgs.append(RunConfig(model=model, optim=optim_config("adamw", lr=lr),
                              schedule=schedule_config("cosine", warmup_steps=100), train=train, name=f"bench{k}"))
    for cfg in cfgs:
        cfg.validate()
    return cfgs


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--k", type=int, default=None, help="runs (default 8 on cpu, 16 on cuda)")
    parser.add_argument("--d-model", type=int, default=None)
    parser.add_argument("--n-layers", type=int, default=None)
    parser.add_argument("--n-heads", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--seq-len", type=int, default=None)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default 2 on cpu)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto",
                        help="auto: bf16 autocast on cuda, fp32 on cpu")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per timed round")
    parser.add_argument("--rounds", type=int, default=6, help="timed rounds per side (alternating)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per side first")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    args = parser.parse_args()
    for name, value in PRESETS[args.device].items():
        if getattr(args, name) is None:
            setattr(args, name, value)

    cfgs = run_configs(args)
    rt = setup_runtime(cfgs[0].train)
    data = random_tokens(args.vocab, 2_000_000, 64 * (args.seq_len + 1))

    def trainer(cls: type, cfg: RunConfig) -> Trainer:
        torch.manual_seed(cfg.train.seed)
        return cls(cfg, rt, data, build_model(cfg.model).to(rt.device))

    sequential = [trainer(Trainer, cfg) for cfg in cfgs]
    for t in sequential:
        t.model.train()
    batch = BatchedTrainer([trainer(MemberTrainer, cfg) for cfg in cfgs], rt)
    params = sequential[0].counts["params"]
    step = {"seq": 0, "bat": 0}

    def seq_steps(n: int) -> None:
        for _ in range(n):
            step["seq"] += 1
            for t in sequential:
                t.train_step(step["seq"])

    def bat_steps(n: int) -> None:
        for _ in range(n):
            step["bat"] += 1
            batch.train_step(step["bat"])

    seq_steps(args.warmup)
    bat_steps(args.warmup)
    times: dict[str, list[float]] = {"seq": [], "bat": []}
    for _ in range(args.rounds):
        for side, fn in (("seq", seq_steps), ("bat", bat_steps)):
            sync(rt.device)
            start = time.perf_counter()
            fn(args.steps)
            sync(rt.device)
            times[side].append(time.perf_counter() - start)
    tokens = args.k * args.steps * args.batch_size * args.seq_len  # per round, all K runs
    seq_tps, bat_tps = (tokens / statistics.median(times[s]) for s in ("seq", "bat"))
    # The fastest round of each side: on a machine shared with other jobs, the least disturbed one.
    seq_best, bat_best = (tokens / min(times[s]) for s in ("seq", "bat"))
    device_name = torch.cuda.get_device_name(0) if rt.device.type == "cuda" else f"cpu x {torch.get_num_threads()} threads"
    precision = str(rt.autocast_dtype or torch.float32).replace("torch.", "")
    print(f"{args.k} runs of LLaMA {args.n_layers} x {args.d_model} ({params / 1e6:.3f}M params), batch "
          f"{args.batch_size} x {args.seq_len}, {precision}, {device_name}")
    print(f"sequential: {seq_tps:12,.0f} tokens/s  ({statistics.median(times['seq']) / args.steps * 1e3:.1f} ms per step of all K)")
    print(f"batched:    {bat_tps:12,.0f} tokens/s  ({statistics.median(times['bat']) / args.steps * 1e3:.1f} ms per step of all K)")
    print(f"ratio (batched / sequential): {bat_tps / seq_tps:.2f}x median, {bat_best / seq_best:.2f}x best rounds "
          f"({args.rounds} alternating rounds of {args.steps} steps)")
    if args.out:
        Path(args.out).write_text(json.dumps({
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "device": device_name,
            "precision": precision, "k": args.k, "params": params, "d_model": args.d_model, "n_layers": args.n_layers,
            "batch_size": args.batch_size, "seq_len": args.seq_len, "sequential_tokens_per_s": seq_tps,
            "batched_tokens_per_s": bat_tps, "ratio": bat_tps / seq_tps, "ratio_best_rounds": bat_best / seq_best,
            "round_seconds": times}, indent=2))


if __name__ == "__main__":
    main()
