"""HQS weights on the first N Kodak items per noise level, told sigma x f (estimated or known):
PYTHONPATH=. python benchmarks/results/2026-12-07-detail/kodak_probe.py WEIGHTS 6 0.01,0.03
"""

import sys

import torch

from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from training import eval_sets
from training.train_hqs import load_hqs

torch.set_num_threads(1)


def avg(values):
    return sum(values) / len(values)


model = load_hqs(sys.argv[1])
n = int(sys.argv[2])
sigmas = tuple(float(s) for s in sys.argv[3].split(","))
items = eval_sets.kodak_items(sigmas=sigmas, limit=n)
mults = [0.25, 0.5, 1.0]
for s in sigmas:
    sub = [i for i in items if abs(i["noise_var"] ** 0.5 - s) < 1e-6]
    est, res, known = [], {m: [] for m in mults}, {m: [] for m in mults}
    for it in sub:
        b, k, x = it["blurred"][None], it["psf"][None], it["sharp"][None]
        e = estimate_noise_sigma(b)
        est.append(float(e))
        with torch.no_grad():
            for m in mults:
                res[m].append(float(psnr(model(b, k, e * m).clamp(0, 1), x)))
                known[m].append(float(psnr(model(b, k, torch.tensor([s * m])).clamp(0, 1), x)))
    print(
        f"sigma {s} est {avg(est):.4f}",
        "est:",
        " ".join(f"x{m}:{avg(v):.2f}" for m, v in res.items()),
        "known:",
        " ".join(f"x{m}:{avg(v):.2f}" for m, v in known.items()),
        flush=True,
    )
