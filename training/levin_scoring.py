"""Levin et al.'s scoring of their benchmark (comp_upto_shift.m), as the papers on it use it.

The estimate is shifted by every (dy, dx) in -5..5 pixels in steps of 0.25 (bilinear interpolation of
the estimate, as MATLAB's interp2) and compared with the sharp image cropped by 15 pixels on each side;
the image's score is the PSNR (peak 1) of the best shift. `step=1` gives the integer-shift variant.
"""

import torch

from pydeblur.boundary import fast_fft_size

MAX_SHIFT = 5
STEP = 0.25
BORDER = 15


def _window_sums(region: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Sums of region [B, C, H, W] over every height x width window, over channels: [B, H', W']."""
    total = region.sum(dim=1)
    padded = torch.nn.functional.pad(total, (1, 0, 1, 0)).cumsum(-1).cumsum(-2)
    return (
        padded[:, height:, width:]
        - padded[:, :-height, width:]
        - padded[:, height:, :-width]
        + padded[:, :-height, :-width]
    )


def _correlations(region: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """sum over c, y, x of region[c, dy + y, dx + x] * reference[c, y, x] for every window position
    (dy, dx): region [B, C, H, W], reference [B, C, h, w] -> [B, H - h + 1, W - w + 1] (by FFT)."""
    size = tuple(fast_fft_size(n) for n in region.shape[-2:])  # no wrap-around reaches the output
    spectrum = torch.fft.rfft2(region, s=size) * torch.fft.rfft2(reference, s=size).conj()
    full = torch.fft.irfft2(spectrum.sum(dim=1), s=size)
    (height, width), (h, w) = region.shape[-2:], reference.shape[-2:]
    return full[:, : height - h + 1, : width - w + 1]


def _check(estimate: torch.Tensor, sharp: torch.Tensor, max_shift: int, step: float, border: int):
    if estimate.shape != sharp.shape or estimate.dim() != 4:
        raise ValueError(
            f"estimate and sharp must be [B, C, H, W] of one shape, got {tuple(estimate.shape)} and "
            f"{tuple(sharp.shape)}"
        )
    if not 0 <= max_shift <= border:
        raise ValueError(f"max_shift must be in 0..border ({border}), got {max_shift}")
    if sharp.shape[-2] <= 2 * border or sharp.shape[-1] <= 2 * border:
        raise ValueError(
            f"images of {tuple(sharp.shape[-2:])} leave nothing inside a {border}-px border"
        )
    steps = round(1 / step)
    if abs(steps * step - 1) > 1e-9:
        raise ValueError(f"step must be 1/n for an integer n, got {step}")
    return steps


def best_shift(
    estimate: torch.Tensor,
    sharp: torch.Tensor,
    max_shift: int = MAX_SHIFT,
    step: float = STEP,
    border: int = BORDER,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best shift of each image: estimate, sharp [B, C, H, W] -> (MSE [B], shift [B, 2] as (dy,
    dx) in pixels: the estimate sampled at (y + dy, x + dx) is compared with sharp at (y, x)).

    Shifts run over -max_shift..max_shift in steps of `step`; the sharp image loses `border` pixels on
    each side (max_shift <= border, so every sample lies inside the estimate). Every shift is tried:
    for each fractional offset, every integer offset at once (SSD = |window|^2 - 2 <window, sharp> +
    |sharp|^2, the cross term by FFT, the first by box sums).

    >>> sharp = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    >>> mse, shift = best_shift(torch.roll(sharp, shifts=(2, -1), dims=(2, 3)), sharp, border=6)
    >>> shift.tolist(), bool(mse < 1e-12)
    ([[2.0, -1.0]], True)
    """
    steps = _check(estimate, sharp, max_shift, step, border)
    height, width = sharp.shape[-2] - 2 * border, sharp.shape[-1] - 2 * border
    x = estimate.double()
    reference = sharp.double()[..., border : border + height, border : border + width]
    energy = reference.square().sum(dim=(1, 2, 3))[:, None, None]
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    found = torch.zeros(x.shape[0], 2, dtype=torch.float64)
    start = border - max_shift
    for fy in (i * step for i in range(steps)):
        rows = x if fy == 0 else torch.lerp(x[..., :-1, :], x[..., 1:, :], fy)
        for fx in (i * step for i in range(steps)):
            both = rows if fx == 0 else torch.lerp(rows[..., :-1], rows[..., 1:], fx)
            # integer offsets -M..M (-M..M-1 with a fractional part, which reaches M at most)
            span_y = height + 2 * max_shift - (fy > 0)
            span_x = width + 2 * max_shift - (fx > 0)
            region = both[..., start : start + span_y, start : start + span_x]
            ssd = (
                _window_sums(region.square(), height, width)
                - 2 * _correlations(region, reference)
                + energy
            )
            value, index = ssd.flatten(1).min(dim=1)
            better = value < best
            best = torch.where(better, value, best)
            columns = ssd.shape[-1]
            shift = torch.stack([index // columns + fy, index % columns + fx], 1) - max_shift
            found[better] = shift.double()[better]
    return best.clamp_min(0) / reference[0].numel(), found


def shifted_psnr(
    estimate: torch.Tensor,
    sharp: torch.Tensor,
    max_shift: int = MAX_SHIFT,
    step: float = STEP,
    border: int = BORDER,
) -> torch.Tensor:
    """Per image, the PSNR of the best shift (`best_shift`): [B, C, H, W] pairs -> [B] (dB).

    >>> sharp = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    >>> bool(shifted_psnr(torch.roll(sharp, shifts=(2, -1), dims=(2, 3)), sharp, border=6) > 100)
    True
    """
    mse, _ = best_shift(estimate, sharp, max_shift, step, border)
    return -10 * torch.log10(mse.clamp_min(1e-20))


def shifted_windows(
    estimate: torch.Tensor, sharp: torch.Tensor, shift: torch.Tensor, border: int = BORDER
) -> tuple[torch.Tensor, torch.Tensor]:
    """The pairs `best_shift` compared: (estimate sampled bilinearly at each image's shift [B, 2],
    sharp's interior), both [B, C, H - 2 border, W - 2 border], in sharp's dtype.

    >>> sharp = torch.rand(2, 1, 30, 30)
    >>> a, b = shifted_windows(sharp, sharp, torch.zeros(2, 2), border=5)
    >>> tuple(a.shape), bool((a == b).all())
    ((2, 1, 20, 20), True)
    """
    height, width = sharp.shape[-2] - 2 * border, sharp.shape[-1] - 2 * border
    windows = []
    for image, (dy, dx) in zip(estimate.double(), shift.tolist(), strict=True):
        top, left = int(torch.floor(torch.tensor(dy))), int(torch.floor(torch.tensor(dx)))
        fy, fx = dy - top, dx - left
        rows = image[:, border + top : border + top + height + 1, border + left :]
        rows = rows[:, :height] if fy == 0 else torch.lerp(rows[:, :height], rows[:, 1:], fy)
        cols = rows[..., : width + 1]
        cols = cols[..., :width] if fx == 0 else torch.lerp(cols[..., :width], cols[..., 1:], fx)
        windows.append(cols)
    interior = sharp[..., border : border + height, border : border + width]
    return torch.stack(windows).to(sharp.dtype), interior
