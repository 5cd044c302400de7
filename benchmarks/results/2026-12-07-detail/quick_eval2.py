"""Quick subsets: Kodak (first N per sigma 0.01/0.03), Levin captures (N), levin-synthetic (N)."""

import sys

import torch

from pydeblur.metrics import psnr
from training import eval_sets
from training.eval_methods import model_method
from training.levin_scoring import shifted_psnr

torch.set_num_threads(int(__import__("os").environ.get("THREADS", "2")))
n = int(sys.argv[1])
kodak = eval_sets.kodak_items(limit=n)
sets = {
    "kodak .01": ([i for i in kodak if abs(i["noise_var"] ** 0.5 - 0.01) < 1e-6], False),
    "kodak .03": ([i for i in kodak if abs(i["noise_var"] ** 0.5 - 0.03) < 1e-6], False),
    "levin": (eval_sets.levin_items(limit=n), True),
    "synthetic": (eval_sets.levin_synthetic_items(limit=n), True),
}
print("| weights | " + " | ".join(f"{k} ({len(v[0])})" for k, v in sets.items()) + " |", flush=True)
for path in sys.argv[2:]:
    method, _ = model_method(path, torch.device("cpu"), 8)
    row = []
    with torch.no_grad():
        for items, shifted in sets.values():
            total = 0.0
            for i in items:
                out = method.run(i["blurred"][None], i["psf"][None], None).clamp(0, 1)
                total += float(
                    shifted_psnr(out, i["sharp"][None]) if shifted else psnr(out, i["sharp"][None])
                )
            row.append(total / len(items))
    print(f"| {path} | " + " | ".join(f"{s:.2f}" for s in row) + " |", flush=True)
