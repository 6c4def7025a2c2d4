#!/usr/bin/env bash
# FSDP2 on one GPU under torchrun: a 60-step run, then a relaunch from its step-30 checkpoint;
# prints the largest difference between the first and the replayed losses. Usage: bash scripts/gpu_fsdp_check.sh
set -uo pipefail
out="${OUT:-gpu_check_out}"; mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
export HARNESS_CACHE="${HARNESS_CACHE:-/tmp/harness_cache}" PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
run=/tmp/gpu_runs/fsdp; rm -rf "$run"
py="${PYTHON:-python3}"
args=(model=llama_124m train=gpu data.vocab_size=8192 data.val_tokens=300000 logging.progress=false
      logging.plot=false train.compile=false train.steps=60 train.checkpoint_every=30 train.parallel=fsdp run_dir=$run)
$py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${args[@]}" 2>&1 | grep -v Warn | tail -25
cp "$run/curve.jsonl" "$out/fsdp_first_curve.jsonl"; cp "$run/status.json" "$out/fsdp_status.json"
rm -f "$run/status.json" "$run/checkpoints/step_00000060.pt"
$py -m torch.distributed.run --standalone --nproc_per_node=1 -m harness.train "${args[@]}" 2>&1 | grep -v Warn | tail -5
cp "$run/status.json" "$out/fsdp_resumed_status.json"
$py - "$out/fsdp_first_curve.jsonl" "$run/curve.jsonl" <<'PY'
import json, statistics, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
print("rows", len(a), len(b), "max |loss diff| after resume", max(abs(x["loss"] - y["loss"]) for x, y in zip(a, b)),
      "median tok/s", statistics.median(r["tokens_per_s"] for r in a[5:]), "final loss", a[-1]["loss"])
PY
