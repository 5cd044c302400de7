"""A last step that pulls a deblurred estimate back toward the data it must explain.

Given the estimate x0 of a network, the blurred image y and its PSF k, the solution of

    min_x  ||k * x - y||^2 / sigma^2  +  strength * ||x - x0||^2

is, in the Fourier domain, X = (conj(K) Y + lam X0) / (|K|^2 + lam) with lam = strength * sigma^2:
frequencies that the blur keeps well above the noise come from the data, the others from x0.
`strength` is 1 / (the variance of x0's error); sigma is the noise of y, estimated from y itself
(`pydeblur.baselines.estimate_noise_sigma`) unless given. Like the Wiener features, the solve runs
on a canvas made periodic by `pydeblur.boundary.pad_periodic`, so image borders do not ring.
"""

import torch

from pydeblur.baselines import estimate_noise_sigma
from pydeblur.boundary import crop, pad_periodic
from pydeblur.ops import psf2otf

MIN_SIGMA = 1 / (255 * 12**0.5)
"""The standard deviation of 8-bit rounding, the floor of any photo's noise (~0.0011)."""


def data_consistency(
    estimate: torch.Tensor,
    blurred: torch.Tensor,
    psf: torch.Tensor,
    strength: float,
    sigma: torch.Tensor | None = None,
) -> torch.Tensor:
    """The estimate [B, C, H, W] corrected toward the blurred images [B, C, H, W] for psf [B, 1, kh, kw].

    strength: positive, 1 / the variance of the estimate's error (larger keeps more of the estimate).
    sigma: the noise standard deviation of each blurred image [B] (default: estimated from blurred);
        values under MIN_SIGMA are raised to it.
    Returns [B, C, H, W] in estimate's dtype; computed in float64 (the division by |K|^2 + lam
    reaches ~1e-6 at low noise); differentiable.
    """
    if estimate.dim() != 4 or estimate.shape != blurred.shape:
        raise ValueError(
            f"estimate and blurred must be [B, C, H, W] of one shape, got {tuple(estimate.shape)} "
            f"and {tuple(blurred.shape)}"
        )
    if psf.dim() != 4 or psf.shape[0] != blurred.shape[0] or psf.shape[1] != 1:
        raise ValueError(
            f"psf must be [B, 1, kh, kw] with B = {blurred.shape[0]}, got {tuple(psf.shape)}"
        )
    if not strength > 0:
        raise ValueError(f"strength must be positive, got {strength}")
    if sigma is None:
        sigma = estimate_noise_sigma(blurred)
    # Never below the rounding noise of an 8-bit image: at sigma = 0 frequencies the PSF removes
    # would be divided by zero.
    sigma = sigma.clamp_min(MIN_SIGMA)
    kh, kw = psf.shape[-2:]
    canvas_y, padding = pad_periodic(blurred.double(), (kh, kw))
    height, width = canvas_y.shape[-2:]
    otf = psf2otf(psf.double(), (height, width))[..., : width // 2 + 1]  # real images: half spectra
    lam = (strength * sigma.double() ** 2).reshape(-1, 1, 1, 1)
    spectrum = otf.conj() * torch.fft.rfft2(canvas_y)
    del canvas_y
    spectrum += lam * torch.fft.rfft2(pad_periodic(estimate.double(), (kh, kw))[0])
    spectrum /= otf.abs() ** 2 + lam
    return crop(torch.fft.irfft2(spectrum, s=(height, width)), padding).to(estimate.dtype)
