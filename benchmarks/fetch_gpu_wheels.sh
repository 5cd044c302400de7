#!/usr/bin/env bash
# Downloads, on a machine with PyPI, the benchmark peers that the lent GPU machine lacks (it has no
# network) into .gpu_wheels/, for `run(carry=[".gpu_wheels"], command="bash benchmarks/gpu_check.sh")`.
# The GPU image runs Python 3.12 on x86_64.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .gpu_wheels
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  -d .gpu_wheels kornia kornia-rs pytorch-msssim pillow hypothesis attrs sortedcontainers
ls .gpu_wheels
