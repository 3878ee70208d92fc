#!/usr/bin/env bash
# The test command (README and .ci/run): set up, then run the whole suite on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export WANDB_MODE=disabled WANDB_SILENT=true CUDA_VISIBLE_DEVICES=""
python3 -m pytest -q "$@"
