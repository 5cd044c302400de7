#!/usr/bin/env bash
# The unrolled model's training on CPUs: greedy (stage 1 alone on the frozen shipped network, then
# stage 2 on the frozen stage 1), then both stages jointly, each from the last weights of the one
# before (validation is at the paper's heavy noise only, so "best" would favour it). Each run resumes
# where a kill left it.
#   bash training/train_unrolled.sh RUNS_FOLDER [STEPS_PER_EPOCH] [EPOCHS]
# TRAIN_FLAGS: more options for every fresh run (e.g. "--bf16 --channels-last" on a CPU with AMX,
# "--data FOLDER"); PYTHON: the interpreter.
set -euo pipefail
runs=${1:-runs/unrolled}
steps=${2:-300}
epochs=${3:-5}
py=${PYTHON:-python}
train() {  # out, then the options of a fresh run
    local out=$1; shift
    if [ -f "$out/last.pt" ]; then
        "$py" -m training.train --config unrolled --out "$out" --resume
    else
        "$py" -m training.train --config unrolled --out "$out" --steps-per-epoch "$steps" \
            --epochs "$epochs" --threads 2 ${TRAIN_FLAGS:-} "$@"
    fi
}
train "$runs/stage1" --model-set stages=1 --train-only stages \
    --init-from pydeblur/weights/default.safetensors
train "$runs/stage2" --train-only last-stage --init-from "$runs/stage1/last.pt"
train "$runs/joint" --train-only stages --lr 2e-4 --warmup-steps 0 --init-from "$runs/stage2/last.pt"
