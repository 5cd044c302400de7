"""Named training recipes: the optimisation and data settings that go with each model config.

`python -m training.train --config NAME` starts from RECIPES[NAME] (when there is one) and command-line
options override single values. The model's shape lives in `pydeblur.model.CONFIGS`; a recipe names one.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipe:
    """Training settings. Noise ranges are (low, high), sampled per crop (see pydeblur.datasets)."""

    model: str
    batch_size: int = 8
    crop: int = 96
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 50
    epochs: int = 40
    steps_per_epoch: int = 100
    loss: str = "l2"  # "l2", "ssim", "l2-then-ssim", "mix"
    ssim_weight: float = 0.0  # for "mix": (1 - w) L2 + w (1 - SSIM)
    ssim_from_epoch: int = 0  # for "l2-then-ssim": the first epoch trained with the SSIM loss
    photons: tuple[float, float] = (2048.0, 2048.0)
    gauss: tuple[float, float] = (0.05, 0.05)
    val_crops: int = 24
    val_crop: int = 128


RECIPES: dict[str, Recipe] = {
    # The paper: batch 32, Adam 5e-4, L2 then SSIM, its single noise level (lambda 2048, sigma 0.05).
    "paper": Recipe(
        model="paper",
        batch_size=32,
        crop=256,
        lr=5e-4,
        epochs=100,
        steps_per_epoch=200,
        loss="l2-then-ssim",
        ssim_from_epoch=50,
        val_crops=64,
        val_crop=256,
    ),
    # The shipped CPU model: noise-robust training (photon counts from 1024 to 131072, Gaussian read
    # noise 0..8 photons, so the four exposures span very noisy to almost clean), L2 loss for PSNR.
    "default": Recipe(
        model="default",
        batch_size=4,
        crop=128,
        lr=2e-3,
        warmup_steps=30,
        epochs=20,
        steps_per_epoch=40,
        photons=(1024.0, 131072.0),
        gauss=(0.0, 8.0),
        val_crops=32,
        val_crop=128,
    ),
    "small": Recipe(model="small", photons=(1024.0, 131072.0), gauss=(0.0, 8.0)),
    "tiny": Recipe(
        model="tiny",
        batch_size=2,
        crop=48,
        epochs=2,
        steps_per_epoch=2,
        warmup_steps=0,
        val_crops=2,
        val_crop=48,
    ),
}
