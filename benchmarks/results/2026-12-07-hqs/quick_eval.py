"""Weights files on the first N items of Levin's captures and of levin-synthetic (standard scoring)
and on the training's validation crops (the val split at the paper's noise, as training.train and
training.train_hqs validate):

    PYTHONPATH=. python benchmarks/results/2026-12-07-hqs/quick_eval.py N WEIGHTS...
"""

import sys

import torch

from pydeblur.metrics import psnr
from training import eval_sets
from training.configs import TrainOptions
from training.eval_methods import model_method
from training.levin_scoring import shifted_psnr
from training.train_data import build_data

torch.set_num_threads(1)
count = int(sys.argv[1])
sets = {
    "levin": eval_sets.levin_items(limit=count),
    "levin-synthetic": eval_sets.levin_synthetic_items(limit=count),
}
options = TrainOptions(config="default", out="/tmp/quick_eval", val_crops=32, val_crop=128)
_, validation = build_data(options)
print("| weights | validation | " + " | ".join(f"{name} ({count})" for name in sets) + " |")
print("|---|---|" + "---|" * len(sets))
for path in sys.argv[2:]:
    method, _ = model_method(path, torch.device("cpu"), 8)
    with torch.no_grad():
        val = torch.cat([psnr(method.run(b, k, None).clamp(0, 1), x) for b, k, x in validation])
        scores = [
            sum(
                float(
                    shifted_psnr(
                        method.run(i["blurred"][None], i["psf"][None], None).clamp(0, 1),
                        i["sharp"][None],
                    )
                )
                for i in items
            )
            / len(items)
            for items in sets.values()
        ]
    print(
        f"| {path} | {float(val.mean()):.3f} | " + " | ".join(f"{s:.2f}" for s in scores) + " |",
        flush=True,
    )
