"""Noise: the photon noise of the synthetic data, the noise level of a photo, and SNR conventions.

- `add_photon_noise`: Boracchi-Foi Poisson-Gaussian noise (docs/design.md's model of the training data),
  with `expected_noise_variance` its mean variance per image.
- `estimate_noise_sigma`: the noise standard deviation of an image, measured from the image alone;
  `MIN_SIGMA` is the floor of any 8-bit photo's noise.
- `estimate_channel_correlation`: how much of that noise the colour channels share (0: independent,
  1: one noise in every channel, as a grey photo's three copies).
- `signal_to_noise_db`: the SNR of an image for a noise variance.
- `snr_to_nsr`: assumed SNRs (decibels, or linear ratios) -> the noise-to-signal ratios of Wiener
  filters; `PAPER_SNR_DB` holds the paper's 15.

Images are [B, C, H, W] tensors; per-image values are [B].
"""

from collections.abc import Sequence

import torch

PHOTONS = 2048.0
"""lambda: the photons at intensity 1 for the full exposure (the paper's noise model)."""
GAUSS = 0.05
"""sigma: the Gaussian read noise, in photons."""
MIN_SIGMA = 1 / (255 * 12**0.5)
"""The standard deviation of 8-bit rounding, the floor of any photo's noise (~0.0011)."""
PAPER_SNR_DB: tuple[float, ...] = tuple(float(v) for v in range(9, 66, 4))
"""The paper's 15 assumed SNRs in dB: 9, 13, ..., 65."""


def _per_image(value, batch: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A float or [B] sequence/tensor as a [B, 1, 1, 1] tensor of `like`'s dtype and device."""
    t = torch.as_tensor(value, dtype=like.dtype, device=like.device).reshape(-1)
    if t.numel() not in (1, batch):
        raise ValueError(f"{name} must be one number or {batch} numbers, got {t.numel()}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return t.expand(batch).reshape(batch, 1, 1, 1)


def add_photon_noise(
    clean: torch.Tensor,
    photons=PHOTONS,
    exposure=1.0,
    gauss=GAUSS,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Boracchi-Foi Poisson-Gaussian noise: z = Poisson(lambda T clean) + N(0, sigma^2), return
    z / (lambda T).

    clean: [B, C, H, W] intensities (negative values, float rounding of a convolution, count as 0).
    photons (lambda, photons at intensity 1 for the full exposure), exposure (T) and gauss (sigma, in
    photons) are numbers or one per image ([B]). Returns [B, C, H, W] in clean's dtype, with mean
    `clean` and variance clean / (lambda T) + (sigma / (lambda T))^2. generator: a torch.Generator
    on clean's device.

    >>> clean = torch.full((2, 3, 8, 8), 0.5)
    >>> add_photon_noise(clean, exposure=[1.0, 0.5], generator=torch.Generator().manual_seed(0)).shape
    torch.Size([2, 3, 8, 8])
    """
    batch = clean.shape[0]
    scale = _per_image(photons, batch, clean, "photons") * _per_image(
        exposure, batch, clean, "exposure"
    )
    sigma = _per_image(gauss, batch, clean, "gauss")
    if bool((scale <= 0).any()) or bool((sigma < 0).any()):
        raise ValueError("photons and exposure must be positive and gauss non-negative")
    counts = torch.poisson(clean.clamp(min=0) * scale, generator=generator)
    read_noise = torch.randn(
        clean.shape, generator=generator, dtype=clean.dtype, device=clean.device
    )
    return (counts + sigma * read_noise) / scale


def expected_noise_variance(
    blurred: torch.Tensor, exposure: torch.Tensor, photons: torch.Tensor, gauss: torch.Tensor
) -> torch.Tensor:
    """Mean noise variance per image [B] (float64) of blurred [B, C, H, W] under `add_photon_noise`'s
    model: image = (Poisson(lambda T b) + N(0, sigma^2)) / (lambda T) has variance b / (lambda T) +
    sigma^2 / (lambda T)^2 at a pixel of clean blurred value b; the mean over pixels uses mean(y) for
    mean(b) (the noise has zero mean). exposure T, photons lambda, gauss sigma: [B] or scalars.

    >>> expected_noise_variance(torch.full((1, 3, 8, 8), 0.5), 1.0, 100.0, 0.0)
    tensor([0.0050], dtype=torch.float64)
    """
    as_float64 = {"dtype": torch.float64, "device": blurred.device}
    scale = torch.as_tensor(photons, **as_float64) * torch.as_tensor(exposure, **as_float64)
    sigma = torch.as_tensor(gauss, **as_float64)
    mean_b = blurred.double().flatten(1).mean(1).clamp_min(0)
    return mean_b / scale + sigma.square() / scale.square()


def estimate_noise_sigma(y: torch.Tensor) -> torch.Tensor:
    """Noise standard deviation per image [B] from y [B, C, H, W] (in y's dtype): the median
    absolute deviation / 0.6745 (Donoho's robust estimator) of `_noise_detail`, over all channels.
    The mixed third difference cancels every polynomial of degree < 3 along each axis, so a blurred
    image's smooth signal leaves almost nothing in it. (The finest diagonal Haar detail, which
    skimage.restoration.estimate_sigma uses, cancels only degree < 1 and read ~28 % high on the
    low-noise levin-synthetic set; this reads within 1 %: docs/evaluation.md, the noise estimator.)

    >>> y = 0.5 + 0.02 * torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    >>> round(float(estimate_noise_sigma(y)[0]), 2)
    0.02
    """
    return _noise_detail(y).flatten(1).abs().median(dim=1).values / 0.6745


def _noise_detail(y: torch.Tensor) -> torch.Tensor:
    """The mixed third difference of y [B, C, H, W], the filter d d^T / 20 with d = [1, -3, 3, -1]
    (unit gain for white noise), applied separably at every second row and column (a quarter of the
    positions are as many samples as a median needs, at a quarter of the cost). A side shorter than
    4 px is left undifferenced (one-axis difference); an image short on both sides gives zeros."""
    if y.shape[-1] < 4 and y.shape[-2] < 4:
        return torch.zeros_like(y)
    for dim in (-1, -2):
        if y.shape[dim] >= 4:
            window = y.unfold(dim, 4, 2)
            y = (
                (window[..., 0] - window[..., 3]) - 3 * (window[..., 1] - window[..., 2])
            ) / 20**0.5
    return y


def estimate_channel_correlation(y: torch.Tensor) -> torch.Tensor:
    """The noise's correlation between the colour channels per image [B] in [0, 1], from y
    [B, C, H, W] (in y's dtype): noise of variance s^2 in each of C channels with correlation c has a
    channel mean of variance s^2 (1 + (C - 1) c) / C, so c = (C r - 1) / (C - 1) for r the ratio of
    the two variances, each measured as `estimate_noise_sigma` measures one (robust to the few edges
    left in that detail). One channel, or a noiseless image: 1.

    >>> g = torch.Generator().manual_seed(0)
    >>> independent = 0.5 + 0.02 * torch.randn(1, 3, 128, 128, generator=g)
    >>> grey = (0.5 + 0.02 * torch.randn(1, 1, 128, 128, generator=g)).expand(-1, 3, -1, -1)
    >>> [round(float(estimate_channel_correlation(y)[0]), 1) for y in (independent, grey)]
    [0.0, 1.0]
    """
    channels = y.shape[1]
    if channels == 1:
        return torch.ones(y.shape[0], dtype=y.dtype, device=y.device)
    detail = _noise_detail(y)
    each = detail.flatten(1).abs().median(dim=1).values
    mean = detail.mean(dim=1).flatten(1).abs().median(dim=1).values
    ratio = (mean / each.clamp_min(torch.finfo(y.dtype).tiny)).square()
    correlation = (channels * ratio - 1) / (channels - 1)
    return torch.where(each > 0, correlation, torch.ones_like(correlation)).clamp(0, 1)


def signal_to_noise_db(sharp: torch.Tensor, noise_variance: torch.Tensor) -> torch.Tensor:
    """SNR per image in dB [B] (float64): 10 log10(var(sharp) / noise variance [B]), the variance of
    sharp [B, C, H, W] over its pixels and channels (the signal power a Wiener filter's nsr refers to).

    >>> sharp = torch.tensor([0.0, 1.0]).repeat(2, 1, 4, 2)  # [2, 1, 4, 4], variance 0.25
    >>> signal_to_noise_db(sharp, torch.tensor([0.025, 0.0025], dtype=torch.float64))
    tensor([10., 20.], dtype=torch.float64)
    """
    signal = sharp.double().flatten(1).var(1, unbiased=False)
    return 10 * torch.log10(signal / noise_variance)


def snr_to_nsr(snr_db: float | Sequence[float] | torch.Tensor, mode: str = "db") -> torch.Tensor:
    """Noise-to-signal ratios for assumed SNRs: a number or [S] -> [S].

    mode "db": nsr = 10^(-snr/10) (docs/design.md); mode "linear": nsr = 1/snr (how the paper's MATLAB
    code read the same numbers). A tensor keeps its dtype and device and stays differentiable (a
    learnable bank); numbers and sequences give float64.

    >>> snr_to_nsr([10.0, 20.0])
    tensor([0.1000, 0.0100], dtype=torch.float64)
    >>> snr_to_nsr([10.0, 20.0], mode="linear")
    tensor([0.1000, 0.0500], dtype=torch.float64)
    """
    values = snr_db if torch.is_tensor(snr_db) else torch.as_tensor(snr_db, dtype=torch.float64)
    values = values.reshape(-1)
    if values.numel() == 0:
        raise ValueError("snr_db is empty")
    if mode == "db":
        return torch.pow(10.0, -values / 10.0)
    if mode == "linear":
        if bool((values <= 0).any()):
            raise ValueError(f"snr values read as linear ratios must be positive, got {snr_db}")
        return 1.0 / values
    raise ValueError(f"mode must be 'db' or 'linear', got {mode!r}")
