"""An HQS model in float32 and under bfloat16 autocast (its CNNs in bfloat16, the solves in float64,
as it was trained): PSNR on the first N items of Levin's captures (standard scoring), Kodak at each
sigma and the paper protocol, and the time of one 256x256 RGB image either way:
PYTHONPATH=. python benchmarks/results/2026-12-07-hqs-inference/precision_probe.py WEIGHTS [N]
"""

import sys
import time

import torch

from pydeblur.metrics import psnr
from pydeblur.weights_io import load_model
from training import eval_sets
from training.levin_scoring import shifted_psnr

model = load_model(sys.argv[1]).to(memory_format=torch.channels_last)
limit = int(sys.argv[2]) if len(sys.argv) > 2 else 8
sets = {
    "levin": eval_sets.levin_items(limit=limit),
    "kodak": eval_sets.kodak_items(limit=limit),
    "paper": eval_sets.paper_items("data/test_set.safetensors", limit=4 * limit),
}


def run(blurred, psf, bf16):
    with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        grey = blurred.shape[1] == 1
        out = model(blurred.expand(-1, 3, -1, -1), psf).float().clamp(0, 1)
        return out.mean(1, keepdim=True) if grey else out


for name, items in sets.items():
    groups: dict[str, list[list[float]]] = {}
    for item in items:
        b, k, x = (item[key][None] for key in ("blurred", "psf", "sharp"))
        row = []
        for bf16 in (False, True):
            out = run(b, k, bf16)
            score = shifted_psnr(out, x) if name == "levin" else psnr(out, x)
            row.append(float(score))
        groups.setdefault(item["group"] if name != "levin" else "all", []).append(row)
    for group, rows in groups.items():
        f32 = sum(r[0] for r in rows) / len(rows)
        b16 = sum(r[1] for r in rows) / len(rows)
        worst = min(r[1] - r[0] for r in rows)
        print(
            f"{name} {group} ({len(rows)}): float32 {f32:.3f}  bfloat16 {b16:.3f}  "
            f"difference {b16 - f32:+.3f} (worst item {worst:+.3f})"
        )

image = torch.rand(1, 3, 256, 256)
psf = torch.rand(1, 1, 34, 34)
psf /= psf.sum()
for bf16 in (False, True, False, True):
    run(image, psf, bf16)
    times = []
    for _ in range(5):
        start = time.perf_counter()
        run(image, psf, bf16)
        times.append(time.perf_counter() - start)
    print(
        f"256x256 RGB, {'bfloat16' if bf16 else 'float32'}: min {min(times):.3f} s, "
        f"median {sorted(times)[2]:.3f} s"
    )
