#!/usr/bin/env bash
# Install p3d-lightning and its dependencies. On a machine without an NVIDIA GPU the CPU
# build of torch is installed first, so that the torch requirement in setup.cfg is already
# met and pip does not pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    "$PY" -m pip install "torch>=2.6,<2.15"
  else
    # CPU wheel (a local file on the project's machines; elsewhere use PyTorch's CPU index).
    "$PY" -m pip install "torch==2.13.0"
  fi
fi
"$PY" -m pip install -q -e ".[dev]"
