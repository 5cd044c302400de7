"""The evaluation benchmarks as lists of items, and the Levin benchmark's scoring rule.

An item is a dict: "blurred" [C, H, W], "sharp" [C, H, W], "psf" [1, kh, kw] (sum 1, true convolution),
"group" (the column it is reported under), "name", "noise_var" (the noise variance the paper baseline
assumes; see docs/evaluation.md), and "aligned" (scored by Levin's rule, `training.levin_scoring`).

- `paper_items`: the fixed held-out test set (`pydeblur.datasets.load_test_set`), grouped by exposure.
- `levin_items`: Levin et al. 2009, 4 greyscale images x 8 real camera-shake kernels, captured blur.
- `kodak_items`: Kodak photos blurred by linear convolution with the 8 Levin kernels plus Gaussian noise.
- `levin_synthetic_items`: Levin's sharp images blurred synthetically with their kernels (a diagnostic:
  the same set without the capture's mismatch).
"""

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from pydeblur.io import read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KODAK_SIGMAS = (0.01, 0.03)
KODAK_CROP = 256
KODAK_SEED = 0
LEVIN_SYNTHETIC_SEED = 0


def group_order(groups) -> list[str]:
    """Groups in reading order: exposures ascending, kernels k1..k8, noise levels ascending."""

    def key(group: str):
        if group.startswith("k") and group[1:].isdigit():
            return (0, int(group[1:]))
        if group.startswith("sigma "):
            return (0, float(group.split()[1]))
        return (0, Fraction(group))

    return sorted(set(groups), key=key)


def exposure_label(exposure: float) -> str:
    """1/8, 1/4, 1/2, 1 for the paper's exposure fractions."""
    return str(Fraction(exposure).limit_denominator(64))


def paper_items(test_set_path: str | Path, limit: int | None = None) -> list[dict]:
    """Items of the fixed test set, grouped by exposure. Noise variance from the photon model
    (`pydeblur.noise.expected_noise_variance`) with each item's exposure, photons and gauss.
    limit: about `limit` items, all exposures of ceil(limit / exposures) crops spread evenly over the
    test set (so over its photos)."""
    from pydeblur.datasets import load_test_set
    from pydeblur.noise import expected_noise_variance

    dataset = load_test_set(test_set_path)
    per_crop = dataset.per_crop
    crops = len(dataset) // per_crop
    wanted = crops if limit is None else min(crops, -(-limit // per_crop))
    chosen = [round(i * crops / wanted) for i in range(wanted)]
    items = []
    for index in (c * per_crop + e for c in chosen for e in range(per_crop)):
        item = dataset[index]
        noise_var = expected_noise_variance(
            item["blurred"][None], item["exposure"], item["photons"], item["gauss"]
        )
        items.append(
            {
                "blurred": item["blurred"],
                "sharp": item["sharp"],
                "psf": item["psf"],
                "group": exposure_label(item["exposure"]),
                "name": f"test{index:04d}",
                "noise_var": float(noise_var),
                "aligned": False,
            }
        )
    return items


def levin_kernels(folder: str | Path = DATA / "levin") -> list[torch.Tensor]:
    """The 8 Levin kernels, float32 [kh, kw], sum 1, oriented for true convolution."""
    folder = Path(folder)
    kernels = []
    for j in range(1, 9):
        path = folder / "kernels" / f"kernel{j}.npy"
        if not path.is_file():
            raise FileNotFoundError(f"Levin kernel not found: {path}")
        kernel = torch.from_numpy(np.load(path).astype(np.float32))
        kernels.append(kernel / kernel.sum())
    return kernels


def levin_items(folder: str | Path = DATA / "levin", limit: int | None = None) -> list[dict]:
    """The 32 captured blurred images (greyscale, [1, 255, 255]) with their ground truth and kernels,
    grouped by kernel. The benchmark has no noise model: each item's noise variance (what the peers
    that need a noise level and the paper baseline's SNR are given) is `_capture_noise_sigma`'s.
    Ordered so that every prefix is balanced: round r = 0..7 pairs image i with kernel (2 i + r) mod 8,
    so the first 8 items hold every kernel once and every image twice."""
    folder = Path(folder)
    kernels = levin_kernels(folder)
    sharps = {i: _grey(folder / "gt" / f"im{i}.png") for i in range(1, 5)}
    items = []
    for r in range(len(kernels)):
        for i, sharp in sharps.items():
            j = (2 * (i - 1) + r) % len(kernels) + 1
            kernel = kernels[j - 1]
            blurred = _grey(folder / "blurred" / f"im{i}_kernel{j}.png")
            items.append(
                {
                    "blurred": blurred,
                    "sharp": sharp,
                    "psf": kernel[None],
                    "group": f"k{j}",
                    "name": f"im{i}_kernel{j}",
                    "noise_var": float(_capture_noise_sigma(blurred) ** 2),
                    "noise_known": False,  # a reading of the capture: there is no noise model
                    "aligned": True,
                }
            )
    return items[:limit]


def levin_synthetic_items(
    folder: str | Path = DATA / "levin", limit: int | None = None, seed: int = LEVIN_SYNTHETIC_SEED
) -> list[dict]:
    """`levin_items` with the captured blur replaced by an exact synthetic one: each sharp image
    convolved with its kernel (linear convolution of the reflection-extended image, `pydeblur.degrade`)
    plus Gaussian noise of the captured image's level (`levin_items`' noise variance), from a
    generator seeded by (seed, item index). Same images, kernels, order and scoring: the difference
    between the two sets is what the capture adds to the model (kernel estimation error, non-uniform
    blur, saturation)."""
    from pydeblur.degrade import blur_valid, pad_for_blur

    items = []
    for index, item in enumerate(levin_items(folder, limit)):
        kernel = item["psf"][0]
        blurred = blur_valid(pad_for_blur(item["sharp"][None], *kernel.shape), kernel)[0]
        generator = torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
        )
        noise = torch.randn(blurred.shape, generator=generator) * item["noise_var"] ** 0.5
        items.append({**item, "blurred": blurred + noise, "noise_known": True})
    return items


def _capture_noise_sigma(capture: torch.Tensor) -> torch.Tensor:
    """The noise level the Levin sets are defined with: the MAD / 0.6745 of the capture's ([1, H, W])
    `haar_detail`, the estimator `pydeblur.noise` had when FDN's row was verified and levin-synthetic
    made. Kept here, apart from the library's estimator (which reads lower on the captures,
    docs/evaluation.md), so that the sets and the peer's input stay as they were."""
    return haar_detail(capture).abs().median() / 0.6745


def haar_detail(y: torch.Tensor) -> torch.Tensor:
    """The finest diagonal Haar detail of y [..., H, W]: [..., H // 2, W // 2], the noise detail
    `pydeblur.noise` read before 2026-12-04 (as skimage.restoration.estimate_sigma)."""
    h, w = (y.shape[-2] // 2) * 2, (y.shape[-1] // 2) * 2
    v = y[..., :h, :w]
    return (v[..., 0::2, 0::2] - v[..., 0::2, 1::2] - v[..., 1::2, 0::2] + v[..., 1::2, 1::2]) / 2


def noise_estimate_error(items: list[dict]) -> dict | None:
    """How well `pydeblur.noise.estimate_noise_sigma` (the models' automatic noise level) finds each
    item's known noise sigma: means of the true sigma, the estimate, |estimate - sigma| and
    |estimate - sigma| / sigma; None for a set whose noise is not known (Levin's captures)."""
    from pydeblur.noise import estimate_noise_sigma

    if not all(item.get("noise_known", True) for item in items):
        return None
    true = torch.tensor([item["noise_var"] ** 0.5 for item in items], dtype=torch.float64)
    estimate = torch.cat([estimate_noise_sigma(item["blurred"][None].double()) for item in items])
    error = (estimate - true).abs()
    return {
        "mean_sigma": float(true.mean()),
        "mean_estimate": float(estimate.mean()),
        "mean_abs_error": float(error.mean()),
        "mean_relative_error": float((error / true).mean()),
    }


def _grey(path: Path) -> torch.Tensor:
    image, _ = read_image(path)
    if image.ndim != 2:
        raise ValueError(f"{path}: expected a greyscale image, got shape {image.shape}")
    return torch.from_numpy(image)[None]


def kodak_items(
    folder: str | Path = DATA / "kodak",
    levin_folder: str | Path = DATA / "levin",
    sigmas: tuple[float, ...] = KODAK_SIGMAS,
    crop: int = KODAK_CROP,
    seed: int = KODAK_SEED,
    limit: int | None = None,
) -> list[dict]:
    """Kodak photos blurred with each Levin kernel, plus Gaussian noise of each sigma, grouped by sigma.

    Each photo's central crop x crop region is the sharp image; the blurred image is the linear
    convolution (`pydeblur.degrade.blur_valid`, valid region) of the larger central crop that the
    kernel needs, so its borders hold real image content, then N(0, sigma^2) noise from a generator
    seeded by (seed, photo, kernel, sigma). Within each sigma, round r = 0..7 pairs photo p with
    kernel (p + r) mod 8, so every prefix is balanced; `limit` keeps the first `limit` items of each
    sigma (24: every photo once, every kernel 3 times).
    """
    from pydeblur.degrade import blur_valid, valid_offset

    folder = Path(folder)
    photos = sorted(folder.glob("kodim*.png"))
    if not photos:
        raise FileNotFoundError(f"no kodim*.png photos in {folder}")
    kernels = levin_kernels(levin_folder)
    per_sigma = (
        len(photos) * len(kernels) if limit is None else min(limit, len(photos) * len(kernels))
    )
    pairs = [(p, (p + r) % len(kernels)) for r in range(len(kernels)) for p in range(len(photos))]
    images = {}
    items = []
    for s_index, sigma in enumerate(sigmas):
        for p_index, k_index in pairs[:per_sigma]:
            if p_index not in images:
                images[p_index] = torch.from_numpy(read_image(photos[p_index])[0]).permute(2, 0, 1)
            image, kernel = images[p_index], kernels[k_index]
            kh, kw = kernel.shape
            top, left = valid_offset(kh, kw)
            row = (image.shape[1] - crop) // 2 - top
            col = (image.shape[2] - crop) // 2 - left
            padded = image[:, row : row + crop + kh - 1, col : col + crop + kw - 1]
            blurred = blur_valid(padded[None], kernel)[0]
            entropy = np.random.SeedSequence([seed, p_index, k_index, s_index])
            generator = torch.Generator().manual_seed(int(entropy.generate_state(1)[0]))
            noise = torch.randn(blurred.shape, generator=generator) * sigma
            items.append(
                {
                    "blurred": blurred + noise,
                    "sharp": padded[:, top : top + crop, left : left + crop].contiguous(),
                    "psf": kernel[None],
                    "group": f"sigma {sigma:g}",
                    "name": f"{photos[p_index].stem}_kernel{k_index + 1}_sigma{sigma:g}",
                    "noise_var": sigma**2,
                    "aligned": False,
                }
            )
    return items
