"""Which training conditions want a low data weight? PSNR of an HQS model on training-like batches
for sigma multipliers, split by condition."""

import sys

import torch

from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from training.configs import RECIPES, TrainOptions
from training.train_data import build_data, perturb_psf, unpack
from training.train_hqs import load_hqs

torch.set_num_threads(2)
torch.manual_seed(1)
model = load_hqs(sys.argv[1])
n = int(sys.argv[2])
recipe = {k: v for k, v in RECIPES["default"].items() if k in ("photons", "gauss", "photo_scales")}
conds = {
    "white": dict(correlated_noise=0.0, grey=0.0),
    "correlated": dict(correlated_noise=1.0, grey=0.0),
}
mults = [0.25, 0.5, 1.0, 2.0]
for name, extra in conds.items():
    opts = TrainOptions(
        config="default",
        out="/tmp/sigma_probe",
        data="/work/shared/data/photos",
        batch_size=4,
        crop=128,
        val_crops=8,
        val_crop=128,
        **extra,
        **recipe,
    )
    train, _ = build_data(opts)
    for perr in (0.0, 0.3):
        res = {m: [] for m in mults}
        for i in range(n):
            b, k, s = unpack(train[i * 7 + 3])
            sig = estimate_noise_sigma(b)
            kk = perturb_psf(k, torch.rand(1) * perr) if perr else k
            with torch.no_grad():
                for m in mults:
                    res[m].append(float(psnr(model(b, kk, sig * m).clamp(0, 1), s).mean()))
        print(
            name,
            "psf_error",
            perr,
            " ".join(f"x{m}:{sum(v) / len(v):.2f}" for m, v in res.items()),
            flush=True,
        )
