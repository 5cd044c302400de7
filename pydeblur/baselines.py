"""Classical non-blind deconvolution baselines, batched in torch (CPU and CUDA).

Every method takes blurred images y [B, C, H, W] in [0, 1] and one PSF per image, psf [B, 1, kh, kw] or
[B, C, kh, kw] (non-negative, sum 1, centre at (kh // 2, kw // 2), true convolution), and returns
[B, C, H, W]. The deconvolutions work on the circular model: the public functions pad y with the same
boundary extension as the network (`pydeblur.boundary`) before deconvolving and crop after, so a photo
blurred by linear convolution is handled the way the network handles it. The `*_circular` functions
skip that step (for periodic images, and for tests against references). The blur model they share
(OTF, convolution, Wiener filter) is `pydeblur.physics`; the noise estimate, `pydeblur.noise`.

- `paper_baseline`: the paper's baseline, one Wiener filter at a fixed nsr (the dataset's average SNR,
  see `average_snr_db`), clipped to [0, 1], then the bilateral filter with the paper's parameters.
- `oracle_wiener`: per image, the best Wiener filter of a grid of nsr values, chosen by a score against
  the sharp image: an upper bound for any single Wiener filter.
- `richardson_lucy`: Richardson-Lucy with a fixed iteration count (`RL_ITERATIONS`).
- `admm_tv`: ADMM for min_x 1/2 ||k * x - y||^2 + lam TV(x) (isotropic TV per channel), x-update in
  the Fourier domain, z-update by shrinkage; lam proportional to the noise level estimated from y.
"""

from collections.abc import Callable

import torch

from pydeblur.metrics import psnr
from pydeblur.noise import estimate_noise_sigma
from pydeblur.physics import (
    circular_convolve,
    circular_convolve_adjoint,
    psf2otf,
    wiener_deconvolve,
)

# Richardson-Lucy iterations: more sharpen further but amplify noise. 30 suits low noise (Levin:
# 29.1 dB on im1 with kernels 1-4, about as good as the best Wiener filter); noisy images want fewer
# (the evaluation picks the count per benchmark, see docs/evaluation.md).
RL_ITERATIONS = 30
# ADMM-TV: lam = TV_WEIGHT_PER_SIGMA * (noise sigma estimated from y), rho = RHO_PER_LAM * lam. The
# weight 0.15 was the best of 0.05..0.3 on Levin images and on synthetic Gaussian noise 0.01-0.03;
# rho hardly matters (5..100 within 0.05 dB) and 40 iterations are within 0.02 dB of 60 and 150.
TV_WEIGHT_PER_SIGMA = 0.15
RHO_PER_LAM = 20.0
ADMM_ITERATIONS = 40
# The nsr grid of the oracle Wiener filters: 10^-0.5 .. 10^-5.5, 21 values (a quarter decade apart).
ORACLE_NSR_GRID = torch.logspace(-0.5, -5.5, 21, dtype=torch.float64)


def _check_pair(y: torch.Tensor, psf: torch.Tensor) -> None:
    if not isinstance(y, torch.Tensor) or not y.is_floating_point() or y.dim() != 4:
        raise ValueError(f"y must be a float tensor [B, C, H, W], got {_describe(y)}")
    if not isinstance(psf, torch.Tensor) or not psf.is_floating_point() or psf.dim() != 4:
        raise ValueError(f"psf must be a float tensor [B, 1 or C, kh, kw], got {_describe(psf)}")
    if psf.shape[0] != y.shape[0] or psf.shape[1] not in (1, y.shape[1]):
        raise ValueError(
            f"psf must be [B, 1 or C, kh, kw] for y of shape {tuple(y.shape)}, got {tuple(psf.shape)}"
        )
    if psf.shape[-2] > y.shape[-2] or psf.shape[-1] > y.shape[-1]:
        raise ValueError(f"psf {tuple(psf.shape[-2:])} is larger than y {tuple(y.shape[-2:])}")
    if psf.device != y.device:
        raise ValueError(f"y is on {y.device} but psf is on {psf.device}")


def _describe(t) -> str:
    if isinstance(t, torch.Tensor):
        return f"{t.dtype} tensor of shape {tuple(t.shape)}"
    return type(t).__name__


def with_boundary(
    deconvolve: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    y: torch.Tensor,
    psf: torch.Tensor,
    margin: int | None = None,
) -> torch.Tensor:
    """Pad y [B, C, H, W] with the network's boundary extension (`margin` pixels a side, default the
    PSF's larger side), run `deconvolve(y_padded, psf)` (any result [..., H', W'] of the padded size)
    and crop back to [..., H, W].

    >>> y = torch.rand(1, 3, 20, 24)
    >>> with_boundary(lambda canvas, k: canvas, y, torch.ones(1, 1, 5, 5) / 25).equal(y)
    True
    """
    from pydeblur.boundary import crop, pad_periodic

    canvas, padding = pad_periodic(y, tuple(psf.shape[-2:]), margin)
    return crop(deconvolve(canvas, psf), padding)


# ---------------------------------------------------------------------------------------------------
# Wiener filters


def wiener(
    y: torch.Tensor, psf: torch.Tensor, nsr: torch.Tensor | float, margin: int | None = None
) -> torch.Tensor:
    """`pydeblur.physics.wiener_deconvolve` with the network's boundary handling (`with_boundary`):
    nsr a float -> [B, C, H, W]; nsr a 1-D tensor of S values -> [B, S, C, H, W].

    >>> wiener(torch.rand(2, 3, 32, 32), torch.full((2, 1, 5, 5), 1 / 25), 0.01).shape
    torch.Size([2, 3, 32, 32])
    """
    _check_pair(y, psf)
    return with_boundary(lambda p, k: wiener_deconvolve(p, k, nsr), y, psf, margin)


def paper_baseline(y: torch.Tensor, psf: torch.Tensor, nsr: float) -> torch.Tensor:
    """The paper's baseline: one Wiener filter at `nsr` (the same for every image: the dataset's
    average, `pydeblur.noise.snr_to_nsr(average_snr_db(...))`), clipped to [0, 1], then the
    bilateral filter with the paper's parameters (window 7, sigma_color 40/255, sigma_space 10).
    y [B, C, H, W], psf [B, 1 or C, kh, kw] -> [B, C, H, W].

    >>> paper_baseline(torch.rand(1, 3, 32, 32), torch.full((1, 1, 5, 5), 1 / 25), 0.01).shape
    torch.Size([1, 3, 32, 32])
    """
    from pydeblur.ops import bilateral_filter

    restored = wiener(y, psf, nsr).clamp(0.0, 1.0)
    return bilateral_filter(restored, kernel_size=7, sigma_color=40 / 255, sigma_space=10.0)


def psnr_scores(candidates: torch.Tensor, sharp: torch.Tensor) -> torch.Tensor:
    """PSNR of each candidate, clipped to [0, 1]: [B, S, C, H, W] and [B, C, H, W] -> [B, S].

    >>> sharp = torch.full((1, 3, 4, 4), 0.5)
    >>> psnr_scores(torch.stack([sharp + 0.1, sharp + 0.01], dim=1), sharp)
    tensor([[20.0000, 40.0000]])
    """
    b, s = candidates.shape[:2]
    reference = sharp.unsqueeze(1).expand_as(candidates).flatten(0, 1)
    return psnr(candidates.clamp(0, 1).flatten(0, 1), reference).view(b, s)


def oracle_wiener(
    y: torch.Tensor,
    psf: torch.Tensor,
    sharp: torch.Tensor,
    nsr_grid: torch.Tensor = ORACLE_NSR_GRID,
    score: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = psnr_scores,
    margin: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per image, the Wiener filter (`wiener`) of `nsr_grid` [S] that scores best against the sharp
    image: y, sharp [B, C, H, W], psf [B, 1 or C, kh, kw].

    score(candidates [B, S, C, H, W], sharp [B, C, H, W]) -> [B, S], higher is better (default PSNR).
    margin: the boundary padding per side (default the PSF's larger side).
    Returns (restored [B, C, H, W], best nsr [B] (float64), scores [B, S] of every grid value).

    >>> sharp = torch.rand(2, 3, 32, 32)
    >>> restored, best, scores = oracle_wiener(sharp, torch.full((2, 1, 5, 5), 1 / 25), sharp)
    >>> restored.shape, best.shape, scores.shape
    (torch.Size([2, 3, 32, 32]), torch.Size([2]), torch.Size([2, 21]))
    """
    _check_pair(y, psf)
    if sharp.shape != y.shape:
        raise ValueError(f"sharp must have y's shape {tuple(y.shape)}, got {tuple(sharp.shape)}")
    grid = torch.as_tensor(nsr_grid, dtype=torch.float64).flatten()
    if grid.numel() == 0 or not bool((grid > 0).all()):
        raise ValueError("nsr_grid must hold positive values")
    bank = wiener(y, psf, grid, margin)
    scores = score(bank, sharp)
    best = scores.argmax(dim=1)
    restored = bank[torch.arange(y.shape[0], device=y.device), best]
    return restored, grid.to(y.device)[best], scores


# ---------------------------------------------------------------------------------------------------
# Richardson-Lucy


def richardson_lucy_circular(
    y: torch.Tensor, psf: torch.Tensor, iterations: int = RL_ITERATIONS, eps: float = 1e-12
) -> torch.Tensor:
    """Richardson-Lucy with circular convolution, started from 0.5 everywhere like
    skimage.restoration.richardson_lucy: x <- x * (k^T (y / (k x + eps))). Negative values of y
    (Gaussian noise) are set to 0, since the method assumes non-negative data.
    y [B, C, H, W], psf [B, 1 or C, kh, kw] -> [B, C, H, W].

    >>> flat = torch.full((1, 1, 16, 16), 0.25, dtype=torch.float64)
    >>> x = richardson_lucy_circular(flat, torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64), 5)
    >>> torch.allclose(x, flat)
    True
    """
    _check_pair(y, psf)
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    y = y.clamp_min(0)
    otf = psf2otf(psf.to(y.dtype), y.shape[-2:], half_spectrum=True)
    x = torch.full_like(y, 0.5)
    for _ in range(iterations):
        ratio = y / (circular_convolve(x, otf) + eps)
        x = x * circular_convolve_adjoint(ratio, otf)
    return x


def richardson_lucy(
    y: torch.Tensor, psf: torch.Tensor, iterations: int = RL_ITERATIONS
) -> torch.Tensor:
    """`richardson_lucy_circular` with the network's boundary handling: [B, C, H, W] -> [B, C, H, W].

    >>> richardson_lucy(torch.rand(1, 3, 32, 32), torch.full((1, 1, 5, 5), 1 / 25), 3).shape
    torch.Size([1, 3, 32, 32])
    """
    _check_pair(y, psf)
    return with_boundary(lambda p, k: richardson_lucy_circular(p, k, iterations), y, psf)


# ---------------------------------------------------------------------------------------------------
# ADMM with a total-variation prior


def _difference_otfs(shape: tuple[int, int], dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """OTFs of the circular forward differences x[i, j+1] - x[i, j] and x[i+1, j] - x[i, j]."""
    dh = torch.zeros(shape, dtype=dtype, device=device)
    dv = torch.zeros(shape, dtype=dtype, device=device)
    dh[0, 0], dh[0, -1] = -1.0, 1.0
    dv[0, 0], dv[-1, 0] = -1.0, 1.0
    return torch.fft.rfft2(dh), torch.fft.rfft2(dv)


def _gradient(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.roll(x, -1, dims=-1) - x, torch.roll(x, -1, dims=-2) - x


def admm_tv_circular(
    y: torch.Tensor,
    psf: torch.Tensor,
    lam: torch.Tensor | float | None = None,
    rho: torch.Tensor | float | None = None,
    iterations: int = ADMM_ITERATIONS,
) -> torch.Tensor:
    """ADMM for min_x 1/2 ||k * x - y||^2 + lam sum |grad x| (isotropic TV per channel), circular.

    Splitting z = grad x with scaled dual u:
      x <- F^-1[(conj(K) Y + rho conj(D) F(z - u)) / (|K|^2 + rho |D|^2)]
      z <- shrink(grad x + u, lam / rho)  (per pixel and channel, on the 2-vector of differences)
      u <- u + grad x - z
    lam: float or [B]; None -> TV_WEIGHT_PER_SIGMA * estimate_noise_sigma(y). rho: None ->
    RHO_PER_LAM * lam. Starts from x = y. y [B, C, H, W], psf [B, 1 or C, kh, kw] -> [B, C, H, W].

    >>> flat = torch.full((1, 1, 16, 16), 0.25, dtype=torch.float64)
    >>> x = admm_tv_circular(flat, torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64), 1e-3)
    >>> torch.allclose(x, flat)
    True
    """
    _check_pair(y, psf)
    if iterations < 1:
        raise ValueError(f"iterations must be at least 1, got {iterations}")
    batch = y.shape[0]
    if lam is None:
        lam = TV_WEIGHT_PER_SIGMA * estimate_noise_sigma(y)
    lam = torch.as_tensor(lam, dtype=y.dtype, device=y.device).expand(batch).clamp_min(1e-6)
    rho = RHO_PER_LAM * lam if rho is None else torch.as_tensor(rho, dtype=y.dtype, device=y.device)
    rho = rho.expand(batch).view(batch, 1, 1, 1)
    threshold = lam.view(batch, 1, 1, 1) / rho

    shape = y.shape[-2:]
    otf = psf2otf(psf.to(y.dtype), shape, half_spectrum=True)
    dh, dv = _difference_otfs(shape, y.dtype, y.device)
    numerator_data = otf.conj() * torch.fft.rfft2(y)
    denominator = otf.abs().square() + rho * (dh.abs().square() + dv.abs().square())

    x = y.clone()
    gh, gv = _gradient(x)
    zh, zv = gh.clone(), gv.clone()
    uh, uv = torch.zeros_like(y), torch.zeros_like(y)
    for _ in range(iterations):
        rhs = numerator_data + rho * (
            dh.conj() * torch.fft.rfft2(zh - uh) + dv.conj() * torch.fft.rfft2(zv - uv)
        )
        x = torch.fft.irfft2(rhs / denominator, s=shape)
        gh, gv = _gradient(x)
        vh, vv = gh + uh, gv + uv
        magnitude = torch.sqrt(vh.square() + vv.square()).clamp_min(1e-12)
        factor = (1 - threshold / magnitude).clamp_min(0)
        zh, zv = vh * factor, vv * factor
        uh, uv = vh - zh, vv - zv
    return x


def admm_tv(
    y: torch.Tensor,
    psf: torch.Tensor,
    lam: torch.Tensor | float | None = None,
    iterations: int = ADMM_ITERATIONS,
    weight: float = TV_WEIGHT_PER_SIGMA,
) -> torch.Tensor:
    """`admm_tv_circular` with the network's boundary handling: [B, C, H, W] -> [B, C, H, W].
    lam: float or [B]; None -> weight * estimate_noise_sigma(y) (of the unpadded y).

    >>> admm_tv(torch.rand(1, 3, 32, 32), torch.full((1, 1, 5, 5), 1 / 25), iterations=3).shape
    torch.Size([1, 3, 32, 32])
    """
    _check_pair(y, psf)
    if lam is None:
        lam = weight * estimate_noise_sigma(y)
    return with_boundary(lambda p, k: admm_tv_circular(p, k, lam, iterations=iterations), y, psf)


# ---------------------------------------------------------------------------------------------------
# The paper baseline's fixed SNR


def average_snr_db(snr_values_db: torch.Tensor) -> float:
    """The dataset's average SNR: the mean of the per-image SNRs in dB [N] (a geometric mean of
    ratios); the paper baseline's nsr is `pydeblur.noise.snr_to_nsr` of it.

    >>> average_snr_db(torch.tensor([10.0, 30.0]))
    20.0
    """
    return float(torch.as_tensor(snr_values_db, dtype=torch.float64).mean())
