"""bilateral_filter: equal to kornia's bilateral_blur (reflect, L1), exact gradient, clear errors."""

import pytest
import torch

from pydeblur.io import read_image
from pydeblur.ops import bilateral_filter
from tests.helpers import cpu_and_cuda, needs_data
from tests.references import kornia_bilateral

PAPER = {"kernel_size": 7, "sigma_color": 40 / 255, "sigma_space": 10.0}


def photo_crops(size: int = 96) -> torch.Tensor:
    """Three real photos' centre crops, [3, 3, size, size] float32 in [0, 1]."""
    folder = needs_data("photos")
    crops = []
    for path in sorted(folder.glob("*.jpg"))[:3]:
        image = torch.from_numpy(read_image(path)[0]).permute(2, 0, 1)
        top, left = (image.shape[1] - size) // 2, (image.shape[2] - size) // 2
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("channels", [1, 3, 5])
@pytest.mark.parametrize("kernel_size", [3, 7, 15])
def test_forward_equals_kornia_on_random_images(device, channels, kernel_size):
    torch.manual_seed(channels * 100 + kernel_size)
    x = torch.rand(2, channels, 29, 37, device=device)
    out = bilateral_filter(x, kernel_size)
    assert out.shape == x.shape and out.dtype == x.dtype
    torch.testing.assert_close(out, kornia_bilateral(x, kernel_size), rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    "sigma_color, sigma_space", [(1e-3, 0.5), (0.05, 1.0), (40 / 255, 10.0), (5.0, 100.0)]
)
def test_forward_equals_kornia_for_any_sigma(device, sigma_color, sigma_space):
    torch.manual_seed(1)
    x = torch.rand(1, 3, 24, 31, device=device)
    out = bilateral_filter(x, 5, sigma_color, sigma_space)
    expected = kornia_bilateral(x, 5, sigma_color, sigma_space)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_forward_equals_kornia_on_photos(device):
    x = photo_crops().to(device)
    out = bilateral_filter(x, **PAPER)
    torch.testing.assert_close(out, kornia_bilateral(x), rtol=0, atol=1e-5)
    # The filter does smooth: the output differs from the input by more than rounding.
    assert (out - x).abs().mean() > 1e-3


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_float64_forward_equals_kornia(device):
    x = torch.rand(2, 3, 20, 21, dtype=torch.float64, device=device)
    out = bilateral_filter(x, 5, 0.2, 3.0)
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, kornia_bilateral(x, 5, 0.2, 3.0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("kernel_size", [3, 5])
def test_gradcheck_float64(device, kernel_size):
    torch.manual_seed(kernel_size)
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64, device=device, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: bilateral_filter(t, kernel_size, 0.3, 1.5), (x,))


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("channels", [1, 3, 6])
def test_gradient_equals_autograd_through_kornia(device, channels):
    torch.manual_seed(channels)
    x = torch.rand(2, channels, 19, 23, dtype=torch.float64, device=device)
    # Ties (equal values, where |.| has no derivative) on purpose: both must use sgn(0) = 0.
    x[:, :, :5] = (x[:, :, :5] * 4).round() / 4
    weights = torch.randn_like(x)
    grads = []
    for filt in (bilateral_filter, kornia_bilateral):
        leaf = x.clone().requires_grad_()
        (filt(leaf, 7, 0.25, 4.0) * weights).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_float32_gradient_on_photos_equals_kornia(device):
    x = photo_crops(48).to(device)
    weights = torch.randn_like(x)
    grads = []
    for filt in (bilateral_filter, kornia_bilateral):
        leaf = x.clone().requires_grad_()
        (filt(leaf) * weights).sum().backward()
        grads.append(leaf.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_opcheck(device):
    x = torch.rand(2, 3, 11, 13, device=device, requires_grad=True)
    torch.library.opcheck(torch.ops.pydeblur.bilateral_filter.default, (x, 5, 0.2, 2.0))
    out, norm = torch.ops.pydeblur.bilateral_filter(x.detach(), 5, 0.2, 2.0)
    grad = torch.randn_like(out)
    torch.library.opcheck(
        torch.ops.pydeblur._bilateral_filter_backward.default,
        (grad, x.detach(), out, norm, 5, 0.2, 2.0),
    )


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(device, dtype):
    x = torch.rand(1, 3, 16, 16, device=device).to(dtype)
    out = bilateral_filter(x)
    assert out.dtype == dtype
    expected = bilateral_filter(x.float())
    torch.testing.assert_close(out.float(), expected, rtol=0, atol=1e-2)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_non_contiguous_input(device):
    x = torch.rand(2, 3, 17, 19, device=device)
    strided = x.to(memory_format=torch.channels_last)
    torch.testing.assert_close(bilateral_filter(strided), bilateral_filter(x), rtol=0, atol=0)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_smallest_image_for_the_kernel(device):
    x = torch.rand(1, 3, 4, 4, device=device)  # kernel_size // 2 = 3 < 4: reflect padding works
    torch.testing.assert_close(bilateral_filter(x, 7), kornia_bilateral(x, 7), rtol=0, atol=1e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"kernel_size": 6}, ValueError, "kernel_size"),
        ({"kernel_size": 1}, ValueError, "kernel_size"),
        ({"kernel_size": 17}, ValueError, "kernel_size"),
        ({"kernel_size": 7.0}, TypeError, "kernel_size"),
        ({"kernel_size": 15}, ValueError, "too large"),  # 15 // 2 = 7 >= H = 6
        ({"sigma_color": 0.0}, ValueError, "sigma_color"),
        ({"sigma_color": -1.0}, ValueError, "sigma_color"),
        ({"sigma_space": float("nan")}, ValueError, "sigma_space"),
        ({"sigma_space": float("inf")}, ValueError, "sigma_space"),
    ],
)
def test_bad_arguments(device, kwargs, error, message):
    x = torch.rand(1, 3, 6, 20, device=device)
    with pytest.raises(error, match=message):
        bilateral_filter(x, **kwargs)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_bad_tensors(device):
    with pytest.raises(ValueError, match=r"x must be \[B, C, H, W\]"):
        bilateral_filter(torch.rand(3, 16, 16, device=device))
    with pytest.raises(TypeError, match="x must be a floating-point"):
        bilateral_filter(torch.ones(1, 3, 16, 16, dtype=torch.uint8, device=device))
    bad = torch.rand(1, 3, 16, 16, device=device)
    bad[0, 1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="x contains NaN"):
        bilateral_filter(bad)


# Direct calls of the compiled operators skip the Python wrapper: C++ checks what its kernels index
# memory by (argument values such as the sigmas are the wrapper's), and raises ValueError
# (TORCH_CHECK_VALUE), not RuntimeError.
@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    "x, kernel_size, match",
    [
        (torch.rand(3, 16, 16), 5, r"x must be \[B, C, H, W\]"),
        (torch.ones(1, 3, 16, 16, dtype=torch.int32), 5, "x must be float32 or float64"),
        (torch.rand(1, 3, 16, 16), 4, "kernel_size must be odd"),
        (torch.rand(1, 3, 16, 16), -1, "kernel_size must be odd"),
        (torch.rand(1, 3, 16, 16), 17, "kernel_size must be odd and at most 15"),
        (torch.rand(1, 3, 6, 20), 15, "reflect padding needs"),
        (torch.rand(1, 3, 20, 6), 15, "reflect padding needs"),
    ],
)
def test_direct_op_call_raises_value_error_on_bad_shapes(device, x, kernel_size, match):
    x = x.to(device)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur.bilateral_filter(x, kernel_size, 0.1, 1.0)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur._bilateral_filter_backward(x, x, x, x[:, :1], kernel_size, 0.1, 1.0)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_direct_backward_call_checks_its_tensors(device):
    x = torch.rand(2, 3, 16, 16, device=device)
    out, norm = torch.ops.pydeblur.bilateral_filter(x, 5, 0.1, 1.0)
    with pytest.raises(ValueError, match="grad_out and out must have the shape of x"):
        torch.ops.pydeblur._bilateral_filter_backward(out[:1], x, out, norm, 5, 0.1, 1.0)
    with pytest.raises(ValueError, match="grad_out and out must have the shape of x"):
        torch.ops.pydeblur._bilateral_filter_backward(out, x, out[..., :8], norm, 5, 0.1, 1.0)
    with pytest.raises(ValueError, match=r"norm must be \[B, 1, H, W\]"):
        torch.ops.pydeblur._bilateral_filter_backward(out, x, out, out, 5, 0.1, 1.0)


@pytest.mark.cuda
def test_direct_backward_call_checks_devices():
    x = torch.rand(1, 3, 16, 16, device="cuda")
    out, norm = torch.ops.pydeblur.bilateral_filter(x, 5, 0.1, 1.0)
    with pytest.raises(ValueError, match="one device"):
        torch.ops.pydeblur._bilateral_filter_backward(out.cpu(), x, out, norm, 5, 0.1, 1.0)


@pytest.mark.cuda
def test_cpu_and_cuda_agree():
    torch.manual_seed(3)
    for channels, kernel_size in [(3, 7), (1, 15), (5, 5)]:
        x = torch.rand(2, channels, 45, 70)
        weights = torch.randn_like(x)
        results = []
        for device in ("cpu", "cuda"):
            leaf = x.to(device).requires_grad_()
            out = bilateral_filter(leaf, kernel_size)
            (out * weights.to(device)).sum().backward()
            results.append((out.cpu(), leaf.grad.cpu()))
        torch.testing.assert_close(results[1][0], results[0][0], rtol=0, atol=1e-5)
        torch.testing.assert_close(results[1][1], results[0][1], rtol=1e-4, atol=1e-4)


def test_gather_formulation_of_the_cuda_backward():
    """The CUDA backward's algorithm, in plain PyTorch: per position q of the padded gradient, the
    pairs (q - o, q) plus, for an image pixel, its own pairs (q, q + o), then the reflect fold.
    Checks the formulation (which the CUDA-less CI cannot run) against autograd through kornia."""
    torch.manual_seed(0)
    batch, channels, height, width, kernel_size, sigma_color, sigma_space = 2, 3, 9, 11, 5, 0.3, 1.5
    r = kernel_size // 2
    x = torch.rand(batch, channels, height, width, dtype=torch.float64)
    x[:, :, :3] = (x[:, :, :3] * 4).round() / 4
    grad_out = torch.randn_like(x)
    out, norm = torch.ops.pydeblur.bilateral_filter(x, kernel_size, sigma_color, sigma_space)
    offsets = torch.arange(kernel_size, dtype=torch.float64) - r
    g = torch.exp(-(offsets**2) / (2 * sigma_space**2))
    g = g / g.sum()
    scale = -0.5 / sigma_color**2

    def pad(t, mode="constant"):
        return torch.nn.functional.pad(t, (r, r, r, r), mode=mode)

    # On the padded grid, extended by r more (never read where the centre factors are nonzero).
    values = pad(pad(x, "reflect"))
    factors = pad(pad(grad_out / norm))
    dots = pad(pad((grad_out / norm * out).sum(1, keepdim=True)))
    inside = pad(torch.ones(batch, 1, height, width, dtype=torch.float64))
    rows, cols = height + 2 * r, width + 2 * r

    def shifted(t, oy, ox):
        return t[..., r + oy : r + oy + rows, r + ox : r + ox + cols]

    xq, gq, dq = shifted(values, 0, 0), shifted(factors, 0, 0), shifted(dots, 0, 0)
    grad_padded = torch.zeros(batch, channels, rows, cols, dtype=torch.float64)
    for oy in range(-r, r + 1):
        for ox in range(-r, r + 1):
            spatial = g[oy + r] * g[ox + r]
            for xp, gp, dp, xn, sign in (
                (
                    shifted(values, -oy, -ox),
                    shifted(factors, -oy, -ox),
                    shifted(dots, -oy, -ox),
                    xq,
                    1,
                ),
                (xq, gq, dq, shifted(values, oy, ox), -1),
            ):
                # Pair (p, n): p the centre, n its neighbour; q is n (sign 1) or p (sign -1).
                distance = (xn - xp).abs().sum(1, keepdim=True)
                w = spatial * torch.exp(scale * distance**2)
                b = ((gp * xn).sum(1, keepdim=True) - dp) * w * 2 * scale * distance
                if sign == 1:
                    grad_padded += gp * w + b * torch.sign(xn - xp)
                else:
                    grad_padded -= inside * b * torch.sign(xn - xp)
    grad = torch.ops.aten.reflection_pad2d_backward(grad_padded, x, [r, r, r, r])
    leaf = x.clone().requires_grad_()
    (expected,) = torch.autograd.grad(
        kornia_bilateral(leaf, kernel_size, sigma_color, sigma_space), leaf, grad_out
    )
    torch.testing.assert_close(grad, expected, rtol=1e-9, atol=1e-12)
