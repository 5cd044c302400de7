#!/usr/bin/env bash
# Train the unrolled model's stages on a GPU for a given number of minutes (under 9), from the shipped
# network's weights, and leave in OUT_DIR a checkpoint under 16 MB (stages.pt: the model's weights,
# the optimizer and the run's state; --resume continues it), the weights (stages.safetensors with its
# model card) and the log; it prints the validation PSNR of every epoch.
#   bash benchmarks/gpu_train.sh --prepare          (here: copy the training photos into .gpu_data/)
#   bash benchmarks/gpu_train.sh MINUTES OUT_DIR    (there, with carry=[".gpu_data"])
#   FAMILY=hqs bash benchmarks/gpu_train.sh MINUTES OUT_DIR   (the HQS network from scratch instead)
# Tested on the CPU with DEVICE=cpu BATCH=2 CROP=64 (tests/test_gpu_scripts.py).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--prepare" ]; then
  mkdir -p .gpu_data
  cp -r ../shared/data/photos .gpu_data/
  du -sh .gpu_data
  exit 0
fi
minutes=${1:?minutes}
dest=${2:?output folder}
PY=${PYTHON:-python3}
data=${DATA:-.gpu_data/photos}
[ -d "$data" ] || data=../shared/data/photos
run="$dest/train"
mkdir -p "$run"
set -o pipefail
if [ "${FAMILY:-stages}" = "hqs" ]; then
  # The HQS network (pydeblur.hqs) from scratch, all stages jointly, its learning rate's cosine
  # spread over the minutes given, each crop the most detailed of 32 (docs/training.md, "Detail-biased
  # crops"), DEAD_LEAVES synthetic photos among them (default none; training.dead_leaves); leaves
  # hqs.pt (resume) and hqs.safetensors with its card.
  PYTHONUNBUFFERED=1 timeout $((${minutes%.*} * 60 + 180)) $PY -m training.train_hqs --out "$run" \
    --data "$data" --device "${DEVICE:-cuda}" --max-minutes "$minutes" --time-schedule \
    --stages "${HQS_STAGES:-8}" --greedy-steps 0 --joint-steps 1000000 --bf16 \
    --batch-size "${BATCH:-32}" --crop "${CROP:-128}" --epoch-steps "${STEPS:-100}" \
    --crop-candidates "${CROP_CANDIDATES:-32}" --dead-leaves "${DEAD_LEAVES:-0}" \
    --workers "${WORKERS:-8}" --val-crops "${VAL_CROPS:-32}" 2>&1 | tee "$dest/train.log"
  cp "$run/last.pt" "$dest/hqs.pt"
  cp "$run/last.safetensors" "$dest/hqs.safetensors"
  cp "$run/last.json" "$dest/hqs.json"
  ls -l "$dest"
  exit 0
fi
PYTHONUNBUFFERED=1 timeout $((${minutes%.*} * 60 + 180)) $PY -m training.train --config unrolled --out "$run" \
  --data "$data" --device "${DEVICE:-cuda}" --max-minutes "$minutes" --train-only stages \
  --init-from pydeblur/weights/default.safetensors --batch-size "${BATCH:-32}" --crop "${CROP:-128}" \
  --epochs 1000 --steps-per-epoch "${STEPS:-100}" --lr 3e-4 --min-lr-ratio 1.0 --workers "${WORKERS:-8}" \
  --val-crops "${VAL_CROPS:-32}" 2>&1 | grep -v '^epoch .*it/s' | tee "$dest/train.log"
cp "$run/last.pt" "$dest/stages.pt"
cp "$run/last.safetensors" "$dest/stages.safetensors"
cp "$run/last.json" "$dest/stages.json" 2>/dev/null || true
ls -l "$dest"
