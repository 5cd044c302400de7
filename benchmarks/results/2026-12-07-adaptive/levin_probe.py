"""Levin's captures against their synthetic twins, the HQS weights told sigma_est x f: the best f
per item (Levin's standard scoring), and whether the data residual after the f = 1 run,
std(y - k * x) / sigma_est inside the image, tells a capture (wrong kernel) from its twin:
PYTHONPATH=. python benchmarks/results/2026-12-07-adaptive/levin_probe.py WEIGHTS [N]
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

from pydeblur.noise import estimate_noise_sigma
from training import eval_sets
from training.levin_scoring import shifted_psnr
from training.train_hqs import load_hqs

torch.set_num_threads(1)
MULTS = [0.5, 0.7, 1.0, 1.4, 2.0, 2.8]
model = load_hqs(sys.argv[1])
limit = int(sys.argv[2]) if len(sys.argv) > 2 else None


def residual_ratio(b, k, x, sigma):
    """std of y - k * x over the pixels whose blur lies inside the image, over sigma."""
    kh, kw = k.shape[-2:]
    flipped = torch.flip(k, dims=(-2, -1))
    reblurred = F.conv2d(x[:, :1], flipped)  # valid part
    top, left = (kh - 1) // 2, (kw - 1) // 2
    y = b[:, :1, top : top + reblurred.shape[-2], left : left + reblurred.shape[-1]]
    return float((y - reblurred).std() / sigma)


for name, items in (
    ("levin", eval_sets.levin_items(limit=limit)),
    ("levin-synthetic", eval_sets.levin_synthetic_items(limit=limit)),
):
    scores, ratios = [], []
    for it in items:
        b, k, x = (it[key][None] for key in ("blurred", "psf", "sharp"))
        e = estimate_noise_sigma(b)
        row = []
        with torch.no_grad():
            for m in MULTS:
                out = model(b.expand(-1, 3, -1, -1), k, e * m).clamp(0, 1).mean(1, keepdim=True)
                row.append(float(shifted_psnr(out, x)))
                if m == 1.0:
                    ratios.append(residual_ratio(b, k, out, float(e)))
        scores.append(row)
    s = np.array(scores)
    best = np.log(np.array(MULTS))[s.argmax(1)]
    r = np.log(np.array(ratios))
    print(
        f"{name}: " + " ".join(f"x{m}:{v:.2f}" for m, v in zip(MULTS, s.mean(0), strict=True)),
        f"oracle {s.max(1).mean():.2f} best log f {best.mean():.2f}",
        f"log residual ratio {r.mean():.2f}+-{r.std():.2f} corr {np.corrcoef(r, best)[0, 1]:.2f}",
        flush=True,
    )
