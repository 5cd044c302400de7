"""Where a new stage should start when a trained HQS network grows: the validation PSNR (the
training script's: val split, paper noise, 32 crops of 128x128) of run 7s2's 4 stages, and of 5
stages, the fifth a copy of the fourth or a fresh stage (zero CNN) whose data weight starts at w.

    PYTHONPATH=. python benchmarks/results/2026-12-07-grown/grow_probe.py   (2 minutes)
"""

import math

import torch

from pydeblur.hqs import HQSConfig, HQSNet
from training.train_hqs import load_hqs, load_stages, parse_args, training_data, validate

RUN7S2 = "/work/runs/hqs7s2/last.safetensors"  # on the training machine only (docs/training.md)


def main():
    torch.set_num_threads(1)
    options = [
        "--out",
        "/tmp/grow_probe",
        "--data",
        "../shared/data/photos",
        "--crop-candidates",
        "32",
    ]
    _, val = training_data(parse_args(options))  # the validation run 7s2's training used
    base = load_hqs(RUN7S2)
    print(f"run 7s2, 4 stages: {validate(base, val, 4):.2f}", flush=True)
    config = HQSConfig.from_dict({**base.config.to_dict(), "stages": 5})
    twice = HQSNet(config)
    load_stages(twice, base)
    twice.stages[4].load_state_dict(base.stages[3].state_dict())
    print(f"5 stages, the fifth a copy of the fourth: {validate(twice, val, 5):.2f}", flush=True)
    for weight in (1e-2, 1e-4, 1e-6, 1e-8):
        grown = HQSNet(config)
        load_stages(grown, base)
        with torch.no_grad():
            grown.stages[4].log_weight.fill_(math.log(weight))
        print(
            f"5 stages, a fresh fifth at weight {weight:g}: {validate(grown, val, 5):.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
