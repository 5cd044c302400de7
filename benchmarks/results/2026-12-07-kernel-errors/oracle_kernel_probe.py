"""Levin's captures restored with the given kernels and with kernels fitted to (gt, capture) by
`levin_kernel_error.py` (an oracle: the best single kernel for each capture), standard scoring.
If a model's capture-to-twin gap closes with the fitted kernels, the given kernels' errors are what
it loses to. Diagnostic only.

    PYTHONPATH=. python benchmarks/results/2026-12-07-kernel-errors/oracle_kernel_probe.py MODEL...
"""

import sys
from pathlib import Path

import numpy as np
import torch

from training import eval_sets
from training.eval_methods import model_method, peer_methods, third_argument
from training.levin_scoring import shifted_psnr

HERE = Path(__file__).parent
torch.set_num_threads(2)
device = torch.device("cpu")
items = eval_sets.levin_items()
methods = [model_method(name, device, 1)[0] for name in sys.argv[1:]]
methods += peer_methods(eval_sets.DATA / "peers")
for method in methods:
    rows = []
    for it in items:
        fitted = torch.from_numpy(np.load(HERE / f"fitted_{it['name']}.npy"))[None]
        fitted = fitted / fitted.sum()
        row = []
        for psf in (it["psf"], fitted):
            b, k, x = it["blurred"][None], psf[None].float(), it["sharp"][None]
            third = third_argument(method, [it], x)
            with torch.inference_mode():
                out = method.run(b, k, third).clamp(0, 1)
            row.append(float(shifted_psnr(out, x)))
        rows.append(row)
    mean = np.mean(rows, axis=0)
    print(f"{method.name[:40]:40s} given {mean[0]:.2f} fitted {mean[1]:.2f}", flush=True)
