"""A last step that pulls a deblurred estimate back toward the data it must explain.

Given the estimate x0 of a network, the blurred image y and its PSF k, the solution of

    min_x  ||k * x - y||^2 / sigma^2  +  strength * ||x - x0||^2

is, in the Fourier domain, X = (conj(K) Y + lam X0) / (|K|^2 + lam) with lam = strength * sigma^2:
frequencies that the blur keeps well above the noise come from the data, the others from x0.
`strength` is 1 / (the variance of x0's error); sigma is the noise of y, estimated from y itself
(`pydeblur.noise.estimate_noise_sigma`) unless given. The solve is `pydeblur.physics.data_term_prox`;
like the Wiener features, it runs on a canvas made periodic by `pydeblur.boundary.pad_periodic`, so
image borders do not ring.
"""

import torch

from pydeblur.boundary import crop, embed, pad_periodic
from pydeblur.noise import MIN_SIGMA, estimate_noise_sigma
from pydeblur.physics import data_term_prox, data_where_trusted, psf2otf


def data_consistency(
    estimate: torch.Tensor,
    blurred: torch.Tensor,
    psf: torch.Tensor,
    strength: float,
    sigma: torch.Tensor | None = None,
    trusted: torch.Tensor | None = None,
    adjust_boundary: bool = False,
) -> torch.Tensor:
    """The estimate [B, C, H, W] corrected toward the blurred images [B, C, H, W] for psf [B, 1, kh, kw].

    strength: positive, 1 / the variance of the estimate's error (larger keeps more of the estimate).
    sigma: the noise standard deviation of each blurred image [B] (default: estimated from blurred);
        values under MIN_SIGMA are raised to it.
    trusted: where the data hold [B, C or 1, H, W] (1) and where not (0: clipped highlights, see
        `pydeblur.restore`); there the blurred estimate replaces the data, so they pull nowhere.
    adjust_boundary: outside the image (the canvas's padding) too, the blurred estimate replaces
        the data (FDN's boundary adjustment); False: the smooth extension of the data stays there.
    Returns [B, C, H, W] in estimate's dtype; computed in float64 (the division by |K|^2 + lam
    reaches ~1e-6 at low noise); differentiable.

    >>> blurred = torch.rand(2, 3, 32, 32)
    >>> psf = torch.full((2, 1, 5, 5), 1 / 25)
    >>> data_consistency(blurred, blurred, psf, strength=1e4).shape
    torch.Size([2, 3, 32, 32])
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
    otf = psf2otf(psf.double(), canvas_y.shape[-2:], half_spectrum=True)
    lam = (strength * sigma.double() ** 2).reshape(-1, 1, 1, 1)
    canvas_x0 = pad_periodic(estimate.double(), (kh, kw))[0]
    if trusted is not None or adjust_boundary:
        data = torch.ones_like(blurred[:, :1]) if trusted is None else trusted
        outside = 0.0 if adjust_boundary else 1.0  # else the periodic extension of y stays there
        mask = embed(data.to(canvas_y.dtype), padding, canvas_y.shape[-2:], outside)
        canvas_y = data_where_trusted(canvas_y, canvas_x0, otf, mask)
    return crop(data_term_prox(canvas_x0, canvas_y, otf, lam), padding).to(estimate.dtype)
