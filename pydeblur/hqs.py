"""An unrolled half-quadratic-splitting network in FDN's form: every stage a closed-form solve.

Stage t maps the estimate x_{t-1} (on the padded canvas) to

    X_t = (lam_t conj(K) Y_t + G_t X_{t-1} + F(cnn_t(x_{t-1}, sigma))) / (lam_t |K|^2 + G_t)

with K the OTF of the PSF, G_t = sum_i |F_ti|^2 the power of the stage's learned filters f_ti (FDN's
quadratic prior, Kruse et al., ICCV 2017), lam_t = exp(a_t + b_t log(sigma / SIGMA_REF)) / sigma^2
the data weight at the noise level sigma of the blurred image (given or estimated; b_t a learned
slope, `HQSStage.data_weight`), and cnn_t a small CNN told x_{t-1} and the
noise level. With cnn_t = 0 (its last convolution starts at zero) the stage is the proximal step
argmin_u lam ||k * u - y||^2 + sum_i ||f_i * (u - x_{t-1})||^2; the CNN learns what the prior
adds to that (FDN's cnn(x) stands for sum_i f_i^T phi_i(f_i * x); ours is that minus G x).

Boundaries: the image is extended by `pydeblur.boundary.pad_periodic` (x_0 is that canvas); from the
second stage on, the data outside the image are the current estimate blurred (FDN's boundary
adjustment, `pydeblur.physics.data_where_trusted`), so the solve is exact inside the image and neutral
outside it. The FFT solve runs in float64 (the denominators reach ~1e-6 at low noise), the CNNs in the
input's dtype (or under autocast).

Unlike `pydeblur.model.DeblurNet` it has no Wiener bank and no network before the stages: the stages
are the whole model, trained stage by stage and then jointly (`training/train_hqs.py`).
"""

import dataclasses
import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pydeblur.boundary import crop, embed, pad_periodic
from pydeblur.noise import MIN_SIGMA, estimate_noise_sigma
from pydeblur.physics import data_where_trusted, psf2otf

SIGMA_SCALE = 20.0  # the noise map the CNNs see: sigma x this (0.05 -> 1)
SIGMA_REF = 0.01  # the noise level at which a stage's data weight is exp(a_t) / sigma^2
FILTER_SCALE = 0.2  # the filters start as this x the orthonormal DCT basis (without its constant)
SPECTRA_BYTES_PER_PIXEL = 700  # a forward pass's float64 images and spectra (3 channels)


class _ELU(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        # max(x, exp(min(x, 0)) - 1): e^u - 1 >= u, so the max picks x above 0 (exactly, in any
        # dtype) and e^x - 1 below; one buffer, written in place (each new 10 MB buffer costs more
        # in page faults than the arithmetic)
        out = x.clamp(max=0).exp_().sub_(1)
        out = torch.maximum(out, x, out=out)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (out,) = ctx.saved_tensors
        return out.clamp(max=0).add_(1).mul_(grad)  # d/dx: 1 above 0, e^x = out + 1 below


def elu(x: torch.Tensor) -> torch.Tensor:
    """ELU (alpha 1) without torch's CPU kernel, which calls an unvectorised expm1 (40 % of a
    4-stage network's time on a 256x256 image went to it): the same as `F.elu` to 3e-7 in float32
    (one step, 2^-8, in bfloat16), and 5-7x faster on these CPUs.

    >>> x = torch.linspace(-4, 4, 9)
    >>> bool((elu(x) - F.elu(x)).abs().max() < 1e-6)
    True
    """
    return _ELU.apply(x)


ACTIVATIONS = {"elu": elu, "relu": F.relu}
RESIDUAL_GAIN = 0.1


@dataclasses.dataclass(frozen=True)
class HQSConfig:
    """The shape of an `HQSNet`.

    stages: how many stages; channels, layers: each stage CNN's width and convolutions (3x3);
    filters, filter_size: the learned prior filters per stage, the first `filters` elements of the
    DCT basis at the start: filter_size^2 - 1 or fewer leave the constant out (FDN's 24 of 5x5: the
    prior ignores the mean), filter_size^2 takes the whole basis (G is then flat at the start, so a
    stage starts as `pydeblur.consistency`'s step: the start for a model that refines another's
    output); start_weight: the data weight at the start, lam = start_weight / sigma^2;
    image_channels: 3 (colour, the channels solved jointly by the CNN) or 1; activation: between the
    CNN's convolutions, "elu" (FDN's, as `elu`) or "relu" (a fifth less time for 4 stages on a
    256x256 image); start: x_0, "blurred" (FDN's start) or the name of a shipped `DeblurNet` (e.g.
    "robust") whose output, frozen, the stages refine (its weights are kept in this model's);
    residual_input: the CNNs are also told the data term's gradient, k^T (y - k * x) x
    `RESIDUAL_GAIN` / sigma (where the estimate disagrees with the data, in units of the noise).

    >>> HQSConfig.from_dict(HQSConfig(stages=2).to_dict()).stages
    2
    """

    stages: int = 6
    channels: int = 32
    layers: int = 5
    filters: int = 24
    filter_size: int = 5
    start_weight: float = 1e-2
    image_channels: int = 3
    activation: str = "elu"
    start: str = "blurred"
    residual_input: bool = False

    def __post_init__(self):
        if not 1 <= self.stages <= 20:
            raise ValueError(f"stages must be in 1..20, got {self.stages}")
        if self.channels < 1 or self.layers < 2:
            raise ValueError(
                f"channels must be >= 1 and layers >= 2, got {self.channels}, {self.layers}"
            )
        if self.filter_size < 2 or not 1 <= self.filters <= self.filter_size**2:
            raise ValueError(
                f"filters must be in 1..filter_size^2, got {self.filters} for {self.filter_size}"
            )
        if not (math.isfinite(self.start_weight) and self.start_weight > 0):
            raise ValueError(f"start_weight must be positive, got {self.start_weight}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.image_channels not in (1, 3):
            raise ValueError(f"image_channels must be 1 or 3, got {self.image_channels}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "HQSConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown HQSConfig fields: {sorted(unknown)}")
        return cls(**values)


def dct_filters(size: int, count: int) -> torch.Tensor:
    """The first `count` elements of the 2-D orthonormal DCT-II basis of size x size, ordered by
    frequency, without the constant one (each of zero mean) unless count is size^2 (the whole basis,
    the constant first, whose power sum_i |F_i|^2 is flat): [count, size, size] float32, unit norms.

    >>> f = dct_filters(5, 24)
    >>> f.shape, bool(f.sum(dim=(1, 2)).abs().max() < 1e-6), round(float(f[0].norm()), 4)
    (torch.Size([24, 5, 5]), True, 1.0)
    >>> power = torch.fft.rfft2(dct_filters(5, 25), s=(16, 16)).abs().pow(2).sum(dim=0)
    >>> round(power.min().item(), 4), round(power.max().item(), 4)
    (25.0, 25.0)
    """
    n = np.arange(size)
    basis = np.cos(np.pi * (n[None, :] + 0.5) * n[:, None] / size) * np.sqrt(2 / size)
    basis[0] /= np.sqrt(2)  # rows: frequencies u; columns: samples m
    pairs = sorted(((u, v) for u in range(size) for v in range(size) if u or v), key=sum)
    pairs = [(0, 0)] + pairs if count == size**2 else pairs
    filters = np.stack([np.outer(basis[u], basis[v]) for u, v in pairs[:count]])
    return torch.from_numpy(filters).float()


class PriorCNN(nn.Module):
    """The stage's CNN: [B, C + 1, H, W] (the estimate and the noise map) -> [B, C, H, W]. `layers`
    3x3 convolutions with `activation` between them (zero padding), the last one starting at zero.

    >>> cnn = PriorCNN(3, channels=8, layers=3)
    >>> float(cnn(torch.rand(1, 4, 9, 9)).abs().max())
    0.0
    """

    def __init__(
        self,
        image_channels: int,
        channels: int,
        layers: int,
        activation: str = "elu",
        extra_inputs: int = 1,
    ):
        super().__init__()
        self.activation = ACTIVATIONS[activation]
        widths = [image_channels + extra_inputs] + [channels] * (layers - 1) + [image_channels]
        self.convs = nn.ModuleList(
            nn.Conv2d(a, b, 3, padding=1) for a, b in zip(widths[:-1], widths[1:], strict=True)
        )
        nn.init.zeros_(self.convs[-1].weight)
        nn.init.zeros_(self.convs[-1].bias)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        for conv in self.convs[:-1]:
            x = self.activation(conv(x))
        return self.convs[-1](x)


class HQSStage(nn.Module):
    """One stage's learned parts: the prior filters, the data weight's log scale a_t and its slope
    b_t in log sigma, the CNN.

    >>> stage = HQSStage(HQSConfig(channels=8))
    >>> tuple(stage.filters.shape), round(stage.log_weight.exp().item(), 4)
    ((24, 5, 5), 0.01)
    >>> power = stage.filter_power((16, 16))  # G: zero at the origin (no filter has a mean)
    >>> tuple(power.shape), round(power[0, 0].item(), 9)
    ((16, 9), 0.0)
    """

    def __init__(self, config: HQSConfig):
        super().__init__()
        start = dct_filters(config.filter_size, config.filters) * FILTER_SCALE
        self.filters = nn.Parameter(start)
        self.log_weight = nn.Parameter(torch.tensor(math.log(config.start_weight)))
        self.weight_slope = nn.Parameter(torch.zeros(()))
        self.residual_input = config.residual_input
        extra = 1 + (config.image_channels if config.residual_input else 0)
        self.cnn = PriorCNN(
            config.image_channels, config.channels, config.layers, config.activation, extra
        )

    def data_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """lam_t = exp(a_t + b_t log(sigma / SIGMA_REF)) / sigma^2 for sigma [B, 1, 1, 1] float64:
        b_t = 0 trusts the data in proportion to 1 / sigma^2 at every noise level; b_t > 0 trusts the
        cleanest images less than that (FDN's learned weights do: their lam sigma^2 falls 5-7x from
        sigma 2.55/255 to 0.37/255), as noise the estimator does not see (a photo's misfit) asks.

        >>> stage = HQSStage(HQSConfig(channels=8))
        >>> sigma = torch.tensor([0.01, 0.001], dtype=torch.float64).view(2, 1, 1, 1)
        >>> [round(v, 6) for v in (stage.data_weight(sigma) * sigma**2).flatten().tolist()]
        [0.01, 0.01]
        """
        log_scale = self.log_weight.double() + self.weight_slope.double() * torch.log(
            sigma / SIGMA_REF
        )
        return log_scale.exp() / sigma**2

    def filter_power(self, shape: tuple[int, int]) -> torch.Tensor:
        """G = sum_i |F_i|^2 on a canvas of `shape`: [H, W // 2 + 1] float64 (the rfft2 layout).

        Computed as the transform of the filters' summed autocorrelation sum_i f_i * flip(f_i), a
        (2s - 1)^2 kernel wrapped around the origin: one FFT instead of one per filter (a 4-stage
        network on a 12-megapixel photo went from 62 s to 49 s, docs/training.md, session 20). Its
        transform is real and >= 0; the clamp only removes rounding below zero where G vanishes.

        >>> stage = HQSStage(HQSConfig(channels=8))
        >>> direct = torch.fft.rfft2(stage.filters.double(), s=(16, 12)).abs().pow(2).sum(dim=0)
        >>> bool((stage.filter_power((16, 12)) - direct).abs().max() < 1e-12)
        True
        """
        filters = self.filters.double()
        count, size = filters.shape[0], filters.shape[-1]
        lags = F.conv2d(filters[None], filters[:, None], padding=size - 1, groups=count)
        offsets = torch.arange(1 - size, size, device=filters.device)  # lag d sits at d mod H
        rows, cols = (offsets % shape[0])[:, None], (offsets % shape[1])[None, :]
        wrapped = filters.new_zeros(shape).index_put((rows, cols), lags.sum(dim=(0, 1)), True)
        return torch.fft.rfft2(wrapped).real.clamp_min(0)


class HQSNet(nn.Module):
    """`config.stages` stages (module docstring): blurred [B, C, H, W], psf [B, 1, kh, kw] and
    optionally the noise sigma [B] (else estimated from blurred) -> the deblurred images [B, C, H, W].
    `upto` runs only the first stages (greedy training).

    >>> net = HQSNet(HQSConfig(stages=2, channels=8, layers=3))
    >>> blurred = torch.rand(2, 3, 24, 24)
    >>> net(blurred, torch.full((2, 1, 5, 5), 1 / 25)).shape
    torch.Size([2, 3, 24, 24])
    """

    def __init__(self, config: HQSConfig):
        super().__init__()
        self.config = config
        self.stages = nn.ModuleList(HQSStage(config) for _ in range(config.stages))
        self.start = None
        if config.start != "blurred":
            from pydeblur.weights_io import load_model

            self.start = load_model(config.start).requires_grad_(False)

    def receptive_radius(self) -> int:
        """Pixels on each side that reach an output pixel through the CNNs and the prior filters;
        the solves' reach through the blur kernel is the tiling's to add
        (`pydeblur.tiling.default_overlap`)."""
        start = self.start.receptive_radius() if self.start is not None else 0
        return start + self.config.stages * (self.config.layers + self.config.filter_size // 2)

    def bytes_per_pixel(self) -> int:
        """Estimated working memory of a forward pass per pixel of the padded canvas: the float64
        spectra and `LIVE_ACTIVATIONS` float32 maps of a CNN (1,150-1,200 bytes measured by the
        process's peak RSS for 32 channels on canvases of 543² and 1055²)."""
        from pydeblur.tiling import LIVE_ACTIVATIONS

        start = self.start.bytes_per_pixel() if self.start is not None else 0
        return max(start, SPECTRA_BYTES_PER_PIXEL + LIVE_ACTIVATIONS * 4 * self.config.channels)

    def train(self, mode: bool = True) -> "HQSNet":
        super().train(mode)
        if self.start is not None:
            self.start.eval()  # frozen: never its training behaviour
        return self

    def forward(
        self,
        blurred: torch.Tensor,
        psf: torch.Tensor,
        sigma: torch.Tensor | None = None,
        upto: int | None = None,
        frozen: int = 0,
        strength: float = 1.0,
    ) -> torch.Tensor:
        """frozen: the first `frozen` stages run without gradients (greedy training of the next);
        strength multiplies every stage's data weight (above 1 sharper and noisier, below 1
        smoother; 1 is what the model was trained at)."""
        if sigma is None:
            sigma = estimate_noise_sigma(blurred.float())
        sigma = sigma.to(blurred.device).double().clamp_min(MIN_SIGMA).reshape(-1, 1, 1, 1)
        kh, kw = psf.shape[-2:]
        canvas_y, padding = pad_periodic(blurred.float(), (kh, kw))
        shape = canvas_y.shape[-2:]
        inside = embed(torch.ones_like(blurred[:, :1]), padding, shape, 0.0).double()
        otf = psf2otf(psf.double(), shape, half_spectrum=True)
        y = canvas_y.double()
        y_spectrum = otf.conj() * torch.fft.rfft2(y)
        noise_map = (sigma.float() * SIGMA_SCALE).expand(-1, 1, *shape).to(blurred.dtype)
        x = canvas_y
        if self.start is not None:
            with torch.no_grad():
                flat_sigma = sigma.reshape(-1).to(blurred.dtype)
                estimate = self.start.network(blurred, psf)
                estimate = self.start.refine(estimate, blurred, psf, flat_sigma)
            x = pad_periodic(estimate.float(), (kh, kw))[0]
        adjusted = self.start is not None  # the start explains the data outside the image
        for index, stage in enumerate(self.stages[:upto]):
            with torch.set_grad_enabled(torch.is_grad_enabled() and index >= frozen):
                x = self._stage(
                    stage,
                    adjusted or index > 0,
                    x,
                    y,
                    y_spectrum,
                    otf,
                    inside,
                    sigma,
                    noise_map,
                    strength,
                )
        return crop(x, padding).to(blurred.dtype)

    @staticmethod
    def _stage(
        stage, adjust, x, y, y_spectrum, otf, inside, sigma, noise_map, strength=1.0
    ) -> torch.Tensor:
        lam = stage.data_weight(sigma) * strength
        otf_power = torch.view_as_real(otf).square().sum(dim=-1)  # |K|^2 without abs's hypot
        if adjust:  # boundary adjustment: outside the image the data are the estimate blurred
            y_spectrum = otf.conj() * torch.fft.rfft2(
                data_where_trusted(y, x.double(), otf, inside)
            )
        x_spectrum = torch.fft.rfft2(x.double())
        inputs = [x.to(noise_map.dtype), noise_map]
        if stage.residual_input:
            gradient = torch.fft.irfft2(y_spectrum - otf_power * x_spectrum, s=x.shape[-2:])
            inputs.append((gradient * (RESIDUAL_GAIN / sigma)).to(noise_map.dtype))
        power = stage.filter_power(tuple(x.shape[-2:]))
        correction = stage.cnn(torch.cat(inputs, dim=1))
        numerator = lam * y_spectrum + power * x_spectrum
        numerator = numerator + torch.fft.rfft2(correction.double())
        solved = torch.fft.irfft2(numerator / (lam * otf_power + power), s=x.shape[-2:])
        return solved.float()
