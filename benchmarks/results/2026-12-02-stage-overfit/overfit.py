"""Can one unrolled stage's U-Net memorise a fixed batch? A diagnostic for issue #17 (2026-12-02).

The shipped network's estimate of 4 low-noise crops is computed once; one stage (data step + U-Net,
`pydeblur.unrolled`) is trained on that batch alone with Adam and the PSNR loss. "plain" feeds the
U-Net what `UnrolledStages` feeds it (x_data, x, the noise map); "residual" replaces x by
RESIDUAL_SCALE * (x_data - x), the data step's correction, which is nearly zero in the plain input.

    PYTHONPATH=. python benchmarks/results/2026-12-02-stage-overfit/overfit.py LR plain|residual
"""

import dataclasses
import sys
import time

import torch

from pydeblur import datasets
from pydeblur.boundary import crop, embed, pad_periodic
from pydeblur.metrics import psnr
from pydeblur.model import DeblurNet
from pydeblur.noise import estimate_noise_sigma
from pydeblur.physics import psf2otf
from pydeblur.unrolled import SIGMA_SCALE, data_step
from pydeblur.weights_io import load_model

RESIDUAL_SCALE = 20.0


def stage_forward(stage, estimate, blurred, psf, sigma, residual: bool) -> torch.Tensor:
    """One stage as `UnrolledStages.forward` runs it, with the U-Net's second input chosen."""
    kh, kw = psf.shape[-2:]
    canvas_y, padding = pad_periodic(blurred, (kh, kw))
    x = pad_periodic(estimate, (kh, kw))[0]
    inside = embed(torch.ones_like(blurred[:, :1]), padding, canvas_y.shape[-2:], 0.0)
    otf = psf2otf(psf.double(), canvas_y.shape[-2:], half_spectrum=True)
    sigma = sigma.reshape(-1, 1, 1, 1)
    lam = stage.log_strength.exp() * sigma.double() ** 2
    x_data = data_step(x, canvas_y, inside, otf, lam)
    second = RESIDUAL_SCALE * (x_data - x) if residual else x
    noise_map = (sigma * SIGMA_SCALE).expand_as(inside[:, :1])
    inputs = torch.cat([x_data, second, noise_map], dim=1)
    return crop(x_data + stage.unet(inputs), padding)


def main(lr: float, residual: bool, steps: int = 300) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    photos = datasets.split_photos("/work/shared/data/photos", seed=0)["train"][:2]
    data = datasets.BlurredCrops(
        photos, 1, crop_size=96, seed=3, photons=(65536.0, 524288.0), gauss=(0.0, 2.0)
    )
    items = [data[i] for i in range(4)]
    blurred, psf, sharp = (
        torch.stack([it[n] for it in items]) for n in ("blurred", "psf", "sharp")
    )
    shipped = load_model("default", torch.device("cpu"))
    net = DeblurNet(dataclasses.replace(shipped.config, stages=1, data_consistency=0.0))
    net.load_state_dict(shipped.state_dict(), strict=False)
    stage = net.stages.stages[0].train()
    with torch.no_grad():
        estimate = net.network(blurred, psf)
        sigma = estimate_noise_sigma(blurred)
    optimizer = torch.optim.Adam(stage.parameters(), lr=lr)
    start, marks = time.time(), []
    for step in range(steps + 1):
        out = stage_forward(stage, estimate, blurred, psf, sigma, residual)
        loss = -psnr(out, sharp).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 50 == 0:
            marks.append(f"{step}: {-loss.item():.2f}")
    kind = "residual" if residual else "plain"
    print(f"lr {lr:g}, {kind}: " + ", ".join(marks) + f" dB ({time.time() - start:.0f} s)")


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2] == "residual")
