"""HQS weights on 8 crops of training photos (full and 0.3 scale) and of Kodak photos under Levin's
kernels, Gaussian sigma 0.01, told sigma x f: PYTHONPATH=. python .../photo_probe.py WEIGHTS (needs
data/split.json from training.prepare_data)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

from pydeblur.degrade import blur_valid
from pydeblur.io import read_image
from pydeblur.metrics import psnr
from training import eval_sets
from training.train_hqs import load_hqs

torch.set_num_threads(2)
model = load_hqs(sys.argv[1])
sigma = 0.01
split = json.load(open("data/split.json"))
train = [str(Path("data") / p) for p in split["train"]][:24:3]
kodak = [str(p) for p in sorted(Path("/work/shared/data/kodak").glob("kodim*.png"))[8:16]]
levin = eval_sets.levin_kernels()
g = torch.Generator().manual_seed(0)
mults = [0.25, 0.5, 1.0]


def grad_energy(x):
    return float(((x[..., 1:, :] - x[..., :-1, :]) ** 2).mean().sqrt())


for name, paths in (("train photos x1", train), ("kodak", kodak)):
    for scale in (1.0, 0.3) if name.startswith("train") else (1.0,):
        res = {m: [] for m in mults}
        ge = []
        for p, k in zip(paths, levin, strict=False):
            img = torch.from_numpy(read_image(p)[0]).permute(2, 0, 1).float()
            if scale != 1.0:
                img = torch.nn.functional.interpolate(img[None], scale_factor=scale, mode="area")[0]
            kh, kw = k.shape
            c = 192
            r0, c0 = (img.shape[1] - c) // 2, (img.shape[2] - c) // 2
            pad = img[:, r0 : r0 + c + kh - 1, c0 : c0 + c + kw - 1]
            b = blur_valid(pad[None].double(), k.double()).float()
            sharp = img[:, r0 + kh // 2 : r0 + kh // 2 + c, c0 + kw // 2 : c0 + kw // 2 + c][None]
            ge.append(grad_energy(sharp))
            b = b + sigma * torch.randn(b.shape, generator=g)
            with torch.no_grad():
                for m in mults:
                    res[m].append(
                        float(
                            psnr(
                                model(b, k[None, None].float(), torch.tensor([sigma * m])).clamp(
                                    0, 1
                                ),
                                sharp,
                            )
                        )
                    )
        print(
            name,
            scale,
            f"grad {np.mean(ge):.4f}",
            " ".join(f"x{m}:{sum(v) / len(v):.2f}" for m, v in res.items()),
            flush=True,
        )
