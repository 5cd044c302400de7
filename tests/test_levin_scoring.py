"""training.levin_scoring: Levin et al.'s shift-searching PSNR, against a direct implementation."""

import math

import numpy as np
import pytest
import torch

from training.levin_scoring import best_shift, shifted_psnr, shifted_windows


def direct_shifted_psnr(estimate, sharp, max_shift, step, border):
    """comp_upto_shift.m, literally: every shift, the estimate interpolated bilinearly, the SSD."""
    from scipy.ndimage import map_coordinates

    e, s = estimate[0, 0].double().numpy(), sharp[0, 0].double().numpy()
    h, w = s.shape[0] - 2 * border, s.shape[1] - 2 * border
    reference = s[border : border + h, border : border + w]
    rows, cols = np.mgrid[border : border + h, border : border + w].astype(np.float64)
    shifts = np.arange(-max_shift, max_shift + step / 2, step)
    best = math.inf
    for dy in shifts:
        for dx in shifts:
            moved = map_coordinates(e, [rows + dy, cols + dx], order=1)
            best = min(best, float(((moved - reference) ** 2).mean()))
    return -10 * math.log10(best)


@pytest.mark.parametrize("step", [0.25, 0.5, 1.0])
def test_it_is_comp_upto_shift(step):
    generator = torch.Generator().manual_seed(0)
    sharp = torch.rand(1, 1, 28, 31, generator=generator)
    estimate = torch.roll(sharp, (1, -2), (2, 3)) + 0.05 * torch.rand(
        1, 1, 28, 31, generator=generator
    )
    estimate[..., :-1] = 0.7 * estimate[..., :-1] + 0.3 * estimate[..., 1:]  # a fractional shift
    fast = float(shifted_psnr(estimate, sharp, max_shift=3, step=step, border=5))
    assert fast == pytest.approx(direct_shifted_psnr(estimate, sharp, 3, step, 5), abs=1e-9)


def test_a_whole_pixel_shift_is_found_and_quarters_beat_integers():
    generator = torch.Generator().manual_seed(1)
    sharp = torch.rand(2, 3, 40, 40, generator=generator)
    assert (shifted_psnr(torch.roll(sharp, (-4, 5), (2, 3)), sharp) > 150).all()
    half = sharp.clone()
    half[..., :-1] = 0.5 * (sharp[..., :-1] + sharp[..., 1:])
    assert (shifted_psnr(half, sharp) > shifted_psnr(half, sharp, step=1)).all()


def test_bad_arguments_are_named():
    x = torch.zeros(1, 1, 40, 40)
    with pytest.raises(ValueError, match="one shape"):
        shifted_psnr(x, torch.zeros(1, 1, 40, 41))
    with pytest.raises(ValueError, match="max_shift"):
        shifted_psnr(x, x, max_shift=20)
    with pytest.raises(ValueError, match="step"):
        shifted_psnr(x, x, step=0.3)


def test_the_windows_at_the_best_shift_give_its_mse():
    generator = torch.Generator().manual_seed(2)
    sharp = torch.rand(3, 1, 40, 44, generator=generator)
    estimate = sharp.clone()
    estimate[..., 1:, :-1] = 0.5 * sharp[..., :-1, :-1] + 0.5 * sharp[..., :-1, 1:]
    mse, shift = best_shift(estimate, sharp)
    assert (shift.frac() != 0).any()  # fractional shifts were chosen
    windows, interior = shifted_windows(estimate, sharp, shift)
    torch.testing.assert_close((windows - interior).square().mean(dim=(1, 2, 3)).double(), mse)
