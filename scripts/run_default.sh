#!/usr/bin/env bash
# README command 1: train the default ~1M-parameter LLaMA on the embedded offline text and plot it.
# Extra arguments are Hydra overrides, e.g. `scripts/run_default.sh train.steps=100 name=short`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" HF_DATASETS_OFFLINE="${HF_DATASETS_OFFLINE:-1}"
export TOKENIZERS_PARALLELISM=false
exec "$root/.venv/bin/python" -m harness.train "$@"
