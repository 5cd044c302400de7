"""Unrolled half-quadratic-splitting stages: a network's estimate refined against the data, stage by stage.

Each stage k takes the current estimate x (on a padded canvas) and

1. solves the data step in closed form in the Fourier domain,
   x_data = argmin_u ||k * u - y~||^2 + lam_k ||u - x||^2,  lam_k = s_k sigma^2 / strength
   (`pydeblur.physics.data_term_prox`), where sigma is the noise level of the blurred image (given by
   the caller or estimated) and s_k a learned strength;
2. corrects it with a small U-Net that sees x_data, the data step's correction scaled up,
   r = RESIDUAL_SCALE (x_data - x), and the noise level (a constant map):
   x <- x_data + D_k(x_data, r, sigma).
   The correction, not x itself: x_data and x are nearly equal, and a U-Net given both learns the
   difference slowly (memorising 4 fixed crops: 43.45 -> 44.16 dB in 300 steps given x, -> 48.37 given
   r; benchmarks/results/2026-12-02-stage-overfit/).

Boundaries: the canvas is the image extended by `pydeblur.boundary.pad_periodic`; outside the image
there is no data, so y~ there is the current estimate blurred (k * x), FDN's boundary adjustment
(Kruse et al., ICCV 2017): the data step is then exact inside the image and neutral outside, and
the estimate's own extension, not a smooth fill of y, carries the wrap-around. The U-Nets' last
convolutions start at zero and s_k at the data-consistency strength, so a model given stages starts
as the model it was plus that step, and training refines from there.
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from pydeblur.boundary import crop, embed, pad_periodic
from pydeblur.noise import MIN_SIGMA
from pydeblur.physics import data_term_prox, data_where_trusted, psf2otf

SIGMA_SCALE = 20.0  # the noise map the U-Nets see is sigma x this (the paper's 0.05 -> 1)
RESIDUAL_SCALE = 20.0  # the data step's correction the U-Nets see is (x_data - x) x this

# run(function, inputs [1, C, H, W]) -> function(inputs), possibly tile by tile (see `refine`)
Runner = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor], torch.Tensor]


def at_once(function: Callable[[torch.Tensor], torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """The default `Runner`: function(inputs), the whole canvas in one call.

    >>> at_once(lambda t: 2 * t, torch.ones(1, 1, 2, 2)).sum().item()
    8.0
    """
    return function(inputs)


class _Block(nn.Module):
    """conv, ReLU, conv, plus the input: [B, c, H, W] -> [B, c, H, W]."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(torch.relu(self.conv1(x)))


class StageDenoiser(nn.Module):
    """The correction of one stage, a U-Net: inputs [B, 7, H, W] (x_data, scaled correction, noise map) -> a residual
    [B, 3, H, W] for x_data (any H, W). `levels` stride-2 downsamplings, channels doubling, one residual
    block per level and side; the output convolution starts at zero.

    >>> net = StageDenoiser(channels=8, levels=2)
    >>> with torch.no_grad():
    ...     out, start = net(torch.rand(2, 7, 30, 21)), net(torch.rand(1, 7, 8, 8))
    >>> out.shape, float(start.abs().max())
    (torch.Size([2, 3, 30, 21]), 0.0)
    """

    def __init__(self, channels: int, levels: int, image_channels: int = 3):
        super().__init__()
        widths = [channels * 2**level for level in range(levels + 1)]
        self.levels = levels
        self.conv_in = nn.Conv2d(2 * image_channels + 1, channels, 3, padding=1)
        self.encode = nn.ModuleList(_Block(w) for w in widths[:-1])
        self.down = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 3, stride=2, padding=1) for i in range(levels)
        )
        self.bottom = _Block(widths[-1])
        self.up = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(levels)
        )
        self.decode = nn.ModuleList(_Block(w) for w in widths[:-1])
        self.conv_out = nn.Conv2d(channels, image_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    @property
    def reach(self) -> int:
        """Pixels on each side that influence one output: a bound (each level's convolutions count
        their half-width times the level's scale)."""
        reach = 1 + 2 + 2 + 1  # conv_in, the two blocks at full resolution, conv_out
        for level in range(1, self.levels + 1):
            scale = 2**level
            convs = 1 + 2 + (2 if level < self.levels else 0) + 1  # down, blocks, up
            reach += convs * scale
        return reach

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        height, width = inputs.shape[-2:]
        multiple = 2**self.levels
        pad_h, pad_w = (-height) % multiple, (-width) % multiple
        x = F.pad(inputs, (0, pad_w, 0, pad_h), mode="replicate") if pad_h or pad_w else inputs
        x = torch.relu(self.conv_in(x))
        skips = []
        for encode, down in zip(self.encode, self.down, strict=True):
            x = encode(x)
            skips.append(x)
            x = torch.relu(down(x))
        x = self.bottom(x)
        for level in reversed(range(self.levels)):
            x = self.decode[level](torch.relu(self.up[level](x)) + skips[level])
        return self.conv_out(x)[..., :height, :width]


class Stage(nn.Module):
    """One stage's learned parts: the data step's strength s_k (as its log) and the U-Net.

    >>> stage = Stage(channels=8, levels=1, strength=2e4)
    >>> round(float(stage.log_strength.detach().exp())), stage.unet.levels
    (20000, 1)
    """

    def __init__(self, channels: int, levels: int, strength: float, image_channels: int = 3):
        super().__init__()
        self.log_strength = nn.Parameter(torch.tensor(math.log(strength)))
        self.unet = StageDenoiser(channels, levels, image_channels)


class UnrolledStages(nn.Module):
    """`count` stages (module docstring): estimate [B, 3, H, W], blurred [B, 3, H, W], psf [B, 1, kh, kw]
    and the noise sigma [B] -> the refined estimate [B, 3, H, W].

    >>> stages = UnrolledStages(count=2, channels=8, levels=1, strength=2e4)
    >>> blurred = torch.rand(1, 3, 24, 24)
    >>> out = stages(blurred, blurred, torch.full((1, 1, 5, 5), 1 / 25), torch.tensor([0.01]))
    >>> out.shape
    torch.Size([1, 3, 24, 24])
    """

    def __init__(
        self, count: int, channels: int, levels: int, strength: float, image_channels: int = 3
    ):
        super().__init__()
        self.stages = nn.ModuleList(
            Stage(channels, levels, strength, image_channels) for _ in range(count)
        )

    def __len__(self) -> int:
        return len(self.stages)

    @property
    def reach(self) -> int:
        """Pixels on each side that influence one output of one stage's U-Net."""
        return max(stage.unet.reach for stage in self.stages)

    def forward(
        self,
        estimate: torch.Tensor,
        blurred: torch.Tensor,
        psf: torch.Tensor,
        sigma: torch.Tensor,
        strength: float = 1.0,
        run: Runner = at_once,
        trusted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """strength: divides every lam_k (above 1 trusts the data more: sharper, noisier).
        trusted: where the data hold [B, C or 1, H, W] (1) and where not (0: clipped highlights);
        untrusted pixels are treated as the canvas outside the image (the estimate blurred).
        run(function, inputs): how each U-Net is applied to the whole canvas [1, 7, H', W'] (the
        default: at once; `pydeblur.restore` tiles it)."""
        kh, kw = psf.shape[-2:]
        canvas_y, padding = pad_periodic(blurred.float(), (kh, kw))
        x = pad_periodic(estimate.float(), (kh, kw))[0]
        data = torch.ones_like(blurred[:, :1]) if trusted is None else trusted
        inside = embed(data.to(canvas_y.dtype), padding, canvas_y.shape[-2:], 0.0)
        otf = psf2otf(psf.double(), canvas_y.shape[-2:], half_spectrum=True)
        sigma = sigma.to(canvas_y.device).float().clamp_min(MIN_SIGMA).reshape(-1, 1, 1, 1)
        noise_map = (sigma * SIGMA_SCALE).expand_as(inside[:, :1])
        for stage in self.stages:
            lam = stage.log_strength.exp() * sigma.double() ** 2 / strength
            x_data = data_step(x, canvas_y, inside, otf, lam)
            inputs = torch.cat([x_data, RESIDUAL_SCALE * (x_data - x), noise_map], dim=1)
            x = x_data + run(stage.unet, inputs).to(x_data.dtype)
        return crop(x, padding).to(estimate.dtype)


def data_step(
    x: torch.Tensor,
    canvas_y: torch.Tensor,
    inside: torch.Tensor,
    otf: torch.Tensor,
    lam: torch.Tensor | float,
) -> torch.Tensor:
    """argmin_u ||k * u - y~||^2 + lam ||u - x||^2 on the canvas, y~ = canvas_y where `inside` is 1 and
    k * x elsewhere: x, canvas_y [B, C, H, W], inside [B or 1, 1, H, W], otf the half spectrum
    [B, 1, H, W // 2 + 1] (float64), lam a float or [B, 1, 1, 1] -> [B, C, H, W] float32. One channel
    at a time in float64 (the division by |K|^2 + lam reaches ~1e-6 at low noise; one channel of a
    12-megapixel canvas's spectra is ~0.5 GB).

    An estimate that explains the data is kept:

    >>> x = torch.rand(1, 3, 16, 16)
    >>> otf = psf2otf(torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float64), (16, 16), True)
    >>> inside = torch.zeros(1, 1, 16, 16)
    >>> inside[..., 4:12, 4:12] = 1
    >>> from pydeblur.physics import circular_convolve
    >>> y = circular_convolve(x.double(), otf).float()
    >>> torch.allclose(data_step(x, y, inside, otf, 1e-3), x, atol=1e-4)
    True
    """
    channels = []
    for c in range(x.shape[1]):
        xc = x[:, c : c + 1].double()
        trusted = inside[:, c : c + 1] if inside.shape[1] > 1 else inside
        target = data_where_trusted(canvas_y[:, c : c + 1].double(), xc, otf, trusted)
        channels.append(data_term_prox(xc, target, otf, lam).float())
    return torch.cat(channels, dim=1)
