#!/usr/bin/env bash
# GPU check (one CUDA GPU, under 8 minutes): training images/s of every preset on the GPU with the fast
# path (bf16 autocast, data resident on the GPU, channels_last) at a large batch, and the achieved
# fraction of the GPU's measured bf16 matrix rate. Run from the repository root:
#   GANKIT_DATA=../shared/data bash benchmarks/gpu_check.sh
# Writes benchmarks/out/gpu_check.json. torch.compile(mode="reduce-overhead") (CUDA graphs) for the
# small, launch-bound nets is measured as a second row for the 28x28 presets.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
BATCH=${BATCH:-1024}
common=(--gankit-only --reps 1 --seconds 8 --set "train.device='cuda'" --set "data.batch_size=$BATCH"
        --set "train.g_batch_size=$BATCH")
timeout 300 "$PY" benchmarks/throughput.py "${common[@]}" --out benchmarks/out/gpu_check.json \
  seed002-mlp-mnist seed001-dcgan-mnist seed000-dcgan-letters seed004-dcgan-ships
timeout 150 "$PY" benchmarks/throughput.py "${common[@]}" --set "train.compile='reduce-overhead'" \
  --out benchmarks/out/gpu_check_compiled.json seed002-mlp-mnist seed001-dcgan-mnist
