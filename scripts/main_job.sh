#!/usr/bin/env bash
# The main job (README): set up, then run the paper's Table 1 ablation on the synthetic
# motion dataset (generated on first use), end to end on the CPU. Extra arguments go to
# p3d-ablation, e.g. `bash scripts/main_job.sh --models resnet50 p3d`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# Large activations: keep glibc from mmap-ing and unmapping them on every call (PERF_NOTES;
# mmap_threshold is capped at 32 MiB, so mmap_max=0 is what works).
export GLIBC_TUNABLES=${GLIBC_TUNABLES:-glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=17179869184}
time python3 -m p3d_lightning.commands.ablation "$@"
