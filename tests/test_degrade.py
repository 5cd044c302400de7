"""Blur by valid linear convolution, then photon noise (tested in tests/test_noise.py)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pydeblur.degrade import blur_valid, degrade, pad_for_blur, valid_offset
from pydeblur.noise import add_photon_noise
from pydeblur.psf import TrajectoryParams, make_psfs
from tests.helpers import cpu_and_cuda


def random_psfs(batch, kh, kw, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    psf = torch.rand(batch, 1, kh, kw, generator=g, dtype=dtype)
    return psf / psf.sum(dim=(2, 3), keepdim=True)


@pytest.mark.parametrize(("kh", "kw"), [(5, 4), (34, 34), (33, 7), (1, 1)])
def test_an_impulse_gives_the_psf_centred_on_it(kh, kw):
    psf = random_psfs(1, kh, kw)[0, 0]
    top, left = valid_offset(kh, kw)
    padded = torch.zeros(1, 1, 40 + kh - 1, 50 + kw - 1, dtype=torch.float64)
    padded[0, 0, top + 20, left + 25] = 1  # the sharp image's pixel (20, 25)
    blurred = blur_valid(padded, psf)[0, 0]
    assert blurred.shape == (40, 50)
    r, c = 20 - kh // 2, 25 - kw // 2  # convolution: psf[a, b] lands at (20 + a - kh//2, ...)
    torch.testing.assert_close(blurred[r : r + kh, c : c + kw], psf)
    assert float(blurred.sum()) == pytest.approx(1.0)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("kh", "kw"), [(34, 34), (9, 6)])
def test_matches_direct_convolution_per_image(device, kh, kw):
    g = torch.Generator().manual_seed(1)
    padded = torch.rand(3, 3, 30 + kh - 1, 20 + kw - 1, generator=g, dtype=torch.float64)
    psf = random_psfs(3, kh, kw, seed=2)
    # conv2d is correlation: flip the kernel; one group per (image, channel)
    weight = psf.flip(-2, -1).repeat_interleave(3, dim=0)
    expected = F.conv2d(padded.reshape(1, 9, *padded.shape[2:]), weight, groups=9).reshape(
        3, 3, 30, 20
    )
    got = blur_valid(padded.to(device), psf.to(device)).cpu()
    torch.testing.assert_close(got, expected)
    got32 = blur_valid(padded.float().to(device), psf.float().to(device)).cpu()
    torch.testing.assert_close(got32, expected.float(), atol=2e-6, rtol=1e-5)
    # one PSF for the whole batch
    torch.testing.assert_close(blur_valid(padded, psf[0, 0])[1:2], blur_valid(padded[1:2], psf[:1]))


def test_numpy_arrays_give_the_torch_result():
    g = torch.Generator().manual_seed(4)
    padded = torch.rand(2, 3, 40, 33, generator=g, dtype=torch.float64)
    psf = random_psfs(2, 12, 9, seed=5)
    got = blur_valid(padded.numpy(), psf.numpy())
    assert isinstance(got, np.ndarray) and got.shape == (2, 3, 29, 25)
    torch.testing.assert_close(torch.from_numpy(got), blur_valid(padded, psf))
    with pytest.raises(TypeError, match="like padded"):
        blur_valid(padded.numpy(), psf)


def test_pad_for_blur_keeps_the_size_and_alignment():
    image = torch.rand(2, 3, 41, 37, dtype=torch.float64)
    for kh, kw in [(34, 34), (7, 4)]:
        padded = pad_for_blur(image, kh, kw)
        top, left = valid_offset(kh, kw)
        assert padded.shape == (2, 3, 41 + kh - 1, 37 + kw - 1)
        torch.testing.assert_close(padded[..., top : top + 41, left : left + 37], image)
        delta = torch.zeros(1, 1, kh, kw, dtype=torch.float64)
        delta[0, 0, kh // 2, kw // 2] = 1  # the identity PSF
        torch.testing.assert_close(blur_valid(padded, delta.expand(2, 1, kh, kw)), image)


def test_too_small_for_reflection_is_a_clear_error():
    with pytest.raises(ValueError, match="too small"):
        pad_for_blur(torch.rand(1, 3, 16, 40), 34, 34)


def test_degrade_is_blur_then_photon_noise():
    padded = torch.rand(1, 3, 20, 20)
    psf = torch.full((5, 5), 1 / 25)
    torch.testing.assert_close(degrade(padded, psf, photons=None), blur_valid(padded, psf))
    noisy = degrade(padded, psf, 100.0, 0.5, 1.0, torch.Generator().manual_seed(7))
    expected = add_photon_noise(
        blur_valid(padded, psf), 100.0, 0.5, 1.0, torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(noisy, expected, rtol=0, atol=0)


def test_bad_arguments_are_named():
    padded = torch.rand(2, 3, 20, 20)
    with pytest.raises(ValueError, match="psf must be"):
        blur_valid(padded, torch.rand(3, 1, 5, 5))
    with pytest.raises(ValueError, match="larger than the padded"):
        blur_valid(padded, torch.rand(21, 3))
    with pytest.raises(ValueError, match="padded must be"):
        blur_valid(torch.rand(3, 20, 20), torch.rand(3, 3))
    with pytest.raises(ValueError, match="photons must be one number or 2"):
        degrade(padded, torch.rand(3, 3), photons=[1.0, 2.0, 3.0])


@pytest.mark.parametrize("size", [34, 33])
def test_wiener_bank_inverts_degrade_with_no_shift_or_flip(size):
    """Blur with degrade (periodic extension, so the circular model holds exactly), deconvolve with
    pydeblur.ops.wiener_bank at a tiny nsr: the sharp image comes back, not a shifted or flipped one."""
    from pydeblur.ops import wiener_bank

    psf = torch.from_numpy(make_psfs(1, seed=2, params=TrajectoryParams(size=size)).psfs[0, 1])
    psf = psf.double()
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(1, 3, 64, 80, generator=g, dtype=torch.float64)
    kh, kw = psf.shape
    blurred = degrade(pad_for_blur(sharp, kh, kw, mode="circular"), psf, photons=None)
    restored = wiener_bank(blurred, psf[None, None], nsr=torch.tensor([1e-12], dtype=torch.float64))
    assert restored.shape == (1, 1, 3, 64, 80)
    error = (restored[:, 0] - sharp).abs().max()
    assert error < 1e-4
    # what a one-pixel shift or a flipped kernel would have given instead
    assert (sharp.roll(1, dims=-1) - sharp).abs().max() > 100 * error
    flipped = degrade(pad_for_blur(sharp, kh, kw, mode="circular"), psf.flip(0, 1), photons=None)
    assert (flipped - blurred).abs().max() > 1e-3


def test_blur_command_keeps_size_and_depth(tmp_path):
    from pydeblur.cli import main
    from pydeblur.io import read_image, write_image
    from pydeblur.kernel_io import write_psf

    g = np.random.default_rng(0)
    write_image(tmp_path / "sharp.png", g.random((60, 70, 3)), dtype=np.uint16)
    delta = np.zeros((5, 4), np.float32)
    delta[2, 2] = 1  # identity kernel (centre element)
    write_psf(tmp_path / "k.csv", delta)
    args = ["blur", str(tmp_path / "sharp.png"), "--psf", str(tmp_path / "k.csv")]
    assert main([*args, "--no-noise", "-o", str(tmp_path / "same.png")]) == 0
    same, depth = read_image(tmp_path / "same.png")
    sharp, _ = read_image(tmp_path / "sharp.png")
    assert depth == np.uint16 and same.shape == (60, 70, 3)
    np.testing.assert_allclose(same, sharp, atol=1e-6)
    assert main([*args, "--exposure", "0.125", "-o", str(tmp_path / "noisy.png")]) == 0
    noisy, _ = read_image(tmp_path / "noisy.png")
    assert 0.005 < np.abs(noisy - sharp).mean() < 0.05  # shot noise at 256 photons
    assert (
        main(
            [
                "blur",
                str(tmp_path / "missing.png"),
                "--psf",
                str(tmp_path / "k.csv"),
                "-o",
                str(tmp_path / "x.png"),
            ]
        )
        == 1
    )
