#!/usr/bin/env bash
# GPU check (one CUDA GPU, under 8 minutes; 184 s on an H200): first the GPU tests (tests/test_cuda.py:
# every preset trains and samples on CUDA, resume, CUDA graphs, torchrun with NCCL), then training images/s
# of the presets on the GPU with the fast path (bf16 autocast, data resident on the GPU, channels_last) at a large batch, and the achieved
# fraction of the GPU's measured bf16 matrix rate. Run from the repository root:
#   GANKIT_DATA=../shared/data bash benchmarks/gpu_check.sh
# Writes pytest_cuda.log, gpu_check.json, gpu_check_compiled.json and gpu_inception.json to $OUT when that
# is set (the device tool's folder of files that come back), else to benchmarks/out/. torch.compile(mode="reduce-overhead") (CUDA graphs) for
# the small, launch-bound nets is measured as a second table for three 28x28 presets. Each row also has
# sampling images/s on the GPU and the domain evaluator's images/s (on the CPU, where gankit evaluate runs it).
#
# Through the device tool, whose machine has PyTorch (no .venv: python3 is used) but not tomli-w and not
# ../shared (nothing beside the checkout travels), prepare once here, in the repository root:
#   echo /.whl/ >> .git/info/exclude; echo /.gpudata/ >> .git/info/exclude
#   .venv/bin/python -m pip download --no-deps --only-binary=:all: -d .whl tomli-w
#   mkdir -p .gpudata && cp -r ../shared/data/mnist ../shared/data/cifar10 ../shared/data/SOURCES.md .gpudata/
# then run: command "GANKIT_DATA=.gpudata bash benchmarks/gpu_check.sh", carry [".whl", ".gpudata"],
# timeout_s 560. Carried wheels in .whl are installed to a temporary folder first.
#
# DEVICE=cpu BATCH=8 SECONDS_EACH=1 runs the first table's plumbing on a CPU in about two minutes (a smoke
# test, no numbers worth keeping).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # gankit from this checkout, installed or not
if compgen -G ".whl/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" .whl/*.whl
  export PYTHONPATH="$PYTHONPATH:$site"
fi
export GANKIT_DATA=${GANKIT_DATA:-../shared/data} PYTHONUNBUFFERED=1
DEVICE=${DEVICE:-cuda}
BATCH=${BATCH:-1024}
SECONDS_EACH=${SECONDS_EACH:-5}
DEST=${OUT:-benchmarks/out}
mkdir -p "$DEST"
command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import torch; print('torch', torch.__version__, '| cuda', torch.cuda.is_available())"
if [ "$DEVICE" = cuda ]; then  # a failing test is reported; the tables still run
  timeout 150 "$PY" -m pytest tests/test_cuda.py -q -rfEs -p no:cacheprovider --durations=5 2>&1 \
    | tee "$DEST/pytest_cuda.log" || echo "GPU tests: failures above (exit ${PIPESTATUS[0]})"
fi
common=(--gankit-only --keep-going --reps 1 --seconds "$SECONDS_EACH" --sample-n 2000 --set "train.device='$DEVICE'"
        --set "data.batch_size=$BATCH" --set "train.g_batch_size=$BATCH")
# mnist-best is the small 28x28 DCGAN the 50,000 images/s goal is about; seed 004 is the largest step
timeout 200 "$PY" benchmarks/throughput.py "${common[@]}" --out "$DEST/gpu_check.json" \
  mnist-best seed002-mlp-mnist seed001-dcgan-mnist seed000-dcgan-letters seed004-dcgan-ships \
  || echo "first table cut short (exit $?): its JSON holds the presets measured"
[ "$DEVICE" = cuda ] || exit 0  # CUDA graphs need CUDA; the smoke test stops here
timeout 170 "$PY" benchmarks/throughput.py "${common[@]}" --set "train.compile='reduce-overhead'" \
  --out "$DEST/gpu_check_compiled.json" mnist-best seed002-mlp-mnist seed001-dcgan-mnist
# Inception on the GPU (gankit eval --metrics fid), against the CPU: needs the network's 83 MiB file (the
# [inception] extra or GANKIT_INCEPTION), which the device tool's 64 MiB of carried files cannot hold
timeout 120 "$PY" benchmarks/inception_speed.py --device "$DEVICE" --n 2000 --out "$DEST/gpu_inception.json" \
  || echo "Inception speed: not measured (exit $?; without the network it says so above)"
