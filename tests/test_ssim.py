"""pydeblur.ops.ssim / ssim_loss against pytorch_ssim (plain-PyTorch reference), pytorch_msssim and
scikit-image; gradients, opcheck, argument errors, CPU vs CUDA."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_msssim import ssim as msssim_ssim
from skimage.metrics import structural_similarity

from pydeblur.ops import ssim, ssim_loss
from tests.helpers import cpu_and_cuda
from tests.references import reference_ssim_same


def image_pair(shape, dtype=torch.float32, device="cpu", seed=0, noise=0.15):
    """A smooth-ish image and a noisy copy, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(shape, generator=gen, dtype=torch.float64)
    x = F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)
    y = (x + noise * torch.randn(shape, generator=gen, dtype=torch.float64)).clamp(0, 1)
    return x.to(device=device, dtype=dtype), y.to(device=device, dtype=dtype)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    "shape, window_size, sigma, data_range",
    [((2, 3, 64, 48), 11, 1.5, 1.0), ((1, 2, 23, 31), 7, 1.0, 1.0), ((3, 1, 16, 9), 11, 1.5, 2.0)],
)
def test_same_matches_pytorch_ssim(device, dtype, shape, window_size, sigma, data_range):
    x, y = image_pair(shape, dtype, device)
    expected_map = reference_ssim_same(x, y, window_size, sigma, data_range)
    kwargs = dict(window_size=window_size, sigma=sigma, data_range=data_range)
    got = ssim(x, y, **kwargs)
    assert got.dtype == dtype and got.shape == ()
    torch.testing.assert_close(got, expected_map.mean(), atol=1e-5, rtol=0)
    per_image = ssim(x, y, reduction="none", **kwargs)
    assert per_image.shape == (shape[0],)
    torch.testing.assert_close(per_image, expected_map.mean(dim=(1, 2, 3)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(2, 3, 64, 48), (1, 3, 11, 20)])
def test_valid_matches_pytorch_msssim(device, dtype, shape):
    x, y = image_pair(shape, dtype, device, seed=1)
    got = ssim(x, y, padding="valid", reduction="none")
    expected = msssim_ssim(x, y, data_range=1.0, size_average=False)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(
        ssim(x, y, padding="valid"), msssim_ssim(x, y, data_range=1.0), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_valid_matches_skimage(device, data_range):
    x, y = image_pair((2, 3, 40, 57), torch.float64, device, seed=2)
    x, y = x * data_range, y * data_range
    got = ssim(x, y, padding="valid", reduction="none", data_range=data_range).cpu()
    # skimage's Gaussian window has radius int(3.5 sigma + 0.5) = 5 for sigma = 1.5: 11 taps.
    expected = [
        structural_similarity(
            xi.cpu().numpy(),
            yi.cpu().numpy(),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
            channel_axis=0,
        )
        for xi, yi in zip(x, y, strict=True)
    ]
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_identical_images_give_one(device, padding):
    x, _ = image_pair((2, 3, 32, 32), torch.float32, device)
    torch.testing.assert_close(ssim(x, x, padding=padding), torch.tensor(1.0, device=device))
    torch.testing.assert_close(ssim_loss(x, x, padding=padding), torch.tensor(0.0, device=device))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_ssim_loss_is_one_minus_ssim(device):
    x, y = image_pair((2, 3, 24, 24), torch.float32, device)
    torch.testing.assert_close(ssim_loss(x, y, reduction="none"), 1 - ssim(x, y, reduction="none"))
    assert ssim(x, y) < 0.9  # the noisy copy is visibly different


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_gradcheck_both_inputs(device, padding, reduction):
    x, y = image_pair((2, 2, 13, 10), torch.float64, device, seed=3)
    x.requires_grad_()
    y.requires_grad_()

    def f(a, b):
        return ssim(a, b, window_size=5, sigma=1.2, padding=padding, reduction=reduction)

    assert torch.autograd.gradcheck(f, (x, y))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gradcheck_images_smaller_than_the_window(device):
    x, y = image_pair((1, 2, 5, 6), torch.float64, device, seed=6)
    x.requires_grad_()
    y.requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ssim(a, b, window_size=9, sigma=2.0), (x, y))


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("padding", ["same", "valid"])
def test_gradients_match_reference_autograd(device, padding):
    """Full-size window on larger images, float32: the fused backward against autograd of the convs."""
    x, y = image_pair((2, 3, 40, 36), torch.float32, device, seed=4)
    weights = torch.rand(2, device=device)
    ours = [t.clone().requires_grad_() for t in (x, y)]
    (ssim(*ours, padding=padding, reduction="none") * weights).sum().backward()
    ref = [t.clone().requires_grad_() for t in (x, y)]
    ref_map = reference_ssim_same(*ref)
    if padding == "valid":
        ref_map = ref_map[..., 5:-5, 5:-5]
    (ref_map.mean(dim=(1, 2, 3)) * weights).sum().backward()
    for a, b in zip(ours, ref, strict=True):
        torch.testing.assert_close(a.grad, b.grad, atol=1e-7, rtol=1e-4)


def test_only_one_input_needs_grad():
    x, y = image_pair((1, 3, 20, 20))
    y.requires_grad_()
    ssim_loss(x, y).backward()
    assert y.grad is not None and x.grad is None


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_is_computed_in_float32(device, dtype):
    x, y = image_pair((1, 3, 24, 24), torch.float32, device)
    got = ssim(x.to(dtype), y.to(dtype))
    assert got.dtype == dtype
    expected = ssim(x.to(dtype).float(), y.to(dtype).float())
    torch.testing.assert_close(got.float(), expected, atol=1e-2, rtol=0)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_non_contiguous_inputs(device):
    x, y = image_pair((2, 20, 20, 3), torch.float64, device)
    xt, yt = x.permute(0, 3, 1, 2), y.permute(0, 3, 1, 2)
    torch.testing.assert_close(ssim(xt, yt), ssim(xt.contiguous(), yt.contiguous()))


def test_partials_saved_only_when_needed():
    x, y = image_pair((1, 1, 16, 16))
    means, partials = torch.ops.pydeblur.ssim_forward(x, y, 11, 1.5, 1.0, False, False)
    assert means.shape == (1, 1) and partials.numel() == 0
    _, partials = torch.ops.pydeblur.ssim_forward(x, y, 11, 1.5, 1.0, True, True)
    assert partials.shape == (1, 1, 4, 6, 6)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("valid", [False, True])
def test_opcheck(device, valid):
    x, y = image_pair((2, 2, 14, 12), torch.float64, device)
    x.requires_grad_()
    y.requires_grad_()
    torch.library.opcheck(torch.ops.pydeblur.ssim_forward, (x, y, 5, 1.5, 1.0, valid, True))
    means, partials = torch.ops.pydeblur.ssim_forward(x, y, 5, 1.5, 1.0, valid, True)
    grad = torch.rand_like(means)
    torch.library.opcheck(
        torch.ops.pydeblur._ssim_backward,
        (grad, x.detach(), y.detach(), partials, 5, 1.5, valid),
    )


def test_torch_compile_traces_the_operator():
    x, y = image_pair((1, 3, 24, 24))
    x.requires_grad_()
    compiled = torch.compile(ssim_loss, backend="aot_eager", fullgraph=True)
    compiled(x, y).backward()
    expected = x.detach().clone().requires_grad_()
    ssim_loss(expected, y).backward()
    torch.testing.assert_close(x.grad, expected.grad)


@pytest.mark.parametrize(
    "x_shape, y_shape, kwargs, error, match",
    [
        ((1, 3, 16, 16), (1, 3, 16, 15), {}, ValueError, "one shape"),
        ((3, 16, 16), (3, 16, 16), {}, ValueError, r"x must be \[B, C, H, W\]"),
        ((1, 3, 10, 16), (1, 3, 10, 16), {"padding": "valid"}, ValueError, "at least window_size"),
        (
            (1, 3, 16, 16),
            (1, 3, 16, 16),
            {"window_size": 10},
            ValueError,
            "window_size must be odd",
        ),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"window_size": 1}, ValueError, "window_size"),
        ((1, 3, 40, 40), (1, 3, 40, 40), {"window_size": 33}, ValueError, "window_size"),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"window_size": 11.0}, TypeError, "window_size"),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"sigma": 0.0}, ValueError, "sigma"),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"data_range": -1.0}, ValueError, "data_range"),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"padding": "reflect"}, ValueError, "padding"),
        ((1, 3, 16, 16), (1, 3, 16, 16), {"reduction": "sum"}, ValueError, "reduction"),
        ((0, 3, 16, 16), (0, 3, 16, 16), {}, ValueError, "empty"),
    ],
)
def test_bad_arguments(x_shape, y_shape, kwargs, error, match):
    with pytest.raises(error, match=match):
        ssim(torch.rand(x_shape), torch.rand(y_shape), **kwargs)


def test_bad_values_and_types():
    x = torch.rand(1, 3, 16, 16)
    bad = x.clone()
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="y contains NaN"):
        ssim(x, bad)
    with pytest.raises(ValueError, match="x contains NaN"):
        ssim(bad.clone().fill_(float("inf")), x)
    with pytest.raises(TypeError, match="x must be a floating-point"):
        ssim((x * 255).to(torch.uint8), x)
    with pytest.raises(TypeError, match="y must be a torch.Tensor"):
        ssim(x, x.numpy())


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    "x, y, window_size, valid, match",
    [
        (torch.rand(1, 8, 8), torch.rand(1, 8, 8), 5, False, r"x must be \[B, C, H, W\]"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 7), 5, False, "one shape"),
        (torch.rand(0, 1, 8, 8), torch.rand(0, 1, 8, 8), 5, False, "must not be empty"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8).double(), 5, False, "one dtype"),
        (
            torch.ones(1, 1, 8, 8, dtype=torch.int32),
            torch.ones(1, 1, 8, 8, dtype=torch.int32),
            5,
            False,
            "float32 or float64",
        ),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 4, False, "window_size must be odd"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 33, False, "at most 31"),
        (torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), 11, True, "at least window_size"),
    ],
)
def test_direct_op_call_raises_value_error_on_bad_shapes(device, x, y, window_size, valid, match):
    """Direct calls of the compiled operators skip the Python wrapper: C++ checks what its kernels
    index memory by, and raises ValueError (TORCH_CHECK_VALUE), not RuntimeError."""
    x, y = x.to(device), y.to(device)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur.ssim_forward(x, y, window_size, 1.5, 1.0, valid, True)
    grad = torch.ones(x.shape[:2], dtype=x.dtype, device=device)
    partials = x.new_zeros(1, 1, 4, 8, 8)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur._ssim_backward(grad, x, y, partials, window_size, 1.5, valid)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_direct_backward_call_checks_grad_and_partials(device):
    x, y = image_pair((1, 2, 8, 8), device=device)
    _, partials = torch.ops.pydeblur.ssim_forward(x, y, 5, 1.5, 1.0, False, True)
    grad = torch.ones(1, 2, device=device)
    for bad_grad, match in [
        (torch.ones(2, 2, device=device), r"grad_means must be \[B, C\]"),
        (torch.ones(1, 2, device=device, dtype=torch.float64), "one dtype"),
    ]:
        with pytest.raises(ValueError, match=match):
            torch.ops.pydeblur._ssim_backward(bad_grad, x, y, partials, 5, 1.5, False)
    for bad_partials, match in [
        (x.new_empty(0), "did not save its partials"),
        (partials[..., :7], "does not fit the images"),
        (partials.double(), "one dtype"),
    ]:
        with pytest.raises(ValueError, match=match):
            torch.ops.pydeblur._ssim_backward(grad, x, y, bad_partials, 5, 1.5, False)
    # A "valid" map is smaller: the "same" partials do not fit it.
    with pytest.raises(ValueError, match="does not fit the images"):
        torch.ops.pydeblur._ssim_backward(grad, x, y, partials, 5, 1.5, True)


@pytest.mark.cuda
def test_direct_op_call_checks_devices():
    x, y = image_pair((1, 2, 8, 8), device="cuda")
    with pytest.raises(ValueError, match="one device"):
        torch.ops.pydeblur.ssim_forward(x, y.cpu(), 5, 1.5, 1.0, False, True)
    _, partials = torch.ops.pydeblur.ssim_forward(x, y, 5, 1.5, 1.0, False, True)
    with pytest.raises(ValueError, match="one device"):
        torch.ops.pydeblur._ssim_backward(torch.ones(1, 2), x, y, partials, 5, 1.5, False)


@pytest.mark.cuda
@pytest.mark.parametrize("padding", ["same", "valid"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cpu_matches_cuda(padding, dtype):
    x, y = image_pair((3, 3, 70, 45), dtype, seed=5)
    results = {}
    for device in ("cpu", "cuda"):
        # detach: on the CPU .to() returns the tensor itself, which must not stay a leaf
        # requiring grad, or the CUDA copies become non-leaves without .grad.
        a, b = (t.detach().to(device).requires_grad_() for t in (x, y))
        value = ssim(a, b, padding=padding, reduction="none")
        (value * torch.arange(1.0, 4.0, device=device, dtype=dtype)).sum().backward()
        results[device] = [value.detach().cpu(), a.grad.cpu(), b.grad.cpu()]
    tolerance = 1e-5 if dtype == torch.float32 else 1e-12
    for cpu, cuda in zip(results["cpu"], results["cuda"], strict=True):
        torch.testing.assert_close(cuda, cpu, atol=tolerance, rtol=tolerance)


@pytest.mark.cuda
def test_cuda_runs_on_the_current_stream():
    x, y = image_pair((2, 3, 64, 64), device="cuda")
    x.requires_grad_()
    expected = ssim_loss(x, y)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        got = ssim_loss(x, y)
        got.backward()
    torch.cuda.synchronize()
    torch.testing.assert_close(got, expected)
