#!/usr/bin/env bash
# The one prepared GPU check, run on the lent CUDA machine from the repository root:
#   build the extension against that machine's torch, run the CUDA tests, compute-sanitizer (memcheck,
#   racecheck) on every kernel, the CUDA benchmarks, and write benchmarks/results/DATE-CARD.{json,log}
#   (into $OUT instead when set), printing a short table after the tests. Each step has its own time
#   limit, so the whole check stays under 8 minutes on one H100/H200 even when a step hangs.
# Peers and test packages missing there (kornia, pytorch_msssim, pillow, hypothesis) are installed from .gpu_wheels/ when it was carried:
#   make it here with `bash benchmarks/fetch_gpu_wheels.sh`, then run with carry=[".gpu_wheels"].
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
date=$(date -u +%Y-%m-%d)
card=$($PY -c 'import torch; print(torch.cuda.get_device_name(0).replace(" ", "-"))')
results=benchmarks/results
mkdir -p "$results"
# Straight into $OUT when set, so a run cut short by the device's time limit still returns its log.
dest=${OUT:-$results}
log="$dest/$date-$card.log"
exec > >(tee "$log") 2>&1
section() { echo; echo "=== $1 ($(date -u +%T))"; }

section "environment"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
$PY -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)'
nvcc --version | tail -n 2

if [ -d .gpu_wheels ]; then
  section "peers from carried wheels"
  $PY -m pip install -q --no-index --no-deps .gpu_wheels/*.whl
fi

section "build (pip install --no-build-isolation --no-deps -e .)"
FORCE_CUDA=1 timeout 240 $PY -m pip install -q --no-build-isolation --no-deps -e . || { echo "BUILD FAILED"; exit 1; }

section "CUDA tests"
# In worker processes where pytest-xdist exists, so a test that crashes the interpreter is reported as
# failed and the others still run.
workers=$($PY -c 'import xdist' 2>/dev/null && echo "-n 4")
timeout 150 $PY -m pytest -q -m cuda -p no:cacheprovider -rf $workers tests/ ; tests_status=$?

section "C++ errors reach Python (benchmarks/gpu_error_probe.py)"
echo "| case | outcome |"; echo "|---|---|"
timeout 240 $PY benchmarks/gpu_error_probe.py

section "report (the JSON the README quotes, before the slower checks)"
timeout 120 $PY -m benchmarks.gpu_report --json "$dest/$date-$card.json"

section "compute-sanitizer"
sanitizer=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -n1)
for tool in memcheck racecheck; do
  timeout 75 "$sanitizer" --tool "$tool" --error-exitcode 9 $PY benchmarks/gpu_sanitize.py \
    && echo "compute-sanitizer $tool: clean" || echo "compute-sanitizer $tool: ERRORS (exit $?)"
done

section "CUDA benchmarks"
timeout 150 $PY -m pytest -q -p no:cacheprovider benchmarks/ --benchmark-only -k cuda \
  --benchmark-max-time=0.3 --benchmark-columns=median,iqr,rounds --benchmark-sort=name

echo
echo "CUDA tests exit status: $tests_status"
cat "$dest/$date-$card.json" 2>/dev/null
