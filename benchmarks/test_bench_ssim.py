"""SSIM loss, forward and forward+backward, B=8, 3x256x256, float32: pydeblur against its peers.

    pytest benchmarks/test_bench_ssim.py --benchmark-only --benchmark-group-by=group

Peers: pytorch_msssim.ssim, the pytorch_ssim package's formulation (5 grouped 11x11 convolutions,
written here), kornia.losses.ssim_loss. Each group holds one pass on one device, side by side.
"""

import kornia
import pytest
import pytorch_msssim
import torch
import torch.nn.functional as F

from pydeblur.ops import ssim_loss
from tests.helpers import cpu_and_cuda

SHAPE = (8, 3, 256, 256)
ROUNDS = 5


def pytorch_ssim_loss(x, y, window_size=11, sigma=1.5):
    """The pytorch_ssim package: one 11x11 Gaussian, 5 grouped conv2d with zero padding."""
    channels = x.shape[1]
    coords = torch.arange(window_size, dtype=x.dtype, device=x.device) - window_size // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    window = (g[:, None] * g[None, :]).expand(channels, 1, window_size, window_size).contiguous()

    def blur(t):
        return F.conv2d(t, window, padding=window_size // 2, groups=channels)

    mu_x, mu_y = blur(x), blur(y)
    sigma_xx = blur(x * x) - mu_x * mu_x
    sigma_yy = blur(y * y) - mu_y * mu_y
    sigma_xy = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sigma_xy + c2)) / (
        (mu_x * mu_x + mu_y * mu_y + c1) * (sigma_xx + sigma_yy + c2)
    )
    return 1 - ssim_map.mean()


LOSSES = {
    "pydeblur_same": lambda x, y: ssim_loss(x, y),
    "pydeblur_valid": lambda x, y: ssim_loss(x, y, padding="valid"),
    "pytorch_msssim": lambda x, y: 1 - pytorch_msssim.ssim(x, y, data_range=1.0),
    "pytorch_ssim_formulation": pytorch_ssim_loss,
    "kornia": lambda x, y: kornia.losses.ssim_loss(x, y, 11, max_val=1.0),
}


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("backward", [False, True], ids=["forward", "forward_backward"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_ssim_loss(benchmark, name, backward, device):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(SHAPE, generator=gen).to(device)
    y = (x + 0.1 * torch.randn(SHAPE, generator=gen).to(device)).clamp(0, 1)
    loss_fn = LOSSES[name]
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def forward():
        with torch.no_grad():
            loss = loss_fn(x, y)
        synchronize()
        return loss

    def forward_backward():
        xg = x.detach().requires_grad_()
        loss = loss_fn(xg, y)
        loss.backward()
        synchronize()
        return loss

    benchmark.group = f"ssim {'forward+backward' if backward else 'forward'} {device}"
    loss = benchmark.pedantic(
        forward_backward if backward else forward, rounds=ROUNDS, warmup_rounds=1
    )
    assert torch.isfinite(loss)
