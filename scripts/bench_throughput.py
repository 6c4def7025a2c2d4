"""Training throughput of our LLaMA against transformers' LlamaForCausalLM, same shape and weights.

A training step is forward + cross-entropy (computed outside the model, the same way for both) +
backward + AdamW step. The models are timed in alternating rounds, so a change in machine load (the
CPU may be shared) hits both alike; the figure per model is the median step time after warmup.

CPU (always): hidden 128, 4 layers, 4 heads, intermediate 344, vocab 512, untied, batch 16,
seq 256, fp32, 2 threads. `--compile` adds a torch.compile row for our model (model and loss
compiled together; the first steps, untimed, include the compilation).
CUDA (when present): a 124M-class LLaMA (d_model 768, 12 layers, 12 heads, vocab 50304, seq 1024),
bf16 autocast, fused AdamW, torch.compile on (unless --no-compile), and its MFU against the device's
peak dense bf16 FLOP/s: MFU = flops_per_token * tokens_per_s / peak.

`--in-loop` (CUDA) measures instead the figure inside the harness's own loop: an ordinary `harness.loop.Trainer`
(its schedule, batch sampling, micro-batches, clipping, AdamW, loss fetch and NaN check each step)
on the same 124M shape and random tokens, timed per step; `--loss-chunk N` sets train.loss_chunk
(chunked cross-entropy inside the compiled forward), `--fused-ce liger` train.fused_ce (liger-kernel's
fused linear cross-entropy instead, loss_chunk rows per chunk; harness/models/fused_ce.py),
`--fetch-every N` train.fetch_every (the loss fetched to the host every N steps, as the loop then does).

    python scripts/bench_throughput.py [--compile] [--out bench.json]
    python scripts/bench_throughput.py --skip-cpu --in-loop --gpu-batch 32 [--micro-batch 16]
        [--loss-chunk 8192] [--fused-ce liger] [--fetch-every 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from harness.config import ModelConfig
from harness.models import build_model
from harness.models.hf_convert import to_hf_model

# Peak dense bf16 tensor-core FLOP/s (no sparsity), by a substring of torch.cuda.get_device_name().
PEAK_BF16_FLOPS = {
    "H200": 989.4e12,
    "H100 PCIe": 756.0e12,
    "H100": 989.4e12,  # SXM
    "A100": 312.0e12,
    "L40S": 362.05e12,
    "A10G": 70.0e12,
    "RTX 4090": 165.2e12,
}

CPU_SHAPE = ModelConfig(arch="llama", d_model=128, n_layers=4, n_heads=4, d_ff=344, vocab_size=512,
                        max_seq_len=256, tie_embeddings=False)
GPU_SHAPE = ModelConfig(arch="llama", d_model=768, n_layers=12, n_heads=12, vocab_size=50304,
                        max_seq_len=1024, tie_embeddings=False)


@dataclass
class Row:
    name: str
    device: str
    batch: int
    seq_len: int
    ms_per_step: float
    tokens_per_s: float
    mfu: Optional[float] = None


def lm_loss(logits_BTV: torch.Tensor, targets_BT: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy as the training loop computes it: on the flattened fp32 logits."""
    return F.cross_entropy(logits_BTV.flatten(0, 1).float(), targets_BT.flatten())


class TrainStep:
    """One model with its optimizer and a fixed batch; `__call__` runs one full training step."""

    def __init__(self, name: str, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 module: torch.nn.Module, input_ids: torch.Tensor, targets: torch.Tensor,
                 autocast_dtype: Optional[torch.dtype]) -> None:
        self.name = name
        self.loss_fn = loss_fn
        self.input_ids = input_ids
        self.targets = targets
        self.device_type = input_ids.device.type
        self.autocast_dtype = autocast_dtype
        # As the training loop does: fused AdamW on CUDA, the foreach implementation elsewhere.
        on_cuda = self.device_type == "cuda"
        self.optimizer = torch.optim.AdamW(module.parameters(), lr=1e-4, fused=on_cuda, foreach=not on_cuda)
        self.step_times_s: list[float] = []

    def __call__(self) -> None:
        with torch.autocast(self.device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            loss = self.loss_fn(self.input_ids, self.targets)
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def timed(self, steps: int) -> None:
        for _ in range(steps):
            _sync(self.device_type)
            start = time.perf_counter()
            self()
            _sync(self.device_type)
            self.step_times_s.append(time.perf_counter() - start)


def _sync(device_type: str) -> None:
    if device_type == "cuda":
        torch.cuda.synchronize()


def run_alternating(steps: list[TrainStep], warmup: int, rounds: int, steps_per_round: int) -> None:
    for step in steps:
        for _ in range(warmup):
            step()
        _sync(step.device_type)
    for _ in range(rounds):
        for step in steps:
            step.timed(steps_per_round)


def make_steps(cfg: ModelConfig, batch: int, device: torch.device, autocast_dtype: Optional[torch.dtype],
               compile_ours: bool, with_eager_ours: bool, with_hf: bool) -> list[TrainStep]:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    tokens = torch.randint(0, cfg.vocab_size, (batch, cfg.max_seq_len + 1), generator=gen).to(device)
    input_ids, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    ours = build_model(cfg)
    # Same initial weights for HF: export a copy before anything trains.
    hf = to_hf_model(ours, attn_implementation="sdpa").to(device).train() if with_hf else None
    ours = ours.to(device).train()
    steps: list[TrainStep] = []
    if with_eager_ours:
        steps.append(TrainStep("ours (eager)", lambda ids, tgt: lm_loss(ours(ids), tgt), ours, input_ids, targets,
                               autocast_dtype))
    if hf is not None:
        steps.append(TrainStep("HF LlamaForCausalLM sdpa (eager)", lambda ids, tgt: lm_loss(hf(input_ids=ids).logits, tgt),
                               hf, input_ids, targets, autocast_dtype))
    if compile_ours:
        compiled_model = build_model(cfg).to(device).train()
        # The loss is compiled with the model: Inductor fuses the float cast into the cross-entropy.
        compiled_loss = torch.compile(lambda ids, tgt: lm_loss(compiled_model(ids), tgt))
        steps.append(TrainStep("ours (torch.compile)", compiled_loss, compiled_model, input_ids, targets,
                               autocast_dtype))
    return steps


def to_rows(steps: list[TrainStep], device_name: str, batch: int, seq_len: int,
            flops_per_token: float, peak_flops: Optional[float]) -> list[Row]:
    rows = []
    for step in steps:
        median_s = statistics.median(step.step_times_s)
        tokens_per_s = batch * seq_len / median_s
        mfu = flops_per_token * tokens_per_s / peak_flops if peak_flops else None
        rows.append(Row(step.name, device_name, batch, seq_len, 1e3 * median_s, tokens_per_s, mfu))
    return rows


def print_table(title: str, rows: list[Row], params: int) -> None:
    print(f"\n{title}  ({params / 1e6:.2f}M params)")
    print(f"{'model':<36} {'ms/step':>9} {'tokens/s':>11} {'MFU':>7}")
    for r in rows:
        mfu = f"{100 * r.mfu:6.1f}%" if r.mfu is not None else "      -"
        print(f"{r.name:<36} {r.ms_per_step:9.1f} {r.tokens_per_s:11,.0f} {mfu}")
    by_name = {r.name: r for r in rows}
    hf = by_name.get("HF LlamaForCausalLM sdpa (eager)")
    for r in rows:
        if hf is not None and r is not hf:
            print(f"ratio {r.name} / HF: {r.tokens_per_s / hf.tokens_per_s:.3f}x")


def detect_peak_flops(device_name: str) -> Optional[float]:
    for key, flops in PEAK_BF16_FLOPS.items():
        if key in device_name:
            return flops
    return None


def _load_average() -> Optional[float]:
    """1-minute load average of the machine (None where the OS does not report it)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def bench_cpu(args: argparse.Namespace) -> list[Row]:
    torch.set_num_threads(args.threads)
    cfg = CPU_SHAPE
    steps = make_steps(cfg, args.cpu_batch, torch.device("cpu"), None, compile_ours=args.compile,
                       with_eager_ours=True, with_hf=True)
    load_before = _load_average()
    run_alternating(steps, args.warmup, args.rounds, args.steps_per_round)
    # Other processes on the same cores change the ratio, not only the times (2026-11-30: 1.04x at
    # load ~0.1, 1.4-1.6x at load ~4 on 2 cores): report the load with the figures.
    args.cpu_load = (load_before, _load_average())
    print(f"\nmachine load (1-min average) before / after: {args.cpu_load[0]} / {args.cpu_load[1]} "
          f"on {os.cpu_count()} CPUs")
    rows = to_rows(steps, f"cpu ({args.threads} threads)", args.cpu_batch, cfg.max_seq_len,
                   build_model(cfg).flops_per_token(cfg.max_seq_len), None)
    print_table(f"CPU, fp32, batch {args.cpu_batch} x seq {cfg.max_seq_len}", rows, build_model(cfg).num_params())
    return rows


def bench_cuda(args: argparse.Namespace) -> list[Row]:
    torch.backends.cuda.matmul.allow_tf32 = True
    device_name = torch.cuda.get_device_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else detect_peak_flops(device_name)
    if peak is None:
        print(f"unknown peak FLOP/s for {device_name!r}; pass --peak-tflops to get MFU")
    cfg = GPU_SHAPE
    steps = make_steps(cfg, args.gpu_batch, torch.device("cuda"), torch.bfloat16, compile_ours=not args.no_compile,
                       with_eager_ours=True, with_hf=not args.no_hf)
    run_alternating(steps, args.warmup, args.rounds, args.steps_per_round)
    model = build_model(cfg)
    rows = to_rows(steps, device_name, args.gpu_batch, cfg.max_seq_len, model.flops_per_token(cfg.max_seq_len), peak)
    print_table(f"{device_name}, bf16 autocast, fused AdamW, batch {args.gpu_batch} x seq {cfg.max_seq_len}",
                rows, model.num_params())
    return rows


def bench_in_loop(args: argparse.Namespace) -> list[Row]:
    """Steps of the harness loop itself (harness.loop.Trainer.train_step) on the 124M shape."""
    import dataclasses
    from pathlib import Path

    import numpy as np

    from harness.config import RunConfig, TrainConfig
    from harness.data.tokens import TokenData
    from harness.loop import Trainer
    from harness.runtime import setup_runtime

    device_name = torch.cuda.get_device_name()
    peak = args.peak_tflops * 1e12 if args.peak_tflops else detect_peak_flops(device_name)
    if args.sdpa == "cudnn":  # leave cuDNN's fused attention as the only fast SDPA backend
        torch.backends.cuda.enable_flash_sdp(False)
        torch.backends.cuda.enable_mem_efficient_sdp(False)
    model_cfg = dataclasses.replace(GPU_SHAPE)
    seq_len = model_cfg.max_seq_len
    train = TrainConfig(steps=10_000, seq_len=seq_len, batch_size=args.gpu_batch, micro_batch_size=args.micro_batch,
                        device="cuda", precision="bf16", compile=not args.no_compile, eval_sequences=8)
    if args.loss_chunk is not None:
        train.loss_chunk = args.loss_chunk
    train.fused_ce = args.fused_ce
    train.fetch_every = args.fetch_every
    cfg = RunConfig(model=model_cfg, train=train, name="bench_in_loop")
    cfg.validate()
    rt = setup_runtime(cfg.train)
    rng = np.random.default_rng(0)
    vocab = model_cfg.vocab_size
    data = TokenData(train=rng.integers(0, vocab, 20_000_000, dtype=np.uint16),
                     val=rng.integers(0, vocab, 16 * (seq_len + 1), dtype=np.uint16), vocab_size=vocab,
                     tokenizer=None, manifest={}, cache_path=Path("."))
    torch.manual_seed(0)
    trainer = Trainer(cfg, rt, data, build_model(model_cfg).to(rt.device))
    trainer.model.train()
    for step in range(1, args.warmup + 1):  # compilation happens here
        trainer.train_step(step)
    times = []
    step = args.warmup
    for _ in range(args.rounds * args.steps_per_round):
        torch.cuda.synchronize()
        start = time.perf_counter()
        # As Trainer.fit does: fetch_every steps queued, then their numbers fetched in one transfer.
        pending = []
        for _ in range(args.fetch_every):
            step += 1
            pending.append(trainer.device_step(step))
        trainer.fetch(pending, 1.0)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / args.fetch_every)
    median_s = statistics.median(times)
    tokens_per_s = args.gpu_batch * seq_len / median_s
    if args.profile:  # where the device time of a few more steps goes, by kernel
        from torch.profiler import ProfilerActivity, profile
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            trainer.fetch([trainer.device_step(step + i) for i in range(1, 4)], 1.0)
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=25, max_name_column_width=70))
    name = (f"harness loop ({'compiled' if train.compile else 'eager'}, sdpa {args.sdpa}, micro {args.micro_batch or args.gpu_batch}, "
            f"loss_chunk {train.loss_chunk}, fused_ce {train.fused_ce}, fetch_every {train.fetch_every})")
    row = Row(name, device_name, args.gpu_batch, seq_len, 1e3 * median_s, tokens_per_s,
              trainer.compute.flops_per_token * tokens_per_s / peak if peak else None)
    print_table(f"{device_name}, in the harness loop, bf16, batch {args.gpu_batch} x seq {seq_len}", [row],
                trainer.counts["params"])
    if torch.cuda.is_available():
        print(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    return [row]


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compile", action="store_true", help="CPU: add a torch.compile row for our model")
    parser.add_argument("--no-compile", action="store_true", help="CUDA: skip the torch.compile row")
    parser.add_argument("--no-hf", action="store_true", help="CUDA: skip the transformers row")
    parser.add_argument("--skip-cpu", action="store_true", help="only the CUDA part (when CUDA is present)")
    parser.add_argument("--skip-cuda", action="store_true", help="only the CPU part, even when CUDA is present")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cpu-batch", type=int, default=16)
    parser.add_argument("--gpu-batch", type=int, default=16)
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model (compilation happens here)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating timing rounds")
    parser.add_argument("--steps-per-round", type=int, default=4)
    parser.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak bf16 TFLOP/s")
    parser.add_argument("--in-loop", action="store_true", help="CUDA: time harness.loop.Trainer.train_step (instead of the standalone rows)")
    parser.add_argument("--micro-batch", type=int, default=None, help="--in-loop: train.micro_batch_size")
    parser.add_argument("--loss-chunk", type=int, default=None, help="--in-loop: train.loss_chunk (rows per CE chunk)")
    parser.add_argument("--fused-ce", choices=("none", "liger"), default="none",
                        help="--in-loop: train.fused_ce (liger: liger-kernel's fused linear cross-entropy)")
    parser.add_argument("--fetch-every", type=int, default=1, help="--in-loop: train.fetch_every (host syncs)")
    parser.add_argument("--sdpa", choices=("default", "cudnn"), default="default",
                        help="--in-loop: attention backend (cudnn: flash and mem-efficient SDPA disabled)")
    parser.add_argument("--profile", action="store_true", help="--in-loop: print the device time by kernel of 3 more steps")
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()

    rows: list[Row] = []
    if not args.skip_cpu:
        rows += bench_cpu(args)
    if torch.cuda.is_available() and not args.skip_cuda:
        rows += bench_in_loop(args) if args.in_loop else bench_cuda(args)
    if args.out:
        record = {
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "device": torch.cuda.get_device_name() if torch.cuda.is_available() and not args.skip_cuda else "cpu",
            "cpu": _cpu_name(),
            "args": vars(args),
            "rows": [asdict(r) for r in rows],
        }
        with open(args.out, "w") as f:
            json.dump(record, f, indent=2)
        print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
