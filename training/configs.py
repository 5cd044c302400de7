"""The options of a training run (`TrainOptions`) and the named recipes: their values per model config.

`python -m training.train --config NAME` starts from `TrainOptions`' defaults, then RECIPES[NAME] (when
there is one), then the command line's options. A recipe only lists the values it changes, by their
`TrainOptions` names; the model's shape lives in `pydeblur.model.CONFIGS`.
"""

from dataclasses import dataclass, field
from typing import Any

from pydeblur.model import CONFIGS, ModelConfig


@dataclass
class TrainOptions:
    """Everything a run depends on (saved in every checkpoint, so `--resume` continues the same run)."""

    config: str = "tiny"
    out: str = "runs/tiny"
    data: str | None = None  # folder of photos (None: the datasets' default)
    seed: int = 0
    split_seed: int = 0  # the photo split (pydeblur.datasets.split_photos), shared with evaluation
    init_from: str | None = None  # start from these weights (.safetensors or .pt) where shapes fit
    psf_error: float = 0.0  # kernel error given to the network (see perturb_psf); 0: the exact PSF
    photo_scales: tuple[float, ...] = (
        1.0,
    )  # train on the photos resized by each factor (see scaled_photos)
    batch_size: int = 2
    crop: int = 48
    lr: float = 1e-3
    min_lr_ratio: float = 0.05
    warmup_steps: int = 0
    epochs: int = 2
    steps_per_epoch: int = 2
    loss: str = "l2"
    ssim_weight: float = 0.0
    ssim_from_epoch: int = 0
    photons: tuple[float, float] = (2048.0, 2048.0)
    gauss: tuple[float, float] = (0.05, 0.05)
    grey: float = 0.0  # fraction of grey training items (see pydeblur.datasets.BlurredCrops)
    correlated_noise: float = 0.0  # fraction of colour items with noise correlated across channels
    crop_candidates: int = 1  # each training crop the most detailed of this many positions
    dead_leaves: int = 0  # synthetic dead-leaves photos among the training photos
    val_crops: int = 2
    val_crop: int = 48
    workers: int = 0
    threads: int | None = None
    device: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    grad_clip: float = 1.0
    max_minutes: float = 0.0  # stop after this much training time (at a step; 0: no limit)
    train_only: str = "all"  # "all", "stages" (the unrolled stages), "last-stage" (greedy training)
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig overrides

    def model_config(self) -> ModelConfig:
        """The network's configuration: CONFIGS[config] with the `model` overrides."""
        base = CONFIGS[self.config].to_dict() if self.config in CONFIGS else {}
        if not base:
            raise ValueError(f"unknown config {self.config!r}; known: {', '.join(sorted(CONFIGS))}")
        return ModelConfig.from_dict({**base, **self.model})


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
    # The unrolled model: the shipped network (frozen, --init-from its weights) and its stages, trained
    # greedily (--train-only last-stage, one stage more each run), then the stages jointly.
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
# The unrolled model: the shipped network (frozen, --init-from its weights) and its stages, trained
# greedily (--train-only last-stage, one stage more each run), then the stages jointly; the shipped
# model's data, with its kernel errors.
RECIPES["unrolled"] = {
    **RECIPES["default"],
    "epochs": 10,
    "steps_per_epoch": 300,
    "psf_error": 0.3,
    "train_only": "stages",
}
