"""SSIM (Wang et al. 2004) and the SSIM loss, as fused C++/CUDA operators with exact gradients.

`ssim(x, y)` takes two image batches [B, C, H, W] and returns the mean SSIM (or one value per image);
`ssim_loss(x, y) = 1 - ssim(x, y)`. The compiled operator `pydeblur::ssim_forward` returns per-plane
means [B, C] (its gradient is the private `pydeblur::_ssim_backward`); the reductions over planes are
plain torch.
"""

import torch

from pydeblur.ops import _checks
from pydeblur.ops._library import SSIM_MAX_WINDOW

MAX_WINDOW = SSIM_MAX_WINDOW
"""The largest window_size, the kernels' kMaxWindow (csrc/include/pydeblur/ssim_math.h)."""
PADDINGS = ("same", "valid")
REDUCTIONS = ("mean", "none")


@torch.library.register_fake("pydeblur::ssim_forward")
def _ssim_forward_fake(x, y, window_size, sigma, data_range, valid, save_partials):
    batch, channels, height, width = x.shape
    means = x.new_empty((batch, channels))
    if not save_partials:
        return means, x.new_empty((0,))
    margin = 2 * (window_size // 2) if valid else 0
    partials = x.new_empty((batch, channels, 4, height - margin, width - margin))
    return means, partials


@torch.library.register_fake("pydeblur::_ssim_backward")
def _ssim_backward_fake(grad_means, x, y, partials, window_size, sigma, valid):
    return torch.empty_like(x), torch.empty_like(y)


def _setup_context(ctx, inputs, output):
    x, y, window_size, sigma, _data_range, valid, _save_partials = inputs
    _, partials = output
    ctx.save_for_backward(x, y, partials)
    ctx.window = (window_size, sigma, valid)
    ctx.mark_non_differentiable(partials)


def _backward(ctx, grad_means, _grad_partials):
    x, y, partials = ctx.saved_tensors
    if partials.numel() == 0:
        raise RuntimeError(
            "pydeblur::ssim_forward ran with save_partials=False, so it cannot be differentiated"
        )
    grad_x, grad_y = torch.ops.pydeblur._ssim_backward(grad_means, x, y, partials, *ctx.window)
    needs_x, needs_y = ctx.needs_input_grad[:2]
    return (grad_x if needs_x else None, grad_y if needs_y else None) + (None,) * 5


torch.library.register_autograd("pydeblur::ssim_forward", _backward, setup_context=_setup_context)


def _check_arguments(x, y, window_size, sigma, data_range, padding, reduction):
    _checks.check_float("x", x)
    _checks.check_float("y", y)
    _checks.check_ndim("x", x, 4, "[B, C, H, W]")
    _checks.check_ndim("y", y, 4, "[B, C, H, W]")
    if x.shape != y.shape:
        raise ValueError(f"x and y must have one shape, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.numel() == 0:
        raise ValueError(f"x and y must not be empty, got shape {tuple(x.shape)}")
    _checks.check_same_device(x=x, y=y)
    _checks.check_device("x", x)
    _checks.check_window_size("window_size", window_size, MAX_WINDOW)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    height, width = x.shape[-2:]
    if padding == "valid" and (height < window_size or width < window_size):
        raise ValueError(
            f'with padding="valid" the images ({height}x{width}) must be at least '
            f"window_size ({window_size}) on each side"
        )
    _checks.check_finite(("x", x), ("y", y))


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: str = "same",
    reduction: str = "mean",
) -> torch.Tensor:
    """Structural similarity of two image batches, per channel, with a Gaussian window.

    Args:
        x, y: images [B, C, H, W] of one shape, float32/float64 (half and bfloat16 are computed in
            float32 and the result is returned in the input dtype).
        window_size: odd side of the Gaussian window, 3..MAX_WINDOW (31).
        sigma: standard deviation of the window.
        data_range: L, the value range of the images: C1 = (0.01 L)^2, C2 = (0.03 L)^2.
        padding: "same" averages the SSIM map over every pixel, the window seeing zeros beyond the
            border (the pytorch_ssim package); "valid" averages only where the window lies inside the
            image (pytorch_msssim, skimage with gaussian_weights=True, use_sample_covariance=False).
        reduction: "mean" -> a scalar, the mean over batch, channels and pixels; "none" -> [B], the
            mean SSIM of each image (over its channels and pixels).

    Returns:
        A scalar or a [B] tensor, differentiable with respect to x and y.

    >>> x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> round(float(ssim(x, x)), 6), ssim(x, x.flip(-1), reduction="none").shape
    (1.0, torch.Size([2]))
    """
    _check_arguments(x, y, window_size, sigma, data_range, padding, reduction)
    out_dtype = torch.promote_types(x.dtype, y.dtype)
    dtype = torch.promote_types(_checks.compute_dtype(x), _checks.compute_dtype(y))
    save_partials = torch.is_grad_enabled() and (x.requires_grad or y.requires_grad)
    means, _ = torch.ops.pydeblur.ssim_forward(
        x.to(dtype),
        y.to(dtype),
        window_size,
        float(sigma),
        float(data_range),
        padding == "valid",
        save_partials,
    )
    value = means.mean() if reduction == "mean" else means.mean(dim=1)
    return value.to(out_dtype)


def ssim_loss(
    x: torch.Tensor,
    y: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    padding: str = "same",
    reduction: str = "mean",
) -> torch.Tensor:
    """1 - ssim(x, y, ...), with the same arguments and shapes (see `ssim`): [B, C, H, W] x2 ->
    a scalar, or [B] with reduction="none".

    >>> x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    >>> round(float(ssim_loss(x, x)), 6), bool(ssim_loss(x, 1 - x) > 1)
    (0.0, True)
    """
    return 1 - ssim(x, y, window_size, sigma, data_range, padding, reduction)
