"""Plain-PyTorch reference implementations that tests check the operators against and benchmarks time
as peers."""

import kornia
import torch
import torch.nn.functional as F


def gaussian_window(window_size: int, sigma: float, dtype) -> torch.Tensor:
    coords = torch.arange(window_size, dtype=dtype) - window_size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def reference_ssim_same(x, y, window_size=11, sigma=1.5, data_range=1.0):
    """The pytorch_ssim package: 5 grouped 2-D convolutions, zero padding window // 2 -> map [B, C, H, W]."""
    channels = x.shape[1]
    g = gaussian_window(window_size, sigma, x.dtype).to(x.device)
    window = (g[:, None] * g[None, :]).expand(channels, 1, window_size, window_size).contiguous()

    def blur(t):
        return F.conv2d(t, window, padding=window_size // 2, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x * mu_x
    sigma_yy = blur(y * y) - mu_y * mu_y
    sigma_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_xx + sigma_yy + c2)
    )


def kornia_bilateral(x, kernel_size=7, sigma_color=40 / 255, sigma_space=10.0):
    """kornia's bilateral blur with the semantics of pydeblur's bilateral_filter (the paper's defaults)."""
    return kornia.filters.bilateral_blur(
        x,
        kernel_size,
        sigma_color,
        (sigma_space, sigma_space),
        border_type="reflect",
        color_distance_type="l1",
    )
