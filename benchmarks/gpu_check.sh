#!/usr/bin/env bash
# The one prepared GPU check, run on the lent CUDA machine from the repository root:
#   bash benchmarks/gpu_check.sh [OUT_DIR] [TRAIN_MINUTES]
# builds the extension against that machine's torch, runs the CUDA tests, the C++-error probe,
# compute-sanitizer (memcheck, racecheck) on every kernel and the CUDA benchmarks, and writes
# DATE-CARD.{json,log} into OUT_DIR (default $OUT, else benchmarks/results). The check shares one
# deadline of CHECK_SECONDS (330 s): each step gets at most its own limit and what is left, so the
# check ends under 6 minutes even when a step hangs. With TRAIN_MINUTES > 0 it then trains the
# unrolled model's stages for that long (benchmarks/gpu_train.sh) into OUT_DIR.
# Peers and test packages missing there (kornia, pytorch_msssim, pillow, hypothesis) are installed
# from .gpu_wheels/ when it was carried: make it here with `bash benchmarks/fetch_gpu_wheels.sh`, and
# the training photos with `bash benchmarks/gpu_train.sh --prepare`; run with
# carry=[".gpu_wheels", ".gpu_data"].
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dest=${1:-${OUT:-benchmarks/results}}
train_minutes=${2:-0}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
deadline=$((SECONDS + ${CHECK_SECONDS:-330}))
# limit N: N seconds, or what is left before the deadline if less (at least 1)
limit() { local left=$((deadline - SECONDS)); [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"; }
date=$(date -u +%Y-%m-%d)
card=$($PY -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-"))')
mkdir -p "$dest"
log="$dest/$date-$card.log"
exec > >(tee "$log") 2>&1
section() { echo; echo "=== $1 ($(date -u +%T), $((deadline - SECONDS)) s left)"; }

section "environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
nvcc --version | tail -n 2
# what could explain the C++-error crash of 2026-11-26, which torch 2.11.0 + Python 3.12 did not
# reproduce on a CPU machine (benchmarks/results/2026-12-02-cpu-torch-2.11.md)
echo "CXX=${CXX:-unset}: $(${CXX:-c++} --version | head -n 1)"
$PY -c 'import sys, sysconfig; print("python", sys.version.split()[0], sysconfig.get_config_var("LDSHARED"))'
uname -rv

if [ -d .gpu_wheels ]; then
  section "peers from carried wheels"
  $PY -m pip install -q --no-index --no-deps .gpu_wheels/*.whl
fi

section "build (pip install --no-build-isolation --no-deps -e .)"
MAX_JOBS=${MAX_JOBS:-16} FORCE_CUDA=1 timeout "$(limit 180)" $PY -m pip install -q --no-build-isolation --no-deps -e . \
  || { echo "BUILD FAILED"; exit 1; }

section "CUDA tests"
# In worker processes where pytest-xdist exists, so a test that crashes the interpreter is reported as
# failed and the others still run.
workers=$($PY -c 'import xdist' 2>/dev/null && echo "-n 4")
timeout "$(limit 90)" $PY -m pytest -q -m cuda -p no:cacheprovider -rf $workers tests/ ; tests_status=$?

section "C++ errors reach Python (benchmarks/gpu_error_probe.py)"
ldd pydeblur/_C*.so | grep -E "libstdc|libgcc_s|libc\.so|libtorch_python" || true
echo "| case | outcome |"; echo "|---|---|"
timeout "$(limit 60)" $PY benchmarks/gpu_error_probe.py

section "report (the JSON the README quotes, before the slower checks)"
timeout "$(limit 60)" $PY -m benchmarks.gpu_report --json "$dest/$date-$card.json"

section "compute-sanitizer"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n1)
for tool in memcheck racecheck; do
  timeout "$(limit 45)" "$sanitizer" --tool "$tool" --error-exitcode 9 $PY benchmarks/gpu_sanitize.py \
    && echo "compute-sanitizer $tool: clean" || echo "compute-sanitizer $tool: ERRORS (exit $?)"
done

section "CUDA benchmarks"
timeout "$(limit 60)" $PY -m pytest -q -p no:cacheprovider benchmarks/ --benchmark-only -k cuda \
  --benchmark-max-time=0.2 --benchmark-columns=median,iqr,rounds --benchmark-sort=name

echo
echo "CUDA tests exit status: $tests_status"
cat "$dest/$date-$card.json" 2>/dev/null

if [ "$train_minutes" != 0 ]; then
  section "training for $train_minutes minutes (benchmarks/gpu_train.sh)"
  PYTHON=$PY bash benchmarks/gpu_train.sh "$train_minutes" "$dest"
fi
