"""The data of a training run: the train and val splits as blurred crops, scaled photos, wrong kernels.

`build_data` makes the training dataset (on-the-fly crops of the train photos and of the synthetic
photos of `--dead-leaves`, `pydeblur.datasets`, `training.dead_leaves`) and the fixed validation
batches; `scaled_photos` the downscaled copies of the photos that `--photo-scales` asks for;
`unpack` reads an item or a batch as (blurred, psf, sharp); `perturb_psf` the slightly wrong kernels
of `--psf-error`; `add_misfit_noise` the spatially correlated noise of `training.train_hqs`'s
`--misfit-noise`; `add_white_noise` the signal-independent noise of its `--white-noise`. The loader is `pydeblur.datasets.make_loader` with an `EpochSampler`.
"""

import math
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from pydeblur import datasets
from pydeblur.kernels import gaussian
from training.configs import TrainOptions
from training.dead_leaves import SIZE as DEAD_LEAVES_SIZE
from training.dead_leaves import dead_leaves_photos

DEFAULT_PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "photos"
TRAIN_REPEATS = 1000  # the training photo list repeated: crop c comes from photo c % n_photos


def build_data(opts: TrainOptions) -> tuple[Any, list[tuple[torch.Tensor, ...]]]:
    """The training dataset (train split) and a fixed validation list of (blurred, psf, sharp).

    Training crops cycle through the photos (crop c of photo c % n) so that any window of
    consecutive crops covers every photo, with opts.photons / opts.gauss noise ranges. Validation
    uses the val split at the paper's noise (lambda 2048, sigma 0.05), the protocol of the test set;
    its batches are (blurred [b, 3, v, v], psf [b, 1, 34, 34], sharp [b, 3, v, v]), b <= 8 and v =
    opts.val_crop.
    """
    split = datasets.split_photos(opts.data or DEFAULT_PHOTOS, seed=opts.split_seed)
    photos = [
        path
        for scale in opts.photo_scales
        for path in scaled_photos(split["train"], scale, Path(opts.out) / f"photos_x{scale:g}")
    ]
    if opts.dead_leaves:
        folder = Path(opts.out) / "dead_leaves"
        photos += dead_leaves_photos(
            opts.dead_leaves, DEAD_LEAVES_SIZE, split["train"], folder, seed=opts.seed
        )
    train = datasets.BlurredCrops(
        photos * TRAIN_REPEATS,
        crops_per_photo=1,
        crop_size=opts.crop,
        photons=opts.photons,
        gauss=opts.gauss,
        augment=True,
        seed=opts.seed,
        grey=opts.grey,
        correlated=opts.correlated_noise,
        crop_candidates=opts.crop_candidates,
    )
    per_photo = max(1, opts.val_crops // (len(split["val"]) * len(train.exposures)))
    val = datasets.BlurredCrops(
        split["val"], per_photo, crop_size=opts.val_crop, seed=opts.seed + 1
    )
    items = [unpack(val[i]) for i in range(len(val))]
    val_batches = [
        tuple(torch.cat(part) for part in zip(*items[i : i + 8], strict=True))
        for i in range(0, len(items), 8)
    ]
    return train, val_batches


def scaled_photos(paths: list[str], scale: float, folder: Path) -> list[str]:
    """The photos resized by `scale` (area interpolation, 8-bit PNG, cached in folder); 1: as they are.

    The training photos are large wallpapers (about 1000 x 1600) with little detail per pixel; test
    images such as Levin's (255 x 255) and Kodak (768 x 512) have much more. Downscaled copies put
    that detail, and strong blur of detailed content, into training.
    """
    if scale == 1:
        return list(paths)
    if not 0 < scale < 1:
        raise ValueError(f"photo_scales must be in (0, 1], got {scale}")
    import cv2

    from pydeblur.io import read_image, write_image

    folder.mkdir(parents=True, exist_ok=True)
    scaled = []
    for path in paths:
        target = folder / (Path(path).stem + ".png")
        if not target.exists():
            image, _ = read_image(path)
            size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
            write_image(target, cv2.resize(image[..., :3], size, interpolation=cv2.INTER_AREA))
        scaled.append(str(target))
    return scaled


def unpack(item: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(blurred [B, 3, H, W], psf [B, 1, kh, kw], sharp [B, 3, H, W]) from a dataset item or batch.

    >>> image, psf = torch.zeros(3, 8, 8), torch.ones(1, 3, 3) / 9
    >>> [tuple(t.shape) for t in unpack({"blurred": image, "psf": psf, "sharp": image})]
    [(1, 3, 8, 8), (1, 1, 3, 3), (1, 3, 8, 8)]
    """
    if isinstance(item, dict):
        blurred, psf, sharp = item["blurred"], item["psf"], item["sharp"]
    else:
        blurred, psf, sharp = item
    if blurred.dim() == 3:
        blurred, psf, sharp = blurred[None], psf[None], sharp[None]
    return blurred, psf, sharp


def perturb_psf(psf: torch.Tensor, strength: float | torch.Tensor) -> torch.Tensor:
    """A slightly wrong copy of psf [B, 1, kh, kw], as a real kernel estimate is: [B, 1, kh, kw].

    strength: one number, or one per image [B] (the training loop draws each image's from
    U(0, psf_error), so that exact and wrong kernels are both seen). Each tap is scaled by (1 + strength N(0, 1)), a faint haze (strength / 10 of the peak, uniform)
    spreads over the support dilated by one pixel, and the kernel moves by a random sub-pixel shift of
    up to strength pixels per axis (bilinear); the result is non-negative and sums to 1. The blurred
    image keeps the exact PSF: the network learns not to trust a kernel blindly. Draws from the torch
    RNG (saved in checkpoints, so resume stays exact).
    """
    batch = psf.shape[0]
    if not isinstance(strength, torch.Tensor) and strength <= 0:
        return psf
    strength = torch.as_tensor(strength, dtype=psf.dtype, device=psf.device).expand(batch)
    per_tap = strength.view(batch, 1, 1, 1)
    peak = psf.amax(dim=(-2, -1), keepdim=True)
    support = torch.nn.functional.max_pool2d(psf, 3, stride=1, padding=1) > 0
    noisy = psf * (1 + per_tap * torch.randn_like(psf))
    noisy = noisy + support * (per_tap / 10) * peak * torch.rand_like(psf)
    shift = (torch.rand(batch, 2, device=psf.device) * 2 - 1) * strength.view(batch, 1)
    kh, kw = psf.shape[-2:]
    theta = torch.zeros(batch, 2, 3, device=psf.device, dtype=psf.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 2 * shift[:, 0] / kw
    theta[:, 1, 2] = 2 * shift[:, 1] / kh
    grid = torch.nn.functional.affine_grid(theta, list(psf.shape), align_corners=False)
    moved = torch.nn.functional.grid_sample(noisy.clamp_min(0), grid, align_corners=False)
    return moved / moved.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12)


def add_misfit_noise(
    blurred: torch.Tensor,
    level: float,
    share: float = 0.5,
    widths: tuple[float, float] = (0.5, 1.2),
) -> torch.Tensor:
    """blurred [B, C, H, W] plus noise correlated between neighbouring pixels, as a real photo's misfit
    is (what no single kernel explains: Levin's captures leave 0.9/255 rms against their best-fitting
    kernels, neighbours correlated 0.55, where the noise estimator reads 0.37/255: its differences see
    only the finest scale). Each image gets it with probability `share`: white noise smoothed by a
    Gaussian of width U(widths) px, scaled to an rms of U(0, level); one field for all channels of a
    grey image (its channels equal), one per channel otherwise. Draws from the torch RNG.

    >>> torch.manual_seed(0) and None
    >>> y = torch.zeros(2, 3, 32, 32)
    >>> out = add_misfit_noise(y, 0.01, share=1.0)
    >>> bool(out.std() < 0.01), tuple(out.shape)
    (True, (2, 3, 32, 32))
    """
    batch, channels = blurred.shape[:2]
    chosen = torch.rand(batch) < share
    levels = torch.rand(batch) * level * chosen
    out = []
    for index in range(batch):
        image = blurred[index : index + 1]
        if levels[index] == 0:
            out.append(image)
            continue
        width = float(torch.empty(1).uniform_(*widths))
        taps = torch.from_numpy(gaussian(width, truncate=3.0)).to(blurred)
        taps = taps / taps.square().sum().sqrt()  # unit gain for white noise
        radius = taps.shape[-1] // 2
        grey = bool((image[:, :1] == image).all())
        white = torch.randn(1, 1 if grey else channels, *blurred.shape[-2:]).to(blurred)
        padded = F.pad(white, (radius,) * 4, mode="reflect").transpose(0, 1)
        field = F.conv2d(padded, taps[None, None]).transpose(0, 1)
        out.append(image + levels[index].to(blurred) * field)
    return torch.cat(out)


WHITE_NOISE_LEVELS = (0.002, 0.05)  # 0.5/255 to 12.75/255: nearly clean to FDN's noisiest training


def add_white_noise(
    blurred: torch.Tensor, share: float, levels: tuple[float, float] = WHITE_NOISE_LEVELS
) -> torch.Tensor:
    """blurred [B, C, H, W] plus white Gaussian noise, independent of the signal (a sensor's read
    noise, and the benchmarks' noise model), where the recipe's photon noise scales with it. Each
    image gets it with probability `share`, of a standard deviation log-uniform in `levels`; one field
    for all channels of a grey image (its channels equal), one per channel otherwise. Draws from the
    torch RNG.

    >>> torch.manual_seed(0) and None
    >>> out = add_white_noise(torch.zeros(64, 3, 32, 32), share=0.5)
    >>> touched = out.flatten(1).std(dim=1) > 0
    >>> 16 < int(touched.sum()) < 48, bool(out.flatten(1).std(dim=1).max() < 0.06)
    (True, True)
    """
    batch, channels = blurred.shape[:2]
    chosen = torch.rand(batch) < share
    low, high = math.log(levels[0]), math.log(levels[1])
    sigmas = torch.exp(torch.empty(batch).uniform_(low, high)) * chosen
    grey = (blurred[:, :1] == blurred).flatten(1).all(dim=1)
    fields = torch.randn(blurred.shape).to(blurred)
    fields = torch.where(grey[:, None, None, None], fields[:, :1].expand_as(fields), fields)
    return blurred + sigmas.to(blurred)[:, None, None, None] * fields
