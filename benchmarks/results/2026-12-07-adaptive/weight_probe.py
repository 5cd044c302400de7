"""Does the data weight an image wants follow from the image? For each item, the HQS weights told
sigma_est x f for f in MULTS: the best f per item, against the log ratio of the blurred image's
detail to its estimated noise. A rule fitted on training items only (what a network could learn) is
then applied to Kodak and Levin:
PYTHONPATH=. python benchmarks/results/2026-12-07-adaptive/weight_probe.py WEIGHTS N_TRAIN N_KODAK N_LEVIN
"""

import math
import sys

import numpy as np
import torch

from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from training import eval_sets
from training.configs import RECIPES, TrainOptions
from training.train_data import build_data, unpack
from training.train_hqs import load_hqs

torch.set_num_threads(1)
torch.manual_seed(1)
MULTS = [0.25, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0]


def detail(y):
    return float(
        ((y[..., 1:, :] - y[..., :-1, :]).abs().mean() + (y[..., 1:] - y[..., :-1]).abs().mean())
        / 2
    )


def score(model, b, k, s, sharp):
    out = []
    with torch.no_grad():
        for m in MULTS:
            out.append(float(psnr(model(b, k, s * m).clamp(0, 1), sharp).mean()))
    return out


model = load_hqs(sys.argv[1])
n_train, n_kodak, n_levin = (int(a) for a in sys.argv[2:5])
rows = []  # (set, feature, scores)
recipe = {k: v for k, v in RECIPES["default"].items() if k in ("photons", "gauss", "photo_scales")}
for cand in (1, 32):
    opts = TrainOptions(
        config="default",
        out="/work/runs/probe_data",
        data="/work/shared/data/photos",
        batch_size=1,
        crop=128,
        val_crops=8,
        val_crop=128,
        crop_candidates=cand,
        **recipe,
    )
    train, _ = build_data(opts)
    for i in range(n_train):
        b, k, s = unpack(train[i * 13 + 5])
        e = estimate_noise_sigma(b)
        rows.append((f"train c{cand}", math.log(detail(b) / float(e)), score(model, b, k, e, s)))
for it in eval_sets.kodak_items(sigmas=(0.01, 0.03), limit=n_kodak):
    b, k, x = it["blurred"][None], it["psf"][None], it["sharp"][None]
    e = estimate_noise_sigma(b)
    rows.append(("kodak", math.log(detail(b) / float(e)), score(model, b, k, e, x)))
for it in eval_sets.levin_synthetic_items(limit=n_levin):
    b, k, x = (it[key][None] for key in ("blurred", "psf", "sharp"))
    b, x = b.expand(-1, 3, -1, -1), x.expand(-1, 3, -1, -1)
    e = estimate_noise_sigma(b)
    rows.append(("levin-synth", math.log(detail(b) / float(e)), score(model, b, k, e, x)))

logm = np.log(MULTS)
train_rows = [r for r in rows if r[0].startswith("train")]
feat = np.array([r[1] for r in train_rows])
target = np.array([logm[int(np.argmax(r[2]))] for r in train_rows])
slope, intercept = np.polyfit(feat, target, 1)
print(f"rule fitted on training items: log f = {intercept:.3f} + {slope:.3f} * log(detail/sigma)")
for name in dict.fromkeys(r[0] for r in rows):
    sub = [r for r in rows if r[0] == name]
    f = np.array([r[1] for r in sub])
    t = np.array([logm[int(np.argmax(r[2]))] for r in sub])
    base = np.mean([r[2][MULTS.index(1.0)] for r in sub])
    oracle = np.mean([max(r[2]) for r in sub])
    ruled = []
    for r in sub:
        want = intercept + slope * r[1]
        ruled.append(r[2][int(np.argmin(np.abs(logm - want)))])
    corr = np.corrcoef(f, t)[0, 1] if len(sub) > 2 else float("nan")
    print(
        f"{name:12s} n={len(sub):3d} feature {f.mean():.2f}+-{f.std():.2f} best log f {t.mean():.2f} "
        f"corr {corr:.2f} | f=1 {base:.2f} oracle {oracle:.2f} rule {np.mean(ruled):.2f}",
        flush=True,
    )
