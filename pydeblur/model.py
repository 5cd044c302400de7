"""The deblurring network: a Wiener-deconvolution bank stacked with the blurred image, then ResBlocks.

`DeblurNet(config)(blurred [B, 3, H, W], psf [B, 1, kh, kw]) -> [B, 3, H, W]` runs the feature step
(`pydeblur.features.wiener_features`) itself, so training, evaluation and inference all call the model
the same way. Every size is a `ModelConfig` value; `CONFIGS` names the paper's configuration and smaller
ones for CPUs. Weights files (safetensors with a JSON model card) are `pydeblur.weights_io`'s.
"""

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pydeblur import ops
from pydeblur.consistency import data_consistency
from pydeblur.features import feature_channels, wiener_features
from pydeblur.noise import (
    MIN_SIGMA,
    PAPER_SNR_DB,
    estimate_channel_correlation,
    estimate_noise_sigma,
    snr_to_nsr,
)
from pydeblur.unrolled import Runner, UnrolledStages, at_once

HEADS = ("direct", "mix")
MAX_STAGES = 10
CONDITIONING_HIDDEN = 32  # the width of NoiseConditioning's MLP
TAIL_KERNEL_SIZE = 7  # the bilateral tail's window (the paper's)
MIX_START_SNR_DB = (
    21.0  # the "mix" head starts from the blurred image and the Wiener images up to this
)


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape and its feature step.

    blocks, channels, kernel_size: the ResBlock trunk (conv in -> `blocks` x (conv, ReLU, dropout, conv,
      + input) -> conv out), "same" padding.
    snr_db, snr_mode: the assumed SNRs of the Wiener bank; "db" reads them as decibels
      (nsr = 10^(-snr/10)), "linear" as ratios (nsr = 1/snr, how the paper's code read them: an ablation).
    dropout: drop probability inside each block (the paper's "0.8" was a keep probability: 0.2 here).
    head: "direct" (the paper): the last conv outputs the image. "mix": residual learning on top of the
      Wiener stack: the last conv outputs 1 + S per-pixel logits and 3 residual channels, and the image
      is the softmax-weighted mix of the blurred image and the S Wiener images plus the residual. It
      starts as the mix of the blurred image and the Wiener images at SNR <= 21 dB (weight e^-3 for the
      others), a fair estimate at every noise level, so training refines instead of starting from noise.
    clamp_features: clip the Wiener images to [-0.5, 1.5] (sharp images are in [0, 1]; beyond is
      amplified noise) before the trunk and the mix.
    bilateral_tail: our `bilateral_filter` as the last layer (the paper's option).
    normalize_input: standardise the features by the blurred image's mean and std (per image), and undo
      it on the output (the paper tried it).
    learn_nsr: the Wiener bank's nsr values are trained (through the operator's nsr gradient).
    margin: boundary padding per side before the Wiener bank (None: the PSF's larger side).
    context_levels: a multi-scale `ContextBranch` of that many half-resolution levels between conv_in
      and the ResBlocks (0: none). It sees ~2^levels times farther than the 3x3 trunk: Wiener ringing
      spans the whole kernel, which a shallow full-resolution trunk cannot.
    data_consistency: when positive, the output goes through `pydeblur.consistency.data_consistency`
      with this strength (1 / the variance of the network's error) as a last, parameter-free step:
      frequencies the blur keeps above the estimated noise are taken back from the data. 0: off.
      Chosen after training, on the validation split (docs/model.md).
    boundary_adjustment: the data-consistency step's data outside the image (on the padded canvas)
      are the estimate blurred, so the step is exact inside the image and neutral outside (FDN's
      boundary adjustment, as the unrolled stages do); False: the smooth periodic extension of the
      blurred image, as weights made before it had.
    stages, stage_channels, stage_levels, stage_strength: `stages` unrolled half-quadratic-splitting
      stages after the network (`pydeblur.unrolled`): each a closed-form data step at the noise level
      and a U-Net of `stage_channels` at full resolution and `stage_levels` downsamplings; their data
      strengths start at `stage_strength`. They replace the data-consistency step (0: none).
    noise_conditioning: the trunk is told the noise: its level and its correlation between the colour
      channels (`noise_descriptor`: estimated from the blurred image unless given) scale and shift
      the features before every ResBlock and before conv_out (`NoiseConditioning`, FiLM). Without
      it, a network trained on independent noise reads noise shared by the channels (a grey
      photo's) as detail, and one trained on both hedges between them.

    >>> config = ModelConfig(blocks=2, channels=16, snr_db=(10, 30))
    >>> config.snr_db, ModelConfig.from_dict(config.to_dict()) == config
    ((10.0, 30.0), True)
    """

    blocks: int = 12
    channels: int = 64
    kernel_size: int = 5
    snr_db: tuple[float, ...] = PAPER_SNR_DB
    snr_mode: str = "db"
    dropout: float = 0.2
    head: str = "direct"
    bilateral_tail: bool = False
    normalize_input: bool = False
    learn_nsr: bool = False
    clamp_features: bool = False
    margin: int | None = None
    context_levels: int = 0
    data_consistency: float = 0.0
    boundary_adjustment: bool = False
    stages: int = 0
    stage_channels: int = 16
    stage_levels: int = 2
    stage_strength: float = 20000.0
    noise_conditioning: bool = False
    image_channels: int = field(default=3)

    def __post_init__(self):
        object.__setattr__(self, "snr_db", tuple(float(v) for v in self.snr_db))
        if self.blocks < 0:
            raise ValueError(f"blocks must be >= 0, got {self.blocks}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd number, got {self.kernel_size}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout is a drop probability in [0, 1), got {self.dropout}")
        if not 0 <= self.context_levels <= 4:
            raise ValueError(f"context_levels must be in 0..4, got {self.context_levels}")
        if not (math.isfinite(self.data_consistency) and self.data_consistency >= 0):
            raise ValueError(
                f"data_consistency must be finite and >= 0, got {self.data_consistency}"
            )
        if not 0 <= self.stages <= MAX_STAGES:
            raise ValueError(f"stages must be in 0..{MAX_STAGES}, got {self.stages}")
        if self.stages and self.data_consistency:
            raise ValueError("stages replace the data-consistency step: set data_consistency to 0")
        if self.stage_channels < 1 or not 0 <= self.stage_levels <= 4:
            raise ValueError(
                f"stage_channels must be >= 1 and stage_levels in 0..4, got {self.stage_channels} "
                f"and {self.stage_levels}"
            )
        if not (math.isfinite(self.stage_strength) and self.stage_strength > 0):
            raise ValueError(f"stage_strength must be positive, got {self.stage_strength}")
        if self.head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {self.head!r}")
        snr_to_nsr(self.snr_db, self.snr_mode)  # validates snr_db and snr_mode

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["snr_db"] = list(self.snr_db)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown ModelConfig fields: {sorted(unknown)}")
        return cls(**values)


# The shipped CPU model: residual mix on top of the Wiener stack, 3x3 convs, moderate width, and a
# 3-level context branch (1/2, 1/4, 1/8 resolution) that sees as far as large kernels ring.
_DEFAULT = ModelConfig(
    blocks=5,
    channels=32,
    kernel_size=3,
    dropout=0.0,
    head="mix",
    clamp_features=True,
    context_levels=3,
)

CONFIGS: dict[str, ModelConfig] = {
    # The paper: 12 ResBlocks, 64 channels, 5x5, dropout keep 0.8, SNRs 9..65 dB, direct output.
    "paper": ModelConfig(),
    "default": _DEFAULT,
    # The shipped network (its bilateral tail included) followed by two unrolled stages.
    "unrolled": dataclasses.replace(_DEFAULT, bilateral_tail=True, stages=2),
    # The network docs/design.md measured on these CPUs (6 blocks, 48 channels, 3x3).
    "small": ModelConfig(
        blocks=6, channels=48, kernel_size=3, dropout=0.0, head="mix", clamp_features=True
    ),
    # For tests: a few thousand parameters.
    "tiny": ModelConfig(blocks=1, channels=8, kernel_size=3, dropout=0.0, head="mix"),
}


class ResBlock(nn.Module):
    """conv, ReLU, dropout, conv, plus the block's input (no normalisation layers):
    [B, channels, H, W] -> [B, channels, H, W].

    >>> ResBlock(8, 3, dropout=0.0)(torch.rand(2, 8, 16, 16)).shape
    torch.Size([2, 8, 16, 16])
    """

    def __init__(self, channels: int, kernel_size: int, dropout: float):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.conv2 = nn.Conv2d(channels, channels, kernel_size, padding=kernel_size // 2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.dropout(torch.relu(self.conv1(x))))


class ContextBranch(nn.Module):
    """A small U-Net added to the trunk's features: [B, c, H, W] -> [B, c, H, W] (any H, W).

    Down: `levels` times (2x2 average pool, two 3x3 convs with ReLU, channels doubling up to 4c).
    Up: a 3x3 conv at each level, bilinear upsampling to the next finer level's exact size, added to
    that level's features. The last conv is zero-initialised, so adding the branch to a trained model
    leaves its output unchanged until training moves it.

    >>> with torch.no_grad():
    ...     out = ContextBranch(8, levels=2)(torch.rand(1, 8, 15, 20))
    >>> out.shape, float(out.abs().max())  # zero until trained
    (torch.Size([1, 8, 15, 20]), 0.0)
    """

    def __init__(self, channels: int, levels: int):
        super().__init__()
        widths = [channels * min(2**level, 4) for level in range(levels + 1)]
        self.down = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(widths[level], widths[level + 1], 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(widths[level + 1], widths[level + 1], 3, padding=1),
                nn.ReLU(),
            )
            for level in range(levels)
        )
        self.up = nn.ModuleList(
            nn.Conv2d(widths[level + 1], widths[level], 3, padding=1) for level in range(levels)
        )
        nn.init.zeros_(self.up[0].weight)
        nn.init.zeros_(self.up[0].bias)

    @property
    def reach(self) -> int:
        """Pixels (at full resolution) on each side that influence one output: a bound."""
        reach = 0
        for level in range(1, len(self.down) + 1):
            scale = 2**level
            reach += 2 * scale + scale // 2  # two convs, the pool
            reach += scale + scale  # the up conv, the upsampling
        return reach

    @property
    def activation_channels(self) -> float:
        """Full-resolution float maps alive at once in its forward pass: its upsampled output and the
        sum it is added to; at each level, at 1/4^level of the pixels, the down block's two maps and
        (below the coarsest level) the up conv's output from the level below and its sum."""
        levels = len(self.down)
        maps = 2.0 * self.up[0].out_channels
        for level in range(1, levels + 1):
            arriving = self.up[level].out_channels if level < levels else 0
            maps += 2 * (self.down[level - 1][0].out_channels + arriving) / 4**level
        return maps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [x]
        for block in self.down:
            skips.append(block(F.avg_pool2d(skips[-1], 2, ceil_mode=True)))
        y = skips.pop()
        for level in reversed(range(len(self.up))):
            y = self.up[level](y)
            y = F.interpolate(y, size=skips[level].shape[-2:], mode="bilinear", align_corners=False)
            if level > 0:
                y = torch.relu(y + skips[level])
        return y


def noise_descriptor(blurred: torch.Tensor, sigma: torch.Tensor | None = None) -> torch.Tensor:
    """What `NoiseConditioning` is told of blurred [B, C, H, W]'s noise: [B, 2] float32, log10 of its
    standard deviation (sigma [B] if given, else `estimate_noise_sigma`) plus 2, and its correlation
    between channels (`estimate_channel_correlation`). Not differentiated.

    >>> y = (0.5 + 0.01 * torch.randn(1, 1, 64, 64)).expand(-1, 3, -1, -1)
    >>> noise_descriptor(y, torch.tensor([0.01])).tolist()
    [[0.0, 1.0]]
    """
    with torch.no_grad():
        y = blurred.float()
        level = estimate_noise_sigma(y) if sigma is None else sigma.to(y).reshape(-1)
        level = torch.log10(level.clamp_min(MIN_SIGMA)) + 2
        return torch.stack([level.expand(y.shape[0]), estimate_channel_correlation(y)], dim=1)


class NoiseConditioning(nn.Module):
    """A per-image scale and shift of the trunk's features from `noise_descriptor`: an MLP [B, 2] ->
    `positions` x (scale, shift) of `channels`, applied as features * (1 + scale) + shift. The last
    layer starts at zero, so adding it to a trained network changes nothing until training moves it.

    >>> film = NoiseConditioning(8, positions=2)
    >>> x = torch.rand(1, 8, 4, 4)
    >>> bool((film(x, film.parameters_for(torch.tensor([[0.0, 1.0]])), 1) == x).all())
    True
    """

    def __init__(self, channels: int, positions: int, hidden: int = CONDITIONING_HIDDEN):
        super().__init__()
        self.channels, self.positions = channels, positions
        self.mlp = nn.Sequential(
            nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, positions * 2 * channels)
        )
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def parameters_for(self, descriptor: torch.Tensor) -> torch.Tensor:
        """[B, 2] -> [B, positions, 2, channels, 1, 1]."""
        out = self.mlp(descriptor.to(self.mlp[0].weight.dtype))
        return out.reshape(-1, self.positions, 2, self.channels, 1, 1)

    def forward(self, x: torch.Tensor, film: torch.Tensor, position: int) -> torch.Tensor:
        scale, shift = film[:, position, 0], film[:, position, 1]
        return x * (1 + scale.to(x.dtype)) + shift.to(x.dtype)


class DeblurNet(nn.Module):
    """blurred [B, 3, H, W] and psf [B, 1, kh, kw] -> deblurred [B, 3, H, W] (not clamped).

    >>> net = DeblurNet("tiny").eval()
    >>> net(torch.rand(2, 3, 24, 32), torch.full((2, 1, 5, 5), 1 / 25)).shape
    torch.Size([2, 3, 24, 32])
    """

    def __init__(self, config: ModelConfig | str = "paper"):
        super().__init__()
        if isinstance(config, str):
            config = get_config(config)
        self.config = config
        num_snr = len(config.snr_db)
        log_nsr = torch.log(snr_to_nsr(config.snr_db, config.snr_mode)).float()
        if config.learn_nsr:
            self.log_nsr = nn.Parameter(log_nsr)
        else:
            self.register_buffer("log_nsr", log_nsr)
        c, k = config.channels, config.kernel_size
        in_channels = feature_channels(num_snr, config.image_channels)
        out_channels = config.image_channels + (1 + num_snr if config.head == "mix" else 0)
        self.conv_in = nn.Conv2d(in_channels, c, k, padding=k // 2)
        self.context = ContextBranch(c, config.context_levels) if config.context_levels else None
        self.blocks = nn.Sequential(*(ResBlock(c, k, config.dropout) for _ in range(config.blocks)))
        self.conv_out = nn.Conv2d(c, out_channels, k, padding=k // 2)
        self.conditioning = (
            NoiseConditioning(c, config.blocks + 1) if config.noise_conditioning else None
        )
        self.stages = (
            UnrolledStages(
                config.stages,
                config.stage_channels,
                config.stage_levels,
                config.stage_strength,
                config.image_channels,
            )
            if config.stages
            else None
        )
        if config.head == "mix":
            nn.init.zeros_(self.conv_out.weight)
            nn.init.zeros_(self.conv_out.bias)
            with torch.no_grad():
                logits = self.conv_out.bias[config.image_channels :]
                logits[1:][torch.tensor(config.snr_db) > MIX_START_SNR_DB] = -3.0

    @property
    def nsr(self) -> torch.Tensor:
        """The Wiener bank's noise-to-signal ratios [S]."""
        return self.log_nsr.exp()

    def features(self, blurred: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
        """The network's input [B, 3 + 3 S, H, W] (see `pydeblur.features`), always in float32 or
        float64: autocast (bf16 training) applies to the network, not to the padding and FFTs."""
        with torch.autocast(blurred.device.type, enabled=False):
            return wiener_features(blurred, psf, self.nsr.float(), self.config.margin)

    def forward(self, blurred: torch.Tensor, psf: torch.Tensor) -> torch.Tensor:
        """blurred [B, 3, H, W], psf [B, 1, kh, kw] -> deblurred [B, 3, H, W]: `network`, then
        `refine`."""
        return self.refine(self.network(blurred, psf), blurred, psf)

    @property
    def refines(self) -> bool:
        """Whether `refine` changes anything (the config has stages or a data-consistency step)."""
        return self.stages is not None or self.config.data_consistency > 0

    def refine(
        self,
        estimate: torch.Tensor,
        blurred: torch.Tensor,
        psf: torch.Tensor,
        sigma: torch.Tensor | None = None,
        strength: float = 1.0,
        run: Runner | None = None,
        trusted: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The steps after `network` that use the data again: estimate [B, C, H, W] pulled toward
        blurred [B, C, H, W] by the unrolled stages (`pydeblur.unrolled`) or the data-consistency step
        (`pydeblur.consistency`), at noise sigma [B] (estimated from blurred unless given). strength
        divides their data weights' denominators (above 1: sharper and noisier). Their FFTs span the
        whole image, so tiled inference runs `network` per tile and this once; `run(function,
        inputs)` says how the stages' U-Nets are applied (default: at once); `trusted` [B, C or 1,
        H, W] marks the pixels whose data hold (0: clipped highlights, left out of the data terms).
        The estimate unchanged when the config has neither."""
        if not self.refines:
            return estimate
        blurred = blurred.to(estimate.dtype)
        if sigma is None:
            sigma = estimate_noise_sigma(blurred)
        if self.stages is not None:
            return self.stages(estimate, blurred, psf, sigma, strength, run or at_once, trusted)
        return data_consistency(
            estimate,
            blurred,
            psf,
            self.config.data_consistency / strength,
            sigma,
            trusted,
            self.config.boundary_adjustment,
        )

    def receptive_radius(self) -> int:
        """Pixels on each side that influence one output pixel of `network` (the full-resolution
        convolutions' half-widths, the context branch's reach and the bilateral tail's half-width),
        or of a stage's U-Net if that sees farther: inference tiles both with the same overlap."""
        tail = TAIL_KERNEL_SIZE // 2 if self.config.bilateral_tail else 0
        reach = self.context.reach if self.context is not None else 0
        network = tail + reach + conv_radius(self, skip=(self.context, self.stages))
        return max(network, self.stages.reach if self.stages is not None else 0)

    def bytes_per_pixel(self) -> int:
        """Estimated working memory of `network` per pixel of a (padded) tile."""
        lower = self.context.activation_channels if self.context is not None else 0
        return conv_bytes_per_pixel(self, skip=(self.context, self.stages)) + int(4 * lower)

    def network(
        self, blurred: torch.Tensor, psf: torch.Tensor, noise: torch.Tensor | None = None
    ) -> torch.Tensor:
        """blurred [B, 3, H, W], psf [B, 1, kh, kw] -> [B, 3, H, W]: everything but `refine`. noise:
        the `noise_descriptor` [B, 2] of the whole image, for a network with noise conditioning that
        runs on a part of it (default: that of blurred)."""
        cfg = self.config
        if blurred.dim() != 4 or blurred.shape[1] != cfg.image_channels:
            raise ValueError(
                f"blurred must be [B, {cfg.image_channels}, H, W], got shape {tuple(blurred.shape)}"
            )
        feats = self.features(blurred, psf)
        if cfg.clamp_features:
            n = cfg.image_channels
            feats = torch.cat([feats[:, :n], feats[:, n:].clamp(-0.5, 1.5)], dim=1)
        if cfg.normalize_input:
            mean = blurred.mean(dim=(1, 2, 3), keepdim=True)
            std = blurred.std(dim=(1, 2, 3), keepdim=True).clamp_min(1e-3)
            feats = (feats - mean) / std
        hidden = self.conv_in(feats)
        if self.context is not None:
            hidden = hidden + self.context(hidden)
        if self.conditioning is None:
            trunk = self.conv_out(self.blocks(hidden))
        else:
            if noise is None:
                noise = noise_descriptor(blurred)
            film = self.conditioning.parameters_for(noise.to(blurred.device))
            for position, block in enumerate(self.blocks):
                hidden = block(self.conditioning(hidden, film, position))
            trunk = self.conv_out(self.conditioning(hidden, film, len(self.blocks)))
        trunk = trunk.float() if feats.dtype != trunk.dtype else trunk
        if cfg.head == "direct":
            out = trunk
        else:
            n = cfg.image_channels
            bank = feats.unflatten(
                1, (-1, n)
            )  # [B, 1 + S, C, H, W]: blurred, then the Wiener images
            weights = torch.softmax(trunk[:, n:].float(), dim=1).unsqueeze(2)  # [B, 1 + S, 1, H, W]
            out = (weights * bank.float()).sum(dim=1) + trunk[:, :n]
        if cfg.normalize_input:
            out = out * std + mean
        if cfg.bilateral_tail:
            # The window's reflection padding needs half the window inside the image: images under
            # 4 pixels a side get the largest window that fits.
            size = min(TAIL_KERNEL_SIZE, 2 * min(out.shape[-2:]) - 1)
            # The inputs were checked by wiener_bank; checking the network's output again would
            # cost a second GPU synchronisation per forward.
            with ops.skip_value_checks():
                out = ops.bilateral_filter(out, kernel_size=size)
        return out.to(blurred.dtype)


Skipped = nn.Module | tuple[nn.Module | None, ...] | None


def _full_resolution_convs(module: nn.Module, skip: Skipped) -> list[nn.Conv2d]:
    parts = skip if isinstance(skip, tuple) else (skip,)
    inside = {id(sub) for part in parts if part is not None for sub in part.modules()}
    return [m for m in module.modules() if isinstance(m, nn.Conv2d) and id(m) not in inside]


def conv_radius(module: nn.Module, skip: Skipped = None) -> int:
    """The receptive radius of `module`'s convolutions (outside `skip`) as a chain: the sum of their
    half-widths times dilation. Exact for a chain with residual additions, which do not widen it.

    >>> conv_radius(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 3, 5)))
    3
    """
    convs = _full_resolution_convs(module, skip)
    return sum((conv.kernel_size[0] - 1) // 2 * conv.dilation[0] for conv in convs)


def conv_bytes_per_pixel(module: nn.Module, skip: Skipped = None) -> int:
    """Working memory per pixel of a forward pass with the Wiener features and `LIVE_ACTIVATIONS`
    float32 maps of the widest full-resolution convolution (outside `skip`; 64 channels if none).

    >>> conv_bytes_per_pixel(nn.Conv2d(48, 32, 3))
    1112
    """
    from pydeblur.tiling import FEATURE_BYTES_PER_PIXEL, LIVE_ACTIVATIONS

    convs = _full_resolution_convs(module, skip)
    widest = max((conv.out_channels for conv in convs), default=64)
    return FEATURE_BYTES_PER_PIXEL + LIVE_ACTIVATIONS * 4 * widest


def get_config(name: str) -> ModelConfig:
    """The named configuration from `CONFIGS`, with a clear error listing the names.

    >>> get_config("tiny").blocks, get_config("paper").channels
    (1, 64)
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    return CONFIGS[name]
