#!/usr/bin/env bash
# README command 2: run the test suite (sets up .venv first if needed). Extra args go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup_env.sh"
cd "$root"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false WANDB_MODE=offline
# Two pytest-xdist workers (CI has 2 cores; most tests wait on single-threaded training subprocesses).
# loadgroup keeps together what tests/conftest.py groups: the Slurm tests (one cluster per session) and
# tests sharing a module's trained fixture. HARNESS_TEST_WORKERS=0 runs in one process.
workers="${HARNESS_TEST_WORKERS:-2}"
exec "$root/.venv/bin/python" -m pytest -q -n "$workers" --dist loadgroup "$@"
