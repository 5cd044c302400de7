"""training.fdn: our inference of FDN (Kruse et al. 2017), a peer for the evaluation tables only."""

import h5py
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pydeblur.physics import psf2otf
from tests.helpers import needs_data
from training.fdn import (
    FDN,
    Stage,
    circular_blur,
    dct_basis,
    edgetaper,
    fdn_colour,
    fourier_update,
    load_fdn,
    taper_weights,
)


@pytest.fixture(scope="module")
def weights():
    return needs_data("peers", "fdn") / "sigma_1.0-3.0"


@pytest.fixture(scope="module")
def model(weights):
    return load_fdn(weights)  # float32, fast enough here


def smooth_image(h=36, w=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 1, h, w, generator=g, dtype=torch.float64)
    box = torch.ones(1, 1, 5, 5, dtype=torch.float64) / 25
    for _ in range(2):
        x = circular_blur(x, box)
    return (x - x.min()) / (x.max() - x.min()) * 0.8 + 0.1


def small_kernel():
    k = torch.tensor(
        [[0, 1, 2, 1, 0], [0, 2, 6, 2, 0], [1, 3, 5, 0, 0], [0, 0, 3, 1, 0]], dtype=torch.float64
    )
    k = F.pad(k, (0, 0, 0, 1))  # 5 x 5, asymmetric
    return (k / k.sum())[None, None]


def psnr(x, y):
    return float(-10 * torch.log10((x - y).square().mean()))


def test_weights_load_with_the_keras_shapes_in_torch_layout(weights):
    model = load_fdn(weights)
    assert len(model.stages) == 10
    stage = model.stages[0]
    assert [tuple(c.weight.shape) for c in stage.convs] == [(32, 1, 3, 3)] + [
        (32, 32, 3, 3)
    ] * 4 + [(1, 32, 3, 3)]
    assert [tuple(d.weight.shape) for d in stage.mlp] == [(16, 1), (16, 16), (16, 16)]
    assert tuple(stage.lam.weight.shape) == (1, 16) and tuple(stage.filter_weights.shape) == (
        24,
        24,
    )
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in model.parameters())


def test_conv_kernels_are_read_as_keras_cross_correlation(weights, model):
    with h5py.File(weights / "stages_01-10_finetuned.hdf5", "r") as file:
        kernel = file["model_4/conv1_3/kernel:0"][()]  # stage 3, [h, w, in, out]
        bias = file["model_4/conv1_3/bias:0"][()]
    impulse = torch.zeros(1, 1, 7, 7)
    impulse[..., 3, 3] = 1
    out = model.stages[2].convs[0](impulse)[0]  # before the ELU
    # cross-correlation: out[3 + 1 - dy, 3 + 1 - dx] = kernel[dy, dx] + bias
    for dy in range(3):
        for dx in range(3):
            np.testing.assert_allclose(out[:, 4 - dy, 4 - dx], kernel[dy, dx, 0] + bias, rtol=1e-6)


def test_the_filters_orientation_agrees_with_the_trained_cnn(model):
    """f_i = B w_i read column-major: sum_i |F_i|^2 then matches the frequency response of each
    stage's CNN on strong cosines (as the half-quadratic view says it should: the CNN stands in for
    sum_i f_i^T phi(f_i * x)); read row-major (the transpose), it matches 2-4 times worse."""
    n, size = torch.arange(32.0), (32, 32)
    freqs = [(a, b) for a in (0, 4, 8) for b in (0, 4, 8) if (a, b) != (0, 0)]
    waves = [0.5 + 0.3 * torch.cos(2 * np.pi * (a * n[:, None] + b * n) / 32) for a, b in freqs]
    for stage in model.stages[3:]:
        response = torch.fft.fft2(stage.adjustment(torch.stack(waves)[:, None])[:, 0]).abs()
        gain = torch.stack([response[i, a, b] for i, (a, b) in enumerate(freqs)]) / (32 * 16 * 0.3)
        r = stage.regulariser(size)
        ours = torch.stack([r[a, b] for a, b in freqs])
        transposed = torch.stack([r[b, a] for a, b in freqs])
        assert torch.log(gain / ours).std() < 0.75 * torch.log(gain / transposed).std()


def test_wrong_or_missing_datasets_are_named(weights, tmp_path):
    bad = tmp_path / "bad.hdf5"
    with h5py.File(weights / "stages_01-10_finetuned.hdf5", "r") as src, h5py.File(bad, "w") as dst:
        for name in src:
            src.copy(name, dst)
        del dst["model_5/conv2_4/kernel:0"]
        dst["model_5/conv2_4/kernel:0"] = np.zeros((3, 3, 32, 16), np.float32)
        del dst["model_7/x_out_6/filter_weights:0"]
    with pytest.raises(ValueError, match=r"model_5/conv2_4/kernel:0 has shape \(3, 3, 32, 16\)"):
        load_fdn(bad)
    with h5py.File(bad, "a") as dst:
        del dst["model_5/conv2_4/kernel:0"]
    with pytest.raises(ValueError, match="no dataset model_5/conv2_4/kernel:0"):
        load_fdn(bad)


def test_edgetaper_keeps_a_constant_image_constant():
    image = torch.full((2, 1, 30, 34), 0.37, dtype=torch.float64)
    psf = small_kernel().expand(2, 1, 5, 5)
    torch.testing.assert_close(edgetaper(image, psf, passes=3), image)


def test_edgetaper_borders_are_the_circular_blur_and_the_interior_is_untouched():
    image = smooth_image(40, 44) + 0.1 * torch.rand(1, 1, 40, 44, dtype=torch.float64)
    psf = small_kernel()
    alpha = taper_weights(psf, (40, 44))[0, 0]
    assert float(alpha.min()) >= 0 and float(alpha.max()) <= 1 + 1e-12
    torch.testing.assert_close(
        alpha, alpha.flip(0).flip(1)
    )  # symmetric, as the cyclic autocorrelation
    assert float(alpha[0].abs().max()) < 1e-12 and float(alpha[:, -1].abs().max()) < 1e-12
    # the rows' weight is 1 - autocorrelation(projection)/max: 1 once the lag exceeds the PSF height - 1
    p = psf[0, 0].sum(1).numpy()
    ac = np.correlate(p, p, "full")[len(p) - 1 :] / np.dot(p, p)
    np.testing.assert_allclose(alpha[:5, 20].numpy() / alpha[20, 20].item(), 1 - ac, atol=1e-12)
    out = edgetaper(image, psf)
    blurred = circular_blur(image, psf)
    torch.testing.assert_close(out[..., 0, :], blurred[..., 0, :])
    torch.testing.assert_close(out[..., :, -1], blurred[..., :, -1])
    torch.testing.assert_close(out[..., 5:-5, 5:-5], image[..., 5:-5, 5:-5])


def test_fourier_update_without_adjustment_and_regulariser_is_the_inverse_filter():
    x = smooth_image()
    psf = small_kernel() * 0.5
    psf[..., 2, 2] += 0.5  # no zeros in its spectrum
    y = circular_blur(x, psf)
    otf = psf2otf(psf, x.shape[-2:], half_spectrum=True)
    zero = torch.zeros(x.shape[-2], x.shape[-1] // 2 + 1, dtype=torch.float64)
    out = fourier_update(
        y, otf, zero, torch.tensor([0.7], dtype=torch.float64), torch.zeros_like(y)
    )
    torch.testing.assert_close(out, x)


def test_a_zeroed_stage_is_lambda_ln2_and_the_stage_update_solves_its_normal_equations():
    stage = (
        Stage().double().requires_grad_(False)
    )  # all weights zero: lambda = softplus(0), adjustment 0, no filters
    for p in stage.parameters():
        torch.nn.init.zeros_(p)
    x = smooth_image()
    assert float(stage.weight(torch.tensor([1.5], dtype=torch.float64))) == pytest.approx(np.log(2))
    assert float(stage.adjustment(x).abs().max()) == 0
    # with filters: x minimises lam |k * x - y|^2 + sum_i |f_i * x|^2 - 2 <a, x>, so
    # lam k^T (k * x - y) + sum_i f_i^T f_i * x = a, checked with explicit circular correlations
    stage.filter_weights.copy_(
        torch.randn(24, 24, generator=torch.Generator().manual_seed(1)) * 0.3
    )
    psf, lam = small_kernel(), torch.tensor([0.9], dtype=torch.float64)
    y = circular_blur(x, psf) + 0.01 * torch.randn(
        x.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64
    )
    a = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = a - a.mean()
    otf = psf2otf(psf, x.shape[-2:], half_spectrum=True)
    out = fourier_update(y, otf, stage.regulariser(x.shape[-2:]), lam, a)

    def conv(image, kernel, transpose=False):  # circular true convolution, centre (2, 2)
        total = torch.zeros_like(image)
        for i in range(5):
            for j in range(5):
                shift = (i - 2, j - 2) if not transpose else (2 - i, 2 - j)
                total += kernel[i, j] * torch.roll(image, shift, (-2, -1))
        return total

    filters = (dct_basis() @ stage.filter_weights).T.reshape(24, 5, 5).transpose(1, 2)
    lhs = lam * conv(conv(out, psf[0, 0]) - y, psf[0, 0], True)
    for f in filters:
        lhs = lhs + conv(conv(out, f), f, True)
    torch.testing.assert_close(lhs, a, atol=1e-9, rtol=0)


def test_fdn_deblurs_a_smooth_synthetic_image(model):
    x = smooth_image()
    psf = small_kernel()
    g = torch.Generator().manual_seed(4)
    y = circular_blur(x, psf) + 1.5 / 255 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    out = model(y, psf, torch.tensor([1.5 / 255]))
    assert psnr(out, x) > psnr(y, x) + 3


def test_shapes_and_dtypes_are_kept(weights, model):
    y, psf = torch.rand(2, 1, 17, 21), small_kernel().float().expand(2, 1, 5, 5)
    out = model(y, psf, torch.tensor([0.01, 0.005]))
    assert out.shape == y.shape and out.dtype == torch.float32
    double = load_fdn(weights, torch.float64)
    double.stages = double.stages[:2]  # the dtype, not the result, is checked
    out64 = double(y[:1].double(), psf[:1], 0.01)
    assert out64.dtype == torch.float64 and out64.shape == (1, 1, 17, 21)
    colour = fdn_colour(double, torch.rand(1, 3, 12, 13, dtype=torch.float64), small_kernel(), 0.01)
    assert colour.shape == (1, 3, 12, 13) and colour.dtype == torch.float64


def test_colour_is_channel_by_channel(model):
    y = (
        smooth_image(16, 18).repeat(1, 3, 1, 1)
        * torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1).double()
    )
    out = fdn_colour(model, y, small_kernel(), 0.006)
    torch.testing.assert_close(out[:, 1:2], model(y[:, 1:2], small_kernel(), 0.006))


def test_an_even_kernel_is_padded_to_odd_keeping_its_centre(model):
    y = smooth_image(16, 16)
    even = small_kernel()[..., :4, :4]
    even = even / even.sum()
    torch.testing.assert_close(model(y, even, 0.006), model(y, F.pad(even, (0, 1, 0, 1)), 0.006))


@pytest.mark.parametrize(
    ("y", "psf", "sigma", "message"),
    [
        (torch.rand(1, 30, 30), small_kernel(), 0.01, r"\[B, 1, H, W\]"),
        (torch.rand(1, 3, 30, 30), small_kernel(), 0.01, "fdn_colour"),
        (torch.rand(2, 1, 30, 30), small_kernel(), 0.01, "with B = 2"),
        (torch.rand(1, 1, 30, 30), torch.ones(1, 1, 31, 5) / 155, 0.01, "larger than"),
        (torch.rand(1, 1, 30, 30), small_kernel(), 0.0, "positive"),
        (
            torch.rand(2, 1, 30, 30),
            small_kernel().expand(2, 1, 5, 5),
            [0.01, 0.01, 0.01],
            "one per image",
        ),
    ],
)
def test_bad_inputs_are_refused_clearly(y, psf, sigma, message):
    with pytest.raises(ValueError, match=message):
        FDN(n_stages=1).double()(y.double(), psf, sigma)
