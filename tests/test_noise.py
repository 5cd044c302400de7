"""pydeblur.noise: photon noise and its variance, the noise estimate, SNR and nsr conventions."""

import numpy as np
import pytest
import torch

from pydeblur.noise import (
    GAUSS,
    MIN_SIGMA,
    PAPER_SNR_DB,
    PHOTONS,
    add_photon_noise,
    estimate_channel_correlation,
    estimate_noise_sigma,
    expected_noise_variance,
    signal_to_noise_db,
    snr_to_nsr,
)
from tests.helpers import cpu_and_cuda
from tests.test_baselines import linear_blur, motion_psf, natural_image


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_noise_is_seeded(device):
    clean = torch.full((2, 3, 16, 16), 0.5, device=device)
    a = add_photon_noise(clean, generator=torch.Generator(device).manual_seed(3))
    b = add_photon_noise(clean, generator=torch.Generator(device).manual_seed(3))
    c = add_photon_noise(clean, generator=torch.Generator(device).manual_seed(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert a.shape == clean.shape and a.dtype == clean.dtype and a.device == clean.device


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("photons", "exposure", "gauss"), [(2048.0, 1.0, 0.05), (100.0, 0.5, 5.0)])
def test_noise_statistics_follow_the_photon_model(device, photons, exposure, gauss):
    level = torch.tensor([0.05, 0.3, 0.9], dtype=torch.float64, device=device)
    clean = level.reshape(3, 1, 1, 1).expand(3, 1, 400, 500).contiguous()
    generator = torch.Generator(device).manual_seed(0)
    noisy = add_photon_noise(clean, photons, exposure, gauss, generator).flatten(1)
    scale = photons * exposure
    expected_var = level / scale + (gauss / scale) ** 2
    n = noisy.shape[1]
    # mean within 5 standard errors, variance within 5 standard errors (~sqrt(2/n) relative)
    assert torch.all((noisy.mean(1) - level).abs() < 5 * (expected_var / n).sqrt())
    torch.testing.assert_close(noisy.var(1), expected_var, rtol=5 * (2 / n) ** 0.5, atol=0)


def test_per_image_noise_levels():
    clean = torch.full((2, 1, 300, 300), 0.5, dtype=torch.float64)
    noisy = add_photon_noise(clean, photons=[100.0, 10000.0], exposure=1.0, gauss=0.0)
    var = noisy.flatten(1).var(1)
    torch.testing.assert_close(
        var, torch.tensor([0.005, 0.00005], dtype=torch.float64), rtol=0.05, atol=0
    )
    assert (PHOTONS, GAUSS) == (2048.0, 0.05)  # the paper's noise model


def test_bad_noise_arguments_are_named():
    clean = torch.rand(2, 3, 20, 20)
    with pytest.raises(ValueError, match="photons must be one number or 2"):
        add_photon_noise(clean, photons=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="positive"):
        add_photon_noise(clean, photons=0.0)
    with pytest.raises(ValueError, match="gauss must be finite"):
        add_photon_noise(clean, gauss=float("nan"))


def test_expected_noise_variance_matches_the_photon_model():
    torch.manual_seed(2)
    clean = natural_image(3, 128)
    photons, exposure, gauss = 2048.0, 0.25, 0.05 * 2048 / 100
    noisy = add_photon_noise(clean, photons, exposure, gauss)
    measured = (noisy - clean).double().var()
    predicted = expected_noise_variance(noisy, exposure, photons, gauss)
    assert abs(predicted.item() / measured.item() - 1) < 0.03
    snr = signal_to_noise_db(clean, predicted)
    assert snr.item() == pytest.approx(
        10 * np.log10(float(clean.double().var(unbiased=False) / predicted)), rel=1e-9
    )


def test_noise_estimate_on_a_blurred_image():
    torch.manual_seed(3)
    psf = motion_psf(9)
    blurred, _ = linear_blur(natural_image(3, 200, texture=0.0), psf)
    for sigma in (0.01, 0.03):
        estimate = estimate_noise_sigma(blurred + sigma * torch.randn_like(blurred))
        assert estimate.shape == (1,)
        assert estimate.item() == pytest.approx(sigma, rel=0.15)
    # Nearly clean photos: the third difference leaves the blurred signal out at 0.1 % noise too.
    for sigma in (0.001, 0.003):
        estimate = estimate_noise_sigma(blurred + sigma * torch.randn_like(blurred))
        assert estimate.item() == pytest.approx(sigma, rel=0.08)
    # The floor of an 8-bit photo's noise: the standard deviation of rounding to 1/255.
    rounding = torch.rand(1_000_000, generator=torch.Generator().manual_seed(0)) - 0.5
    assert float(rounding.std() / 255) == pytest.approx(MIN_SIGMA, rel=1e-2)


def correlated_noise(correlation: float, shape, seed: int) -> torch.Tensor:
    """Unit noise with `correlation` between every pair of channels."""
    n = torch.randn(shape, generator=torch.Generator().manual_seed(seed))
    shared = n.mean(dim=1, keepdim=True)
    return (1 + 2 * correlation) ** 0.5 * shared + (1 - correlation) ** 0.5 * (n - shared)


@pytest.mark.parametrize("correlation", [0.0, 0.3, 0.7, 1.0])
def test_channel_correlation_of_noise_on_a_blurred_image(correlation):
    torch.manual_seed(3)
    blurred, _ = linear_blur(natural_image(3, 200, texture=0.0), motion_psf(9))
    noisy = blurred + 0.02 * correlated_noise(correlation, blurred.shape, seed=1)
    assert estimate_channel_correlation(noisy).item() == pytest.approx(correlation, abs=0.06)


def test_channel_correlation_of_grey_one_channel_and_noiseless_images_is_one():
    grey = (0.5 + 0.01 * torch.randn(2, 1, 64, 64)).expand(-1, 3, -1, -1)
    torch.testing.assert_close(estimate_channel_correlation(grey), torch.ones(2))
    assert estimate_channel_correlation(torch.rand(1, 1, 64, 64)).tolist() == [1.0]
    assert estimate_channel_correlation(torch.full((1, 3, 16, 16), 0.5)).tolist() == [1.0]


def test_signal_to_noise_db_per_image():
    sharp = torch.zeros(2, 3, 4, 4)
    sharp[..., :2] = 1  # half the pixels 0, half 1: variance 0.25 in both images
    snr = signal_to_noise_db(sharp, torch.tensor([0.25, 0.0025], dtype=torch.float64))
    torch.testing.assert_close(snr, torch.tensor([0.0, 20.0], dtype=torch.float64))


def test_snr_to_nsr_reads_decibels_or_ratios():
    assert PAPER_SNR_DB == tuple(float(v) for v in range(9, 66, 4)) and len(PAPER_SNR_DB) == 15
    torch.testing.assert_close(
        snr_to_nsr([10.0, 20.0]), torch.tensor([0.1, 0.01], dtype=torch.float64)
    )
    torch.testing.assert_close(
        snr_to_nsr([10.0, 20.0], "linear"), torch.tensor([0.1, 0.05], dtype=torch.float64)
    )
    # A number gives one value, the same bits as the scalar formula.
    for value in (9.0, 17.25, 33.3, 65.0):
        assert float(snr_to_nsr(value)) == 10 ** (-value / 10)
    with pytest.raises(ValueError, match="mode"):
        snr_to_nsr([10.0], "log")
    with pytest.raises(ValueError, match="snr_db is empty"):
        snr_to_nsr([])
    with pytest.raises(ValueError, match="must be positive"):
        snr_to_nsr([10.0, 0.0], "linear")


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_snr_to_nsr_keeps_a_tensor_differentiable(device):
    snr = torch.tensor([10.0, 30.0], device=device, requires_grad=True)
    nsr = snr_to_nsr(snr)
    assert nsr.dtype == torch.float32 and nsr.device.type == device
    nsr.sum().backward()
    expected = -torch.log(torch.tensor(10.0)) / 10 * torch.tensor([0.1, 0.001])
    torch.testing.assert_close(snr.grad.cpu(), expected)


def test_noise_estimate_of_images_under_4_px_a_side():
    torch.manual_seed(4)
    assert estimate_noise_sigma(torch.rand(2, 3, 3, 3)).tolist() == [0.0, 0.0]
    for shape in ((2, 200), (200, 2)):
        noise = 0.02 * torch.randn(1, 3, *shape)
        assert estimate_noise_sigma(noise).item() == pytest.approx(0.02, rel=0.15)
