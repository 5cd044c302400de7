"""Where an HQS model loses at high noise: the data weight, or the CNNs? On the paper protocol's
first N crops at exposures 1/8 and 1, and Kodak at sigma 0.03, the model run with its data weights
times s (`strength`, the CNNs told the estimated sigma) and told sigma x f (both the weights and the
CNNs' noise map): mean PSNR per setting.
PYTHONPATH=. python benchmarks/results/2026-12-07-hqs-inference/noise_probe.py WEIGHTS [N]
"""

import sys

import torch

from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from pydeblur.weights_io import load_model
from training import eval_sets

model = load_model(sys.argv[1]).to(memory_format=torch.channels_last)
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 8
paper = eval_sets.paper_items("data/test_set.safetensors", limit=4 * limit)
kodak = eval_sets.kodak_items(limit=limit)
sets = {
    "paper 1/8": [i for i in paper if i["group"] == "1/8"],
    "paper 1": [i for i in paper if i["group"] == "1"],
    "kodak 0.03": [i for i in kodak if i["group"] == "sigma 0.03"],
}
SETTINGS = [("s", v) for v in (0.5, 0.7, 1.0, 1.4, 2.0)] + [("f", v) for v in (0.7, 1.4)]
print("set | " + " | ".join(f"{k} {v:g}" for k, v in SETTINGS))
for name, items in sets.items():
    totals = [0.0] * len(SETTINGS)
    for item in items:
        b, k, x = (item[key][None] for key in ("blurred", "psf", "sharp"))
        sigma = estimate_noise_sigma(b)
        for j, (kind, value) in enumerate(SETTINGS):
            told, strength = (sigma, value) if kind == "s" else (sigma * value, 1.0)
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
                out = model(b, k, told, strength=strength).float().clamp(0, 1)
            totals[j] += float(psnr(out, x)) / len(items)
    print(f"{name} ({len(items)}) | " + " | ".join(f"{t:.3f}" for t in totals))
