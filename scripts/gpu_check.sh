#!/usr/bin/env bash
# GPU checks of the training path, for a machine with one CUDA GPU and torch already installed.
#
#   bench   throughput / MFU benchmark (scripts/bench_throughput.py: eager and torch.compile, bf16)
#   single  a 124M LLaMA run in the training loop (bf16 autocast, torch.compile, fused AdamW): in-loop MFU
#   optim   every registered optimizer (and an MoE proxy, compiled) for 60 steps on CUDA in one Hydra
#           multirun: finite, falling loss and tokens/s per optimizer
#   moe     the 1M MoE compiled (also run by optim), counting torch.compile recompiles
#   batched K=16 stacked 3.4M proxies vs sequential (scripts/bench_batched.py --device cuda)
#   mfu     in-loop MFU of the 124M LLaMA (bench_throughput.py --in-loop) for MFU_VARIANTS
#   fusedce train.fused_ce=liger: liger's loss and gradients against torch's (bf16, scripts/check_fused_ce.py),
#           then the in-loop MFU of the 124M LLaMA without and with it (FUSEDCE_SHAPE, batch:micro:loss_chunk)
#   diloco  2 simulated DiLoCo replicas on CUDA
#   dist    torchrun DDP and FSDP2 (1 rank each), then an FSDP relaunch from its step-30 checkpoint
#
# Choose sections with GPU_CHECKS="bench single optim dist" (default: all). Pure-Python packages the
# GPU image lacks (hydra-core, omegaconf, antlr4, pytorch-optimizer) can ride along in .gpu_site/
# (copied from the local environment; see docs/BENCHMARKS.md); so can liger-kernel (the gpu extra,
# not installed locally): `python -m pip install --no-deps --target .gpu_site liger-kernel==0.8.5`.
# Figures and logs go to ${OUT:-gpu_check_out}/, a summary to $OUT/summary.json. Usage: bash scripts/gpu_check.sh
set -uo pipefail
out="${OUT:-gpu_check_out}"; mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1 WANDB_MODE=disabled
export HARNESS_CACHE="${HARNESS_CACHE:-/tmp/harness_cache}"
site=""; [ -d .gpu_site ] && site=":$PWD/.gpu_site"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}$site"
checks="${GPU_CHECKS:-bench batched mfu fusedce single optim diloco dist}"
runs=/tmp/gpu_runs; rm -rf "$runs"; mkdir -p "$runs"
py="${PYTHON:-python3}"
want() { [[ " $checks " == *" $1 "* ]]; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/device.txt"

if want bench; then
  echo "== bench: throughput / MFU (eager and compiled, batch ${BENCH_BATCH:-32} x 1024)"
  timeout 240 $py scripts/bench_throughput.py --skip-cpu --no-hf --gpu-batch ${BENCH_BATCH:-32} \
      --out "$out/bench_gpu.json" 2>&1 | tee "$out/bench.log" | grep -v Warn | tail -12
fi

if want batched; then
  echo "== batched: K=16 LLaMA 4 x 256 (3.4M) proxies stacked vs sequential, bf16 eager (issue 14)"
  timeout ${BATCHED_TIMEOUT:-150} $py scripts/bench_batched.py --device cuda --rounds 4 --steps 3 \
      --out "$out/bench_batched_gpu.json" 2>&1 | grep -v Warn | tail -5
fi

if want mfu; then
  # In-loop MFU of the 124M LLaMA (vocab 50,304, seq 1024, compiled, bf16): harness.loop.Trainer's own steps.
  # Variants as "batch:micro:loss_chunk:fetch_every" (0 = off), each a fresh process (its own compile).
  for v in ${MFU_VARIANTS:-32:32:0:1 32:32:8192:10 64:64:8192:10}; do
    IFS=: read -r gb mb lc fe <<<"$v"
    chunk=""; [ "$lc" != 0 ] && chunk="--loss-chunk $lc"
    echo "== mfu: batch $gb, micro $mb, loss_chunk $lc, fetch_every $fe"
    timeout ${MFU_TIMEOUT:-130} $py scripts/bench_throughput.py --skip-cpu --in-loop --gpu-batch $gb --micro-batch $mb \
        $chunk --fetch-every $fe --warmup 3 --rounds 3 --steps-per-round $(( fe > 1 ? 2 : 10 )) \
        --out "$out/mfu_${gb}_${mb}_${lc}_${fe}.json" 2>&1 | grep -v Warn | tail -4
  done
fi

if want fusedce; then
  # liger-kernel is pure Python (Triton kernels, compiled on first use); triton comes with CUDA torch.
  if ! $py -c "import liger_kernel, triton" 2>/dev/null; then
    echo "== fusedce: SKIPPED, liger_kernel or triton not importable; before the session, locally:"
    echo "   python -m pip install --no-deps --target .gpu_site liger-kernel==0.8.5"
  else
    echo "== fusedce: liger vs torch, loss and gradients of a small LLaMA, bf16 (tolerance 1e-2), eager + compiled"
    timeout 150 $py scripts/check_fused_ce.py --compile 2>&1 | tee "$out/fusedce_check.log" | grep -v Warn | tail -8
    IFS=: read -r gb mb lc <<<"${FUSEDCE_SHAPE:-64:64:8192}"
    for fc in none liger; do  # each a fresh process (its own compile); none first: the baseline of this session
      echo "== fusedce: in-loop MFU, batch $gb, micro $mb, loss_chunk $lc, fetch_every 10, fused_ce $fc"
      timeout ${MFU_TIMEOUT:-130} $py scripts/bench_throughput.py --skip-cpu --in-loop --gpu-batch $gb --micro-batch $mb \
          --loss-chunk $lc --fused-ce $fc --fetch-every 10 --warmup 3 --rounds 3 --steps-per-round 2 \
          --out "$out/fusedce_mfu_${fc}_${gb}_${mb}_${lc}.json" 2>&1 | grep -v Warn | tail -4
    done
  fi
fi

if want diloco; then
  echo "== diloco: 2 simulated replicas of the 1M LLaMA on CUDA (bf16), 40 steps, H=10"
  timeout 120 $py -m harness.train model=llama_1m train=gpu train.steps=40 train.batch_size=32 train.seq_len=256 \
      train.compile=false train.eval_every=20 train.eval_sequences=64 train.checkpoint_every=1000 \
      train.parallel=diloco train.diloco.replicas=2 train.diloco.inner_steps=10 logging.progress=false \
      logging.plot=false run_dir=$runs/diloco 2>&1 | grep -v Warn | tail -3
fi

big=(model=llama_124m train=gpu data.vocab_size=8192 data.val_tokens=300000 logging.progress=false logging.plot=false
     train.eval_every=100 train.checkpoint_every=100)
if want single; then
  echo "== single: 124M LLaMA, bf16 + compile + fused AdamW, 300 steps"
  timeout 300 $py -m harness.train "${big[@]}" train.steps=300 run_dir=$runs/single 2>&1 | grep -v Warn | tail -4
fi

small=(model=llama_1m train=gpu train.steps=60 train.batch_size=32 train.micro_batch_size=32 train.seq_len=256
       train.compile=false train.eval_every=30 train.eval_sequences=64 train.checkpoint_every=1000
       logging.progress=false logging.plot=false)
if want optim; then
  echo "== optim: every optimizer, 60 steps of the 1M LLaMA on CUDA (bf16, eager), plus the 1M MoE compiled"
  timeout 300 $py -m harness.train -m "${small[@]}" optim=adamw,adam,nadamw,ademamix,lion,sgd,muon,soap \
      hydra.sweep.dir=$runs/optim 2>&1 | grep -E "completed|rror|Traceback" | tail -20
fi
if want optim || want moe; then
  echo "== moe: the 1M MoE, compiled, 60 steps (recompiles counted)"
  TORCH_LOGS=recompiles timeout 200 $py -m harness.train "${small[@]}" model=moe_1m train.compile=true \
      run_dir=$runs/moe_compiled > $out/moe_compiled.log 2>&1
  echo "recompiles: $(grep -c 'Recompiling function' $out/moe_compiled.log)"; grep completed $out/moe_compiled.log
fi

if want dist; then
  echo "== dist: torchrun DDP and FSDP2 (1 rank), 60 steps each, eager; FSDP relaunch from step 30"
  for mode in ddp fsdp; do
    timeout 200 $py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${big[@]}" train.steps=60 \
        train.compile=false train.checkpoint_every=30 train.parallel=$mode run_dir=$runs/$mode 2>&1 | grep -v Warn | tail -2
  done
  cp $runs/fsdp/curve.jsonl $runs/fsdp_first_curve.jsonl
  rm -f $runs/fsdp/status.json $runs/fsdp/checkpoints/step_00000060.pt
  timeout 200 $py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${big[@]}" train.steps=60 \
      train.compile=false train.checkpoint_every=30 train.parallel=fsdp run_dir=$runs/fsdp 2>&1 | grep -v Warn | tail -2
fi

$py - "$runs" "$out" <<'PY'
import glob, json, os, statistics, sys
import yaml
runs, out = sys.argv[1], sys.argv[2]
PEAK_BF16 = 989.4e12  # dense bf16 FLOP/s of an H100/H200 SXM (datasheet)
summary = {}
def rows(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]
for curve in sorted(glob.glob(f"{runs}/**/curve.jsonl", recursive=True)):
    d = os.path.dirname(curve)
    if not os.path.exists(f"{d}/status.json"):
        continue
    st = json.load(open(f"{d}/status.json"))
    r = rows(curve)
    cfg_path = f"{d}/config.yaml"
    name = os.path.relpath(d, runs)
    if os.path.exists(cfg_path):
        cfg = yaml.safe_load(open(cfg_path))
        name = f"{name} ({cfg.get('model', {}).get('arch')}, {cfg.get('optim', {}).get('name')})"
    tps = [x["tokens_per_s"] for x in r[5:] if x.get("tokens_per_s")]
    med = statistics.median(tps) if tps else None
    summary[name] = {"state": st.get("state"), "rows": len(r), "first_loss": r[0]["loss"] if r else None,
                     "final_loss": r[-1]["loss"] if r else None,
                     "median_tokens_per_s": med, "flops_per_token": st.get("flops_per_token"),
                     "mfu_vs_989TF": med * st["flops_per_token"] / PEAK_BF16 if med and st.get("flops_per_token") else None,
                     "resumed_from": st.get("resumed_from")}
first = f"{runs}/fsdp_first_curve.jsonl"
if os.path.exists(first) and os.path.exists(f"{runs}/fsdp/curve.jsonl"):
    a = [x["loss"] for x in rows(first)]; b = [x["loss"] for x in rows(f"{runs}/fsdp/curve.jsonl")]
    summary["fsdp_resume_max_abs_loss_diff"] = max(abs(x - y) for x, y in zip(a, b))
json.dump(summary, open(f"{out}/summary.json", "w"), indent=2)
print(json.dumps(summary, indent=1))
PY
