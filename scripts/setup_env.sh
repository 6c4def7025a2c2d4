#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment in .venv and install the package.
# Idempotent: does nothing when .venv already holds an install of the current pyproject.toml.
# torch is installed FIRST and pinned (a CPU wheel of 2.13.0 on these machines); everything after is
# installed under a constraints file so no dependency can pull a different (multi-GB CUDA) torch.
# Override the pin with TORCH_SPEC (e.g. TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
torch_spec="${TORCH_SPEC:-torch==2.13.0}"
stamp="$venv/.harness-install-stamp"
want="$(cat "$root/pyproject.toml" | sha256sum | cut -d' ' -f1) $torch_spec"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
echo "[setup] creating the environment in $venv (one time, ~3 minutes)" >&2
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --upgrade pip >&2
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet $torch_spec >&2
torch_version="$("$venv/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
constraints="$venv/constraints.txt"
echo "torch==$torch_version" > "$constraints"
"$venv/bin/python" -m pip install --quiet -c "$constraints" -e "$root[dev]" >&2
"$venv/bin/python" -c "import torch, harness; print('[setup] torch', torch.__version__, 'ready')" >&2
echo "$want" > "$stamp"
