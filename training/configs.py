"""Named training recipes: the `TrainOptions` values that go with each model config.

`python -m training.train --config NAME` starts from `TrainOptions`' defaults, then RECIPES[NAME] (when
there is one), then the command line's options. A recipe only lists the values it changes, by their
`TrainOptions` names; the model's shape lives in `pydeblur.model.CONFIGS`.
"""

from typing import Any

RECIPES: dict[str, dict[str, Any]] = {
    # The paper: batch 32, Adam 5e-4, L2 then SSIM, its single noise level (lambda 2048, sigma 0.05).
    "paper": {
        "batch_size": 32,
        "crop": 256,
        "lr": 5e-4,
        "warmup_steps": 50,
        "epochs": 100,
        "steps_per_epoch": 200,
        "loss": "l2-then-ssim",
        "ssim_from_epoch": 50,
        "val_crops": 64,
        "val_crop": 256,
    },
    # The shipped CPU model: noise-robust training (photon counts from 1024 to 524288, Gaussian read
    # noise 0..8 photons, so the four exposures span very noisy to almost clean), the photos at three
    # scales (detail like Levin's and Kodak's), and the PSNR loss (every noise level counts).
    "default": {
        "batch_size": 4,
        "crop": 128,
        "lr": 5e-4,
        "warmup_steps": 50,
        "epochs": 24,
        "steps_per_epoch": 500,
        "loss": "psnr",
        "photons": (1024.0, 524288.0),
        "gauss": (0.0, 8.0),
        "photo_scales": (1.0, 0.5, 0.3),
        "val_crops": 32,
        "val_crop": 128,
    },
    "small": {
        "batch_size": 8,
        "crop": 96,
        "warmup_steps": 50,
        "epochs": 40,
        "steps_per_epoch": 100,
        "val_crops": 24,
        "val_crop": 128,
        "photons": (1024.0, 131072.0),
        "gauss": (0.0, 8.0),
    },
    # "tiny" (for tests) runs on TrainOptions' defaults.
}
