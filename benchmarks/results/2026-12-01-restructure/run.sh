#!/bin/bash
# usage: run.sh REPO_DIR OUT_DIR
set -e
here="$(cd "$(dirname "$0")" && pwd)"
cd "$1"; out="$2"; mkdir -p "$out"
py=/work/main/.venv/bin/python
export OMP_NUM_THREADS=2 PYTHONPATH="$1"
$py -m pydeblur demo -o "$out/demo.png" --device cpu > "$out/demo.txt"
$py -m pydeblur deblur /work/shared/data/levin/blurred/im2_kernel3.png --psf /work/shared/data/levin/kernels/kernel3.npy -o "$out/cli.png" --device cpu
$py "$here/snapshot.py" "$out"
$py -m training.evaluate --sets paper,levin --limit paper=16 --model default --test-set /tmp/snap/data/test_set.safetensors --out "$out/eval" --device cpu > "$out/eval.txt" 2>&1
