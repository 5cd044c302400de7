"""Differentiable bilateral filter: `kornia.filters.bilateral_blur(x, k, sigma_color, (s, s),
border_type="reflect", color_distance_type="l1")` as a C++/CUDA operator with an exact gradient."""

import math

import torch

from pydeblur.ops._checks import (
    check_device,
    check_finite,
    check_float,
    check_ndim,
    check_window_size,
    compute_dtype,
)
from pydeblur.ops._library import BILATERAL_MAX_KERNEL_SIZE

MAX_KERNEL_SIZE = BILATERAL_MAX_KERNEL_SIZE
"""The largest kernel_size, the kernels' kMaxKernelSize (csrc/include/pydeblur/bilateral_math.h)."""


def bilateral_filter(
    x: torch.Tensor,
    kernel_size: int = 7,
    sigma_color: float = 40 / 255,
    sigma_space: float = 10.0,
) -> torch.Tensor:
    """Edge-preserving smoothing of images [B, C, H, W] -> [B, C, H, W].

    out_c(p) = sum_q w(p, q) x_c(q) / sum_q w(p, q) over the kernel_size x kernel_size window around p
    (reflect border), w(p, q) = s(q - p) exp(-0.5 (d / sigma_color)^2), d = sum_c |x_c(q) - x_c(p)| the
    L1 colour distance and s the normalised Gaussian of standard deviation sigma_space. Differentiable
    with respect to x (exactly, through the values and the range weights).

    Args:
        x: [B, C, H, W] float tensor, any C; float16/bfloat16 are computed in float32 and returned in
            their own dtype.
        kernel_size: odd window size, 3..MAX_KERNEL_SIZE (15), with kernel_size // 2 < H and < W
            (reflect padding).
        sigma_color: range standard deviation in the units of x (40/255: 40 on the 0..255 scale).
        sigma_space: spatial standard deviation in pixels.

    >>> x = torch.rand(2, 3, 16, 16)
    >>> flat = torch.full((1, 3, 8, 8), 0.25)
    >>> bilateral_filter(x, kernel_size=5).shape, torch.allclose(bilateral_filter(flat), flat)
    (torch.Size([2, 3, 16, 16]), True)
    """
    check_arguments(x, kernel_size, sigma_color, sigma_space)
    out, _ = torch.ops.pydeblur.bilateral_filter(
        x.to(compute_dtype(x)), kernel_size, float(sigma_color), float(sigma_space)
    )
    return out.to(x.dtype)


def check_arguments(x: torch.Tensor, kernel_size: int, sigma_color: float, sigma_space: float):
    """Raise an error naming the argument when the input cannot be filtered: the checks users hit
    (the C++ operator checks again only what its kernels index memory by). x: [B, C, H, W].

    >>> check_arguments(torch.rand(1, 3, 4, 4), 9, 0.1, 2.0)
    Traceback (most recent call last):
    ...
    ValueError: kernel_size 9 is too large for reflect padding of a 4x4 image:
        kernel_size // 2 must be smaller than H and W
    """
    check_float("x", x)
    check_ndim("x", x, 4, "[B, C, H, W]")
    check_device("x", x)
    check_window_size("kernel_size", kernel_size, MAX_KERNEL_SIZE)
    height, width = x.shape[-2:]
    if kernel_size // 2 >= min(height, width):
        raise ValueError(
            f"kernel_size {kernel_size} is too large for reflect padding of a {height}x{width} image: "
            "kernel_size // 2 must be smaller than H and W"
        )
    if x.shape[1] < 1:
        raise ValueError(f"x must have at least one channel, got shape {tuple(x.shape)}")
    for name, value in (("sigma_color", sigma_color), ("sigma_space", sigma_space)):
        if isinstance(value, torch.Tensor) or not isinstance(value, (int, float)):
            raise TypeError(f"{name} must be a Python number, got {type(value).__name__}")
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be positive and finite, got {value}")
    check_finite(("x", x))


@torch.library.register_fake("pydeblur::bilateral_filter")
def _bilateral_filter_fake(x, kernel_size, sigma_color, sigma_space):
    batch, _, height, width = x.shape
    return torch.empty_like(x), x.new_empty((batch, 1, height, width))


@torch.library.register_fake("pydeblur::_bilateral_filter_backward")
def _bilateral_filter_backward_fake(grad_out, x, out, norm, kernel_size, sigma_color, sigma_space):
    return torch.empty_like(x)


def _setup_context(ctx, inputs, output):
    x, kernel_size, sigma_color, sigma_space = inputs
    out, norm = output
    ctx.mark_non_differentiable(norm)
    ctx.save_for_backward(x, out, norm)
    ctx.params = (kernel_size, sigma_color, sigma_space)


def _backward(ctx, grad_out, _grad_norm):
    x, out, norm = ctx.saved_tensors
    grad_x = None
    if ctx.needs_input_grad[0]:
        if grad_out is None:
            grad_out = torch.zeros_like(out)
        grad_x = torch.ops.pydeblur._bilateral_filter_backward(grad_out, x, out, norm, *ctx.params)
    return grad_x, None, None, None


torch.library.register_autograd(
    "pydeblur::bilateral_filter", _backward, setup_context=_setup_context
)
