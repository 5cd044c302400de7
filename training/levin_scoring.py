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


def shifted_psnr(
    estimate: torch.Tensor,
    sharp: torch.Tensor,
    max_shift: int = MAX_SHIFT,
    step: float = STEP,
    border: int = BORDER,
) -> torch.Tensor:
    """Per image, the PSNR of the best shift: estimate, sharp [B, C, H, W] in [0, 1] -> [B] (dB).

    Shifts (dy, dx) run over -max_shift..max_shift in steps of `step`; the sharp image loses `border`
    pixels on each side (max_shift <= border, so every shifted sample lies inside the estimate).

    >>> sharp = torch.rand(1, 1, 40, 40, generator=torch.Generator().manual_seed(0))
    >>> moved = torch.roll(sharp, shifts=(2, -1), dims=(2, 3))
    >>> bool(shifted_psnr(moved, sharp, border=6) > 100)
    True
    """
    if estimate.shape != sharp.shape or estimate.dim() != 4:
        raise ValueError(
            f"estimate and sharp must be [B, C, H, W] of one shape, got {tuple(estimate.shape)} and "
            f"{tuple(sharp.shape)}"
        )
    if not 0 <= max_shift <= border:
        raise ValueError(f"max_shift must be in 0..border ({border}), got {max_shift}")
    height, width = sharp.shape[-2] - 2 * border, sharp.shape[-1] - 2 * border
    if height < 1 or width < 1:
        raise ValueError(
            f"images of {tuple(sharp.shape[-2:])} leave nothing inside a {border}-px border"
        )
    x = estimate.double()
    reference = sharp.double()[..., border : border + height, border : border + width]
    quarters = int(round(1 / step))
    if abs(quarters * step - 1) > 1e-9:
        raise ValueError(f"step must be 1/n for an integer n, got {step}")
    best = torch.full((x.shape[0],), float("inf"), dtype=torch.float64)
    # A shift s = b + f (b integer, f in {0, step, ...}): the estimate sampled bilinearly at offset f,
    # then every integer window offset b at once: SSD = |window|^2 - 2 <window, ref> + |ref|^2.
    for fy in (i * step for i in range(quarters)):
        rows = x if fy == 0 else torch.lerp(x[..., :-1, :], x[..., 1:, :], fy)
        for fx in (i * step for i in range(quarters)):
            both = rows if fx == 0 else torch.lerp(rows[..., :-1], rows[..., 1:], fx)
            top, left = border - max_shift, border - max_shift
            extent_y = 2 * max_shift + (1 if fy == 0 else 0)  # b in -M..M (M - 1 when f > 0)
            extent_x = 2 * max_shift + (1 if fx == 0 else 0)
            region = both[
                ..., top : top + height + extent_y - 1, left : left + width + extent_x - 1
            ]
            ssd = (
                _window_sums(region.square(), height, width)
                - 2 * _correlations(region, reference)
                + reference.square().sum(dim=(1, 2, 3))[:, None, None]
            )
            best = torch.minimum(best, ssd.flatten(1).min(dim=1).values)
    mse = best.clamp_min(0) / reference[0].numel()
    return -10 * torch.log10(mse.clamp_min(1e-20))
