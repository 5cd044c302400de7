"""pydeblur.physics: the OTF, circular convolution and its adjoint, Wiener filter, quadratic prox."""

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from pydeblur.physics import (
    circular_convolve,
    circular_convolve_adjoint,
    data_term_prox,
    psf2otf,
    wiener_deconvolve,
)
from tests.helpers import cpu_and_cuda


def random_psf(kh, kw, *batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    psf = torch.rand(*batch, kh, kw, generator=g, dtype=torch.float64) + 0.05
    return psf / psf.sum(dim=(-2, -1), keepdim=True)


def random_image(*shape, seed=1):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_psf2otf_moves_the_centre_to_the_origin_and_halves_like_rfft2():
    delta = torch.zeros(5, 4, dtype=torch.float64)
    delta[2, 2] = 1.0  # the centre element (kh // 2, kw // 2): the identity blur
    torch.testing.assert_close(psf2otf(delta, (8, 8)), torch.ones(8, 8, dtype=torch.complex128))
    psf = random_psf(5, 4, 2, 1)
    full = psf2otf(psf, (12, 9))
    assert full.shape == (2, 1, 12, 9)
    half = psf2otf(psf, (12, 9), half_spectrum=True)
    assert half.shape == (2, 1, 12, 5) and torch.equal(half, full[..., :5])
    # The half spectrum is rfft2 of the PSF rolled to the origin: the rest is its Hermitian mirror.
    rolled = torch.zeros(2, 1, 12, 9, dtype=torch.float64)
    rolled[..., :5, :4] = psf
    rolled = rolled.roll((-2, -2), dims=(-2, -1))
    torch.testing.assert_close(half, torch.fft.rfft2(rolled))
    with pytest.raises(ValueError, match="larger than shape"):
        psf2otf(psf, (4, 9))


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("kh", "kw", "width"), [(5, 4, 17), (6, 7, 16)])
def test_circular_convolve_is_true_convolution_with_wrap_around(device, kh, kw, width):
    psf = random_psf(kh, kw)
    x = random_image(2, 3, 15, width)
    otf = psf2otf(psf.to(device), (15, width), half_spectrum=True)
    got = circular_convolve(x.to(device), otf).cpu()
    # scipy's convolve centres the kernel at (kh // 2, kw // 2) like the PSF convention.
    expected = np.stack(
        [[convolve(plane, psf.numpy(), mode="wrap") for plane in image] for image in x.numpy()]
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=1e-12)


def test_the_adjoint_is_correlation_and_satisfies_the_inner_product_identity():
    psf = random_psf(5, 6, 2, 1)
    otf = psf2otf(psf, (14, 11), half_spectrum=True)
    a, b = random_image(2, 2, 3, 14, 11)
    lhs = (circular_convolve(a, otf) * b).sum()
    rhs = (a * circular_convolve_adjoint(b, otf)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=0)
    # Correlation: convolution with the PSF flipped about its centre (odd sizes keep the centre).
    odd = random_psf(5, 7, 2, 1)
    otf = psf2otf(odd, (14, 11), half_spectrum=True)
    flipped = psf2otf(odd.flip(-2, -1), (14, 11), half_spectrum=True)
    torch.testing.assert_close(circular_convolve_adjoint(b, otf), circular_convolve(b, flipped))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_wiener_deconvolve_at_one_nsr_or_a_bank(device):
    from pydeblur.ops import wiener_bank

    psf = random_psf(5, 5, 2, 1).to(device)
    y = random_image(2, 3, 20, 18).to(device)
    one = wiener_deconvolve(y, psf, 0.01)
    assert one.shape == (2, 3, 20, 18)
    torch.testing.assert_close(one, wiener_bank(y, psf, nsr=[0.01])[:, 0], rtol=0, atol=0)
    grid = torch.tensor([0.1, 0.01], dtype=torch.float64)
    bank = wiener_deconvolve(y.float(), psf, grid)
    assert bank.shape == (2, 2, 3, 20, 18) and bank.dtype == torch.float32
    torch.testing.assert_close(bank[:, 1], wiener_deconvolve(y.float(), psf, 0.01))
    # The formula, from the OTF: conj(K) Y / (|K|^2 + nsr).
    otf = psf2otf(psf, (20, 18), half_spectrum=True)
    expected = torch.fft.irfft2(
        otf.conj() * torch.fft.rfft2(y) / (otf.abs() ** 2 + 0.01), s=(20, 18)
    )
    torch.testing.assert_close(one, expected)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="nsr must be positive"):
            wiener_deconvolve(y, psf, bad)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_data_term_prox_minimises_the_quadratic(device):
    psf = random_psf(7, 6, 2, 1).to(device)
    otf = psf2otf(psf, (16, 13), half_spectrum=True)
    y = random_image(2, 3, 16, 13, seed=2).to(device)
    x0 = random_image(2, 3, 16, 13, seed=3).to(device)
    lam = torch.tensor([0.05, 2.0], dtype=torch.float64, device=device).view(2, 1, 1, 1)
    x = data_term_prox(x0, y, otf, lam)
    assert x.shape == y.shape
    # The gradient of ||k * x - y||^2 + lam ||x - x0||^2 vanishes at the solution.
    gradient = circular_convolve_adjoint(circular_convolve(x, otf) - y, otf) + lam * (x - x0)
    assert gradient.abs().max() < 1e-12
    # lam = nsr and x0 = 0 is the Wiener filter; a huge lam keeps x0.
    zero = torch.zeros_like(y)
    torch.testing.assert_close(
        data_term_prox(zero, y, otf, 0.01), wiener_deconvolve(y, psf, 0.01), rtol=0, atol=1e-12
    )
    torch.testing.assert_close(data_term_prox(x0, y, otf, 1e14), x0, rtol=0, atol=1e-12)


def test_data_term_prox_is_differentiable():
    psf = random_psf(3, 3, 1, 1)
    otf = psf2otf(psf, (8, 9), half_spectrum=True)
    x0 = random_image(1, 1, 8, 9).requires_grad_()
    y = random_image(1, 1, 8, 9, seed=4).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: data_term_prox(a, b, otf, 0.3), (x0, y))
