"""Does the capture-to-twin gap live near the borders? Levin's captures and their synthetic twins
(reflection-extended before the blur), scored with the standard 15-px border and with 45 px (the
centre 165 x 165 only). Diagnostic only.

    PYTHONPATH=. python benchmarks/results/2026-12-07-kernel-errors/border_probe.py MODEL...
"""

import sys

import numpy as np
import torch

from training import eval_sets
from training.eval_methods import model_method, peer_methods, third_argument
from training.levin_scoring import best_shift

torch.set_num_threads(2)
device = torch.device("cpu")
methods = [model_method(name, device, 1)[0] for name in sys.argv[1:] if name != "fdn"]
if "fdn" in sys.argv[1:]:
    methods += peer_methods(eval_sets.DATA / "peers")
sets = {"levin": eval_sets.levin_items(), "levin-synthetic": eval_sets.levin_synthetic_items()}
for method in methods:
    line = []
    for name, items in sets.items():
        rows = []
        for it in items:
            b, k, x = it["blurred"][None], it["psf"][None], it["sharp"][None]
            third = third_argument(method, [it], x)
            with torch.inference_mode():
                out = method.run(b, k, third).clamp(0, 1)
            rows.append(
                [-10 * np.log10(float(best_shift(out, x, border=border)[0])) for border in (15, 45)]
            )
        mean = np.mean(rows, axis=0)
        line.append(f"{name} border 15: {mean[0]:.2f}, 45: {mean[1]:.2f}")
    print(f"{method.name[:40]:40s}", " | ".join(line), flush=True)
