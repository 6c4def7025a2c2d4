#!/usr/bin/env bash
# GPU checks of the training path, for a machine with one CUDA GPU and torch already installed.
# Runs: the throughput/MFU benchmark; a 124M LLaMA run (bf16 autocast, torch.compile, fused AdamW);
# the same under torchrun with DDP and with FSDP2; a kill-free resume check (two launches).
# Writes figures and logs to ${OUT:-gpu_check_out}/. Usage: bash scripts/gpu_check.sh
set -uo pipefail
out="${OUT:-gpu_check_out}"; mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HARNESS_CACHE="${HARNESS_CACHE:-/tmp/harness_cache}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
runs=/tmp/gpu_runs; rm -rf "$runs"
py="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))" | tee -a "$out/device.txt"

echo "== 1. throughput / MFU benchmark"
$py scripts/bench_throughput.py --skip-cpu --no-hf --gpu-batch ${BENCH_BATCH:-32} --out "$out/bench_gpu.json" 2>&1 | tee "$out/bench.log" | tail -20

common=(model=llama_124m train=gpu data.vocab_size=8192 data.val_tokens=300000 logging.progress=false logging.plot=false
        train.eval_every=100 train.checkpoint_every=100)
echo "== 2. single GPU: bf16 + compile + fused AdamW, 300 steps"
$py -m harness.train "${common[@]}" train.steps=300 run_dir=$runs/single 2>&1 | tail -5
cp $runs/single/status.json "$out/single_status.json"; cp $runs/single/curve.jsonl "$out/single_curve.jsonl"

echo "== 3. torchrun DDP (1 rank) and FSDP2 (1 rank), 60 steps each, eager"
for mode in ddp fsdp; do
  $py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${common[@]}" train.steps=60 \
      train.compile=false train.checkpoint_every=30 train.parallel=$mode run_dir=$runs/$mode 2>&1 | tail -3
  cp $runs/$mode/status.json "$out/${mode}_status.json"
done
echo "== 4. FSDP resume: relaunch the run from its step-30 checkpoint and compare the replayed losses"
cp $runs/fsdp/curve.jsonl $runs/fsdp_first_curve.jsonl
rm -f $runs/fsdp/status.json; rm -f $runs/fsdp/checkpoints/step_00000060.pt
$py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${common[@]}" train.steps=60 \
    train.compile=false train.checkpoint_every=30 train.parallel=fsdp run_dir=$runs/fsdp 2>&1 | tail -3
cp $runs/fsdp/status.json "$out/fsdp_resumed_status.json"
$py - "$runs" "$out" <<'PY'
import json, statistics, sys
runs, out = sys.argv[1], sys.argv[2]
summary = {}
for name in ("single", "ddp", "fsdp"):
    rows = [json.loads(l) for l in open(f"{runs}/{name}/curve.jsonl")]
    st = json.load(open(f"{runs}/{name}/status.json"))
    tps = statistics.median(r["tokens_per_s"] for r in rows[10:])
    summary[name] = {"state": st["state"], "steps": len(rows), "final_loss": rows[-1]["loss"],
                     "median_tokens_per_s": tps, "flops_per_token": st["flops_per_token"],
                     "resumed_from": st.get("resumed_from")}
first = [json.loads(l)["loss"] for l in open(f"{runs}/fsdp_first_curve.jsonl")]
again = [json.loads(l)["loss"] for l in open(f"{runs}/fsdp/curve.jsonl")]
summary["fsdp_resume_max_abs_loss_diff"] = max(abs(a - b) for a, b in zip(first, again))
summary["fsdp_resume_rows"] = len(again)
json.dump(summary, open(f"{out}/gpu_runs_summary.json", "w"), indent=2)
print(json.dumps(summary, indent=2))
PY
