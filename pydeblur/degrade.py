"""Synthetic degradation: motion blur by true linear convolution, then Boracchi-Foi photon noise
(`pydeblur.noise.add_photon_noise`).

Convention (docs/design.md): a PSF [kh, kw] has its centre at element (kh // 2, kw // 2) and blurring is
convolution, not correlation:

    blurred[r, c] = sum_{a, b} psf[a, b] * sharp[r - (a - kh // 2), c - (b - kw // 2)].

`blur_valid` takes a sharp crop larger than the output by (kh - 1, kw - 1) and returns only the pixels
whose whole support lies inside it (the "valid" region), so the borders are those of a real photo, not
periodic or padded. The sharp image aligned with the output is `padded[..., o:o + H, p:p + W]` with
(o, p) = `valid_offset(kh, kw)` = ((kh - 1) // 2, (kw - 1) // 2). This is the circular model of
`pydeblur.physics` (psf2otf with MATLAB's centring) restricted to pixels that do not wrap, so
deconvolving with the same PSF gives the sharp image back with no shift or flip.

The convolution is an FFT product at a fast FFT size at least the padded crop's: the circular
wrap-around only reaches the first kh - 1 rows and kw - 1 columns, which are cut off, so the result
is the exact linear convolution up to float rounding (about 1e-7 relative in float32), and its cost
does not grow with the PSF size: for 8 images of 3x289x289 and 34x34 kernels it took 65-100 ms
against 215-250 ms for the grouped conv2d peer (one thread, busy shared machine;
benchmarks/test_bench_data.py).
"""

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F
from scipy.fft import next_fast_len

from pydeblur.noise import GAUSS, PHOTONS, add_photon_noise


def valid_offset(kh: int, kw: int) -> tuple[int, int]:
    """(row, column) of the output's pixel (0, 0) in the padded sharp crop.

    >>> valid_offset(34, 33)
    (16, 16)
    """
    return (kh - 1) // 2, (kw - 1) // 2


def _psf_batch(psf, batch: int, channels: int, is_numpy: bool = False):
    """A PSF [kh, kw], [B, 1, kh, kw] or [B, C, kh, kw] as a broadcastable [B or 1, C or 1, kh, kw]."""
    kind = np.ndarray if is_numpy else torch.Tensor
    if not isinstance(psf, kind):
        raise TypeError(
            f"psf must be a {kind.__module__}.{kind.__name__} like padded, got {type(psf).__name__}"
        )
    if psf.ndim == 2:
        return psf[None, None]
    if psf.ndim != 4 or psf.shape[0] not in (1, batch) or psf.shape[1] not in (1, channels):
        raise ValueError(
            f"psf must be [kh, kw], [B, 1, kh, kw] or [B, C, kh, kw] with B = {batch} and "
            f"C = {channels}, got shape {tuple(psf.shape)}"
        )
    return psf


def blur_valid(padded, psf):
    """Linear convolution, valid region: padded [B, C, H + kh - 1, W + kw - 1] -> [B, C, H, W].

    psf: [kh, kw] (all images), [B, 1, kh, kw] (one per image) or [B, C, kh, kw]. Torch tensors (CPU
    or CUDA, same device) are computed with torch.fft in `padded`'s dtype. NumPy arrays are computed
    with scipy.fft on one thread, so the result is bit-for-bit the same in every process whatever the
    thread settings (torch's multi-threaded CPU FFT rounds differently with different thread counts);
    the datasets rely on that.

    >>> blur_valid(torch.rand(2, 3, 20, 24), torch.full((5, 9), 1 / 45)).shape
    torch.Size([2, 3, 16, 16])
    """
    is_numpy = isinstance(padded, np.ndarray)
    if padded.ndim != 4 or not (
        np.issubdtype(padded.dtype, np.floating) if is_numpy else padded.is_floating_point()
    ):
        raise ValueError(
            f"padded must be a float [B, C, H, W] array, got {padded.dtype} {tuple(padded.shape)}"
        )
    batch, channels, hp, wp = padded.shape
    k = _psf_batch(psf, batch, channels, is_numpy)
    kh, kw = k.shape[-2:]
    if kh > hp or kw > wp:
        raise ValueError(f"psf of size {kh}x{kw} is larger than the padded image {hp}x{wp}")
    # Any FFT size >= the padded size keeps the wrap-around out of the valid region: take a fast one.
    size = (next_fast_len(hp, real=True), next_fast_len(wp, real=True))
    if is_numpy:
        k = k.astype(padded.dtype)
        spectrum = scipy.fft.rfft2(padded, s=size, workers=1) * scipy.fft.rfft2(
            k, s=size, workers=1
        )
        full = scipy.fft.irfft2(spectrum, s=size, workers=1)
    else:
        k = k.to(padded.dtype)
        spectrum = torch.fft.rfft2(padded, s=size) * torch.fft.rfft2(k, s=size)
        full = torch.fft.irfft2(spectrum, s=size)
    return full[..., kh - 1 : hp, kw - 1 : wp]


def pad_for_blur(image: torch.Tensor, kh: int, kw: int, mode: str = "reflect") -> torch.Tensor:
    """Extend [B, C, H, W] to [B, C, H + kh - 1, W + kw - 1] so `blur_valid` returns H x W aligned
    with `image` (used where no larger sharp crop exists, e.g. the `pydeblur blur` command).

    >>> pad_for_blur(torch.rand(1, 3, 16, 16), 5, 4).shape
    torch.Size([1, 3, 20, 19])
    """
    top, left = valid_offset(kh, kw)
    if mode == "reflect" and (kh // 2 >= image.shape[-2] or kw // 2 >= image.shape[-1]):
        raise ValueError(
            f"image of size {image.shape[-2]}x{image.shape[-1]} is too small to be extended by "
            f"reflection for a {kh}x{kw} kernel (more than half the kernel's size is needed)"
        )
    return F.pad(image, (left, kw - 1 - left, top, kh - 1 - top), mode=mode)


def degrade(
    padded: torch.Tensor,
    psf: torch.Tensor,
    photons=PHOTONS,
    exposure=1.0,
    gauss=GAUSS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Blur (`blur_valid`) then add photon noise (`add_photon_noise`); photons=None for no noise.

    padded: [B, C, H + kh - 1, W + kw - 1] sharp, psf [kh, kw] / [B, 1, kh, kw] / [B, C, kh, kw]
    -> blurred [B, C, H, W], aligned with padded[..., o:o + H, p:p + W], (o, p) = valid_offset(kh, kw).

    >>> degrade(torch.rand(1, 3, 20, 20), torch.full((5, 5), 1 / 25), generator=torch.Generator()).shape
    torch.Size([1, 3, 16, 16])
    """
    blurred = blur_valid(padded, psf)
    if photons is None:
        return blurred
    return add_photon_noise(blurred, photons, exposure, gauss, generator)
