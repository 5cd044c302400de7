"""pydeblur.baselines: references, improvement over the blurred input, oracle choice, paper SNR."""

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from pydeblur import baselines
from pydeblur.degrade import blur_valid, valid_offset
from pydeblur.metrics import psnr
from pydeblur.noise import snr_to_nsr
from pydeblur.physics import circular_convolve, psf2otf
from tests.helpers import cpu_and_cuda


def natural_image(
    channels: int = 3, size: int = 96, seed: int = 0, texture: float = 0.03
) -> torch.Tensor:
    """A photo-like test image [1, C, size, size]: smooth shading, edges and white-noise texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    planes = []
    for c in range(channels):
        image = 0.4 + 0.2 * np.sin(6 * xx + c) * np.cos(4 * yy)
        image[size // 4 : size // 2, size // 5 : 3 * size // 5] += 0.3
        image[(xx - 0.7) ** 2 + (yy - 0.65) ** 2 < 0.02] -= 0.25
        image += texture * rng.standard_normal((size, size))
        planes.append(image)
    return torch.tensor(np.clip(np.stack(planes), 0, 1), dtype=torch.float32)[None]


def motion_psf(size: int = 9) -> torch.Tensor:
    """A diagonal, slightly bent motion kernel [1, 1, size, size], sum 1, odd size."""
    psf = np.zeros((size, size))
    for i in range(size):
        psf[i, min(size - 1, i + (i % 3 == 0))] = 1.0 + 0.1 * i
    return torch.tensor(psf / psf.sum(), dtype=torch.float32)[None, None]


def linear_blur(sharp_padded: torch.Tensor, psf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(blurred, aligned sharp) by `degrade.blur_valid` of a larger sharp image."""
    kh, kw = psf.shape[-2:]
    top, left = valid_offset(kh, kw)
    blurred = blur_valid(sharp_padded, psf)
    h, w = blurred.shape[-2:]
    return blurred, sharp_padded[..., top : top + h, left : left + w]


def test_richardson_lucy_matches_skimage():
    from skimage.restoration import richardson_lucy

    # A black frame wider than the PSF makes circular and zero-padded convolution agree.
    image = np.zeros((80, 80))
    image[16:64, 16:64] = natural_image(1, 48)[0, 0].double().numpy()
    psf = motion_psf(7)[0, 0].double().numpy()
    blurred = convolve2d(image, psf, mode="same")
    expected = richardson_lucy(blurred, psf, num_iter=12, clip=False)
    got = baselines.richardson_lucy_circular(
        torch.tensor(blurred)[None, None], torch.tensor(psf)[None, None], iterations=12
    )
    np.testing.assert_allclose(got[0, 0].numpy(), expected, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_richardson_lucy_sharpens_a_linearly_blurred_photo(device):
    psf = motion_psf(9).to(device)
    blurred, sharp = linear_blur(natural_image(3, 110).to(device), psf)
    restored = baselines.richardson_lucy(blurred, psf, iterations=20)
    assert restored.shape == blurred.shape
    assert psnr(restored.clamp(0, 1), sharp) > psnr(blurred, sharp) + 3


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_admm_tv_improves_on_the_blurred_input(device):
    torch.manual_seed(0)
    psf = motion_psf(9).to(device)
    blurred, sharp = linear_blur(natural_image(3, 110).to(device), psf)
    noisy = blurred + 0.01 * torch.randn_like(blurred)
    restored = baselines.admm_tv(noisy, psf)
    gain = psnr(restored.clamp(0, 1), sharp) - psnr(noisy, sharp)
    assert gain.item() > 3
    # The circular version on a circularly blurred image recovers it too.
    circular = circular_convolve(sharp, psf2otf(psf, sharp.shape[-2:], half_spectrum=True))
    restored = baselines.admm_tv_circular(circular + 0.01 * torch.randn_like(circular), psf)
    assert (psnr(restored.clamp(0, 1), sharp) - psnr(circular, sharp)).item() > 3


def test_admm_tv_without_noise_and_small_lam_converges_to_the_sharp_image():
    sharp = natural_image(1, 64).double()
    psf = motion_psf(5).double()
    blurred = circular_convolve(sharp, psf2otf(psf, sharp.shape[-2:], half_spectrum=True))
    restored = baselines.admm_tv_circular(blurred, psf, lam=1e-5, iterations=200)
    assert psnr(restored, sharp).item() > 40


def test_oracle_picks_the_best_nsr_of_its_grid():
    torch.manual_seed(1)
    psf = motion_psf(9).repeat(2, 1, 1, 1)
    padded = torch.cat([natural_image(3, 100, seed=s) for s in (0, 1)])
    blurred, sharp = linear_blur(padded, psf)
    blurred = blurred + torch.tensor([0.002, 0.05]).view(2, 1, 1, 1) * torch.randn_like(blurred)
    grid = torch.logspace(-1, -5, 9, dtype=torch.float64)
    restored, best, scores = baselines.oracle_wiener(blurred, psf, sharp, nsr_grid=grid)
    brute = torch.stack(
        [psnr(baselines.wiener(blurred, psf, float(n)).clamp(0, 1), sharp) for n in grid], dim=1
    )
    torch.testing.assert_close(scores, brute, atol=1e-3, rtol=0)
    assert best.tolist() == grid[brute.argmax(1)].tolist()
    # More noise needs more regularisation.
    assert best[1] > best[0]
    for b in range(2):
        expected = baselines.wiener(blurred[b : b + 1], psf[b : b + 1], float(best[b]))
        torch.testing.assert_close(restored[b : b + 1], expected)


def test_paper_baseline_is_wiener_then_the_bilateral_filter():
    from pydeblur.ops import bilateral_filter

    psf = motion_psf(9)
    blurred, _ = linear_blur(natural_image(3, 80), psf)
    expected = bilateral_filter(baselines.wiener(blurred, psf, 0.01).clamp(0, 1), 7, 40 / 255, 10.0)
    torch.testing.assert_close(baselines.paper_baseline(blurred, psf, 0.01), expected)


def test_the_paper_baselines_nsr_is_that_of_the_average_snr():
    average = baselines.average_snr_db(torch.tensor([10.0, 30.0]))
    assert average == 20.0
    assert float(snr_to_nsr(average)) == pytest.approx(0.01)


def test_oracle_margin_is_the_boundary_padding():
    psf = motion_psf(9)
    blurred, sharp = linear_blur(natural_image(3, 80), psf)
    grid = torch.tensor([1e-2, 1e-3], dtype=torch.float64)
    restored, best, _ = baselines.oracle_wiener(blurred, psf, sharp, nsr_grid=grid, margin=20)
    expected = baselines.wiener(blurred, psf, float(best[0]), margin=20)
    torch.testing.assert_close(restored, expected, rtol=0, atol=0)
    assert not torch.equal(expected, baselines.wiener(blurred, psf, float(best[0])))


def test_bad_inputs_name_the_argument():
    y = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="psf"):
        baselines.richardson_lucy(y, torch.rand(2, 1, 5, 5))
    with pytest.raises(ValueError, match="y must"):
        baselines.admm_tv(y[0], torch.rand(1, 1, 5, 5))
    with pytest.raises(ValueError, match="iterations"):
        baselines.richardson_lucy_circular(y, torch.rand(1, 1, 5, 5), iterations=0)
    with pytest.raises(ValueError, match="sharp"):
        baselines.oracle_wiener(y, torch.rand(1, 1, 5, 5), torch.rand(1, 3, 16, 16))
    with pytest.raises(ValueError, match="larger"):
        baselines.wiener(y, torch.rand(1, 1, 40, 40), 0.01)
