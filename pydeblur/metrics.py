"""Image quality metrics: on [B, C, H, W] tensors in [0, 1], and on one H x W x C array."""

import numpy as np
import torch


def psnr(x: torch.Tensor, reference: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: [B, C, H, W] x2 -> [B].

    >>> reference = torch.full((2, 3, 4, 4), 0.5)
    >>> [round(v, 2) for v in psnr(reference + 0.125, reference).tolist()]  # 10 log10(64)
    [18.06, 18.06]
    """
    if x.shape != reference.shape:
        raise ValueError(f"shapes differ: {tuple(x.shape)} and {tuple(reference.shape)}")
    mse = (x.double() - reference.double()).pow(2).flatten(1).mean(1)
    return (10 * torch.log10(data_range**2 / mse)).to(x.dtype)


def image_psnr(image: np.ndarray, reference: np.ndarray, border: int = 0) -> float:
    """PSNR in dB of one H x W (x C) array against another, values in [0, 1], `border` px a side
    left out (`psnr` on the centre, in float64).

    >>> round(image_psnr(np.full((40, 40, 3), 0.5), np.full((40, 40, 3), 0.6), border=5), 2)
    20.0
    """
    cut = (slice(border, -border or None),) * 2

    def batch(array: np.ndarray) -> torch.Tensor:
        inner = np.asarray(array, dtype=np.float64)[cut]
        inner = inner[..., None] if inner.ndim == 2 else inner
        return torch.from_numpy(np.ascontiguousarray(inner)).permute(2, 0, 1)[None]

    return float(psnr(batch(image), batch(reference))[0])
