"""Deblur a real photo: any array kind, dtype and size, on CPU or CUDA.

`deblur(image, psf)` is the one call a user needs. It converts the image to float RGB in [0, 1], runs the
network (whose forward pass pads for non-periodic boundaries and computes the Wiener features itself) on
overlapping tiles whose size fits the free memory, blends the tiles, and gives the result back in the
caller's kind, dtype, range and layout.
"""

from __future__ import annotations

import ctypes
import functools
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

# A float image outside [-SLACK, 1 + SLACK] is not a [0, 1] image (noise may push a blurred image a little
# outside the range; a 0..255 float image is refused rather than silently clipped).
FLOAT_RANGE_SLACK = 0.25
# Working memory per pixel of a padded tile in the forward pass = FEATURE_BYTES_PER_PIXEL (the Wiener bank,
# its spectra and the 48-channel stack) + LIVE_ACTIVATIONS float32 maps of the widest layer: 1.1 kB for
# the default configuration (32 channels), 1.6 kB for the paper's (64), about 30 % above the peak RSS
# measured for forward passes on 512- and 1024-pixel tiles (docs/deblur.md), to stay on the safe side;
# a context branch adds its own maps (ContextBranch.activation_channels).
FEATURE_BYTES_PER_PIXEL = 600
LIVE_ACTIVATIONS = 4
# Tiles on a CPU stop growing at this working set. Untuned, every tile's tensors are page-faulted in
# afresh, so larger tiles mostly add faults; tuned (`tune_allocator`), larger tiles waste less work on
# the overlap: a 12-megapixel photo with the default model took 72 s with 1 GiB, 61 s with 1.5 GiB and
# 54 s with 2 GiB, peaking at 1.7, 2.0 and 2.2 GB of RSS; 51 s and 2.3 GB at 2 GiB with the corrected
# per-pixel estimate (docs/deblur.md).
CPU_MEMORY_CAP = 3 * 1024**3 // 2
CPU_MEMORY_CAP_TUNED = 2 * 1024**3
_allocator_tuned = False
# Pixels over which neighbouring tiles cross-fade: both are exact there (the discarded bands hold the
# tile borders' reach), so a short ramp only has to hide the Wiener filters' canvas-size differences.
BLEND_RAMP = 32
MAX_TILE = 4096
MIN_TILE = 64

# ------------------------------------------------------------------------------------------------------
# The caller's image <-> a float32 [N, 3, H, W] tensor


@dataclass(frozen=True)
class _Form:
    """How the caller's image was laid out, to give the result back alike."""

    is_torch: bool
    dtype: np.dtype | torch.dtype
    shape: tuple[int, ...]
    channels: int  # 1 (grey), 3 (RGB) or 4 (RGBA) as given
    device: torch.device | None


_TORCH_INTEGERS = {torch.uint8: 255.0}
if hasattr(torch, "uint16"):
    _TORCH_INTEGERS[torch.uint16] = 65535.0
_TORCH_FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _scale_of(dtype) -> float | None:
    """Full scale of an integer sample type; None for a float type; TypeError for anything else."""
    if isinstance(dtype, torch.dtype):
        if dtype in _TORCH_INTEGERS:
            return _TORCH_INTEGERS[dtype]
        if dtype in _TORCH_FLOATS:
            return None
    else:
        if dtype in (np.uint8, np.uint16):
            return float(np.iinfo(dtype).max)
        if dtype in (np.float16, np.float32, np.float64):
            return None
    raise TypeError(
        f"image has sample type {dtype}; expected uint8, uint16 or a float type with values in [0, 1]"
    )


def _to_batch(image) -> tuple[torch.Tensor, torch.Tensor | None, _Form]:
    """The caller's image -> (colour [N, C, H, W] float32 in [0, 1] with C 1 or 3, alpha or None, form).

    NumPy arrays are HxW, HxWx1, HxWx3 or HxWx4; torch tensors are [H, W], [C, H, W] or [B, C, H, W]
    with C 1, 3 or 4 (the torchvision layout).
    """
    if isinstance(image, np.ndarray):
        form_device, is_torch = None, False
        given_dtype = image.dtype
        if not image.dtype.isnative:  # big-endian data: torch holds native byte order only
            image = image.astype(image.dtype.newbyteorder("="))
        if image.ndim == 2:
            data = image[None, None]
        elif image.ndim == 3 and image.shape[2] in (1, 3, 4):
            data = np.moveaxis(image, 2, 0)[None]
        else:
            raise ValueError(
                f"image must be HxW, HxWx1, HxWx3 or HxWx4, got an array of shape {image.shape}"
            )
        scale = _scale_of(image.dtype)
        tensor = torch.from_numpy(np.ascontiguousarray(data))
    elif isinstance(image, torch.Tensor):
        form_device, is_torch = image.device, True
        scale = _scale_of(image.dtype)
        if image.dim() == 2:
            tensor = image[None, None]
        elif image.dim() in (3, 4) and image.shape[-3] in (1, 3, 4):
            tensor = image[None] if image.dim() == 3 else image
        else:
            raise ValueError(
                "image must be a tensor [H, W], [C, H, W] or [B, C, H, W] with C = 1, 3 or 4, got "
                f"shape {tuple(image.shape)}"
            )
        tensor = tensor.detach().cpu()
    else:
        raise TypeError(
            f"image must be a NumPy array or a torch tensor, got {type(image).__name__}"
        )

    if tensor.shape[-1] == 0 or tensor.shape[-2] == 0 or tensor.shape[0] == 0:
        raise ValueError(f"image is empty: shape {tuple(image.shape)}")
    channels = tensor.shape[1]
    dtype = image.dtype if is_torch else given_dtype
    form = _Form(is_torch, dtype, tuple(image.shape), channels, form_device)
    alpha = tensor[:, 3:4] if channels == 4 else None
    colour = tensor[:, :3] if channels == 4 else tensor
    colour = colour.to(torch.float32)
    if scale is not None:
        colour /= scale
    else:
        low, high = (float(v) for v in torch.aminmax(colour))  # NaN propagates into both
        if not (math.isfinite(low) and math.isfinite(high)):
            raise ValueError("image contains NaN or infinite values")
        if low < -FLOAT_RANGE_SLACK or high > 1 + FLOAT_RANGE_SLACK:
            raise ValueError(
                f"a float image must hold values in [0, 1], this one spans [{low:.3g}, {high:.3g}] "
                "(divide an 8-bit-range image by 255)"
            )
    return colour, alpha, form


def _from_batch(colour: torch.Tensor, alpha: torch.Tensor | None, form: _Form):
    """Inverse of `_to_batch`: float [N, 3, H, W] (any range) -> the caller's kind, dtype and layout."""
    colour = colour.clamp_(0.0, 1.0)
    if form.channels == 1:  # grey in: grey out
        colour = colour.mean(dim=1, keepdim=True)
    scale = _scale_of(form.dtype if form.is_torch else form.dtype.newbyteorder("="))
    if scale is not None:
        colour = colour.mul_(scale).round_()
    if form.is_torch:
        colour = colour.to(form.dtype)
        result = colour if alpha is None else torch.cat([colour, alpha], dim=1)
        result = result.reshape(form.shape).to(form.device)
        return result
    array = colour.numpy()
    array = array.astype(form.dtype, copy=False)
    if alpha is not None:
        array = np.concatenate([array, alpha.numpy()], axis=1)
    array = np.moveaxis(array[0], 0, 2)
    return np.ascontiguousarray(array.reshape(form.shape))


# ------------------------------------------------------------------------------------------------------
# Kernel, device and model


def _as_psf(psf, image_shape: tuple[int, int]) -> torch.Tensor:
    """A kernel as [kh, kw] float32 summing to 1, from an array, a tensor or a kernel file, validated
    by `pydeblur.psf.check_psf` (2-D, finite, non-negative, positive sum, no larger than the image)."""
    from pydeblur.psf import check_psf, read_psf

    if isinstance(psf, (str, os.PathLike)):
        psf = read_psf(psf)
    elif isinstance(psf, torch.Tensor):
        psf = psf.detach().cpu().double().numpy()
    elif not isinstance(psf, np.ndarray):
        raise TypeError(
            f"psf must be a 2-D NumPy array, a torch tensor or a kernel file, got {type(psf).__name__}"
        )
    if psf.ndim == 4 and psf.shape[:2] == (1, 1):
        psf = psf[0, 0]
    return torch.from_numpy(check_psf(psf, "psf", image_shape))


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """ "auto": the first CUDA GPU when pydeblur has CUDA kernels and a GPU is present, else the CPU."""
    from pydeblur.ops._library import HAS_CUDA_KERNELS

    if device == "auto" or device is None:
        use_cuda = HAS_CUDA_KERNELS and torch.cuda.is_available()
        return torch.device("cuda" if use_cuda else "cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(
            f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}"
        ) from error
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"device {str(device)!r} was asked for but no CUDA GPU is available")
        if not HAS_CUDA_KERNELS:
            raise RuntimeError(
                f"device {str(device)!r} was asked for but pydeblur was built without its CUDA kernels"
            )
    elif device.type != "cpu":
        raise ValueError(f"device must be 'auto', 'cpu' or a CUDA device, got {str(device)!r}")
    return device


@functools.lru_cache(maxsize=4)
def _load_cached(name: str, stamp: float | None, device: torch.device) -> torch.nn.Module:
    from pydeblur.model import load_model

    return load_model(name, device).eval()


def resolve_model(
    model: str | os.PathLike | torch.nn.Module, device: torch.device
) -> torch.nn.Module:
    """A network on `device`: a module as given (moved there if it lives elsewhere), or a shipped
    name or weights file loaded by `pydeblur.model.load_model` (in eval mode).

    Loaded models are cached per (name or path, file time, device), so repeated calls do not reload.
    """
    if isinstance(model, torch.nn.Module):
        return model if _module_device(model) == device else model.to(device)
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a name, a weights file or a torch.nn.Module, got {type(model).__name__}"
        )
    path = Path(model)
    stamp = path.stat().st_mtime if path.is_file() else None
    try:
        return _load_cached(str(model), stamp, device)
    except (OSError, ValueError, TypeError):
        raise
    except Exception as error:  # the safetensors reader's own errors name no file
        raise ValueError(f"{model}: not a pydeblur weights file ({error})") from error


def _module_device(model: torch.nn.Module) -> torch.device:
    """Where a module's parameters (or buffers) live; the CPU for a module with neither."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _split_scales(model: torch.nn.Module) -> tuple[list, list[torch.nn.Conv2d]]:
    """The model's multi-scale parts (modules with a `reach` attribute, such as ContextBranch) and its
    convolutions outside them, which work at full resolution."""
    multiscale = [m for m in model.modules() if hasattr(m, "reach")]
    inside = {id(sub) for m in multiscale for sub in m.modules()}
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d) and id(m) not in inside]
    return multiscale, convs


def receptive_radius(model: torch.nn.Module) -> int:
    """Pixels on each side that influence one output pixel: the sum of the convolutions' half-widths,
    plus the `reach` of multi-scale parts (modules with a `reach` attribute, such as ContextBranch),
    plus the half-width of a DeblurNet's bilateral tail.

    Exact for a chain of convolutions with residual additions (which do not widen the field).
    """
    from pydeblur.model import TAIL_KERNEL_SIZE

    multiscale, convs = _split_scales(model)
    config = getattr(model, "config", None)
    tail = TAIL_KERNEL_SIZE // 2 if getattr(config, "bilateral_tail", False) else 0
    return (
        tail
        + sum(m.reach for m in multiscale)
        + sum((conv.kernel_size[0] - 1) // 2 * conv.dilation[0] for conv in convs)
    )


# ------------------------------------------------------------------------------------------------------
# Tiling


def default_overlap(model: torch.nn.Module, psf_shape: tuple[int, int]) -> int:
    """Pixels shared by neighbouring tiles: twice the reach of a tile border plus the blending ramp
    (`blend_weights`), so that the band each tile discards holds the network's receptive field and the
    reach of the tile-border disturbance through the Wiener filters, which grows with the kernel size.
    (A data-consistency step runs once on the whole image, after the tiles: `_run_tiled`.)"""
    reach = receptive_radius(model) + 2 * max(psf_shape)
    return int(math.ceil((2 * reach + BLEND_RAMP) / 8) * 8)


def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * 0.6)
    cap = CPU_MEMORY_CAP_TUNED if _allocator_tuned else CPU_MEMORY_CAP
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    return min(available // 2, cap)
    except OSError:
        pass
    return cap // 2


def bytes_per_pixel(model: torch.nn.Module) -> int:
    """Estimated working memory per pixel of a (padded) tile in the forward pass."""
    multiscale, convs = _split_scales(model)
    widest = max((conv.out_channels for conv in convs), default=64)  # full-resolution maps
    lower_resolution = sum(m.activation_channels for m in multiscale)
    return int(FEATURE_BYTES_PER_PIXEL + LIVE_ACTIVATIONS * 4 * widest + 4 * lower_resolution)


def auto_tile(
    model: torch.nn.Module,
    psf_shape: tuple[int, int],
    device: torch.device,
    max_memory: int | None = None,
) -> int:
    """The largest square tile whose forward pass fits in `max_memory` bytes (default: from the free
    memory of `device`; on a CPU at most 1.5 GiB, or 2 GiB once `tune_allocator` took effect)."""
    budget = max_memory if max_memory is not None else _available_bytes(device)
    padded = int(math.sqrt(budget / bytes_per_pixel(model)))
    tile = padded - 2 * max(psf_shape)
    return max(MIN_TILE, min(MAX_TILE, tile // 8 * 8))


def check_tile(tile: int, overlap: int) -> None:
    """Tiles must be integers at least twice the overlap (else they would be mostly overlap)."""
    if not isinstance(tile, int) or not isinstance(overlap, int) or overlap < 0 or tile < 1:
        raise ValueError(
            f"tile and overlap must be positive integers, got {tile!r} and {overlap!r}"
        )
    if tile < 2 * overlap:
        raise ValueError(
            f"tile ({tile}) must be at least twice the overlap between tiles ({overlap}); use a larger "
            "tile or a smaller overlap"
        )


def tile_layout(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """Tiles covering [0, length) along one axis: (start offsets, span), with span <= `tile` and
    neighbours sharing >= `overlap` pixels. The span is the smallest that needs no more tiles than
    `tile` would, so no tile is mostly wasted context."""
    if length <= tile:
        return [0], length
    count = math.ceil((length - overlap) / (tile - overlap))
    span = math.ceil((length + (count - 1) * overlap) / count)
    step = (length - span) / (count - 1)
    return [round(i * step) for i in range(count)], span


def blend_weights(length: int, starts: list[int], span: int, overlap: int) -> list[torch.Tensor]:
    """Per tile, a 1-D weight over its span; the weights of all tiles sum to 1 at every position.

    At a side shared with a neighbour, a tile's weight is 0 over the first (overlap - ramp) / 2 pixels of
    the overlap (spoiled by the tile border), then ramps linearly to 1 over `ramp` = min(BLEND_RAMP,
    overlap / 3) pixels; the neighbour's weight does the mirror image, so the two ramps coincide.
    """
    ramp = min(BLEND_RAMP, overlap // 3)
    discard = (overlap - ramp) // 2
    ramp = overlap - 2 * discard
    rising = (torch.arange(ramp, dtype=torch.float32) + 0.5) / ramp
    weights = []
    for start in starts:
        weight = torch.ones(span)
        if start > 0:
            weight[:discard] = 0
            weight[discard : discard + ramp] = rising
        if start + span < length:
            weight[span - discard :] = 0
            weight[span - discard - ramp : span - discard] = rising.flip(0)
        weights.append(weight)
    total = torch.zeros(length)
    for start, weight in zip(starts, weights, strict=True):
        total[start : start + span] += weight
    return [
        weight / total[start : start + span] for start, weight in zip(starts, weights, strict=True)
    ]


def _run_tiled(
    net: torch.nn.Module,
    colour: torch.Tensor,
    psf: torch.Tensor,
    device: torch.device,
    tile: int,
    overlap: int,
) -> torch.Tensor:
    """colour [1, 3, H, W] (CPU) -> deblurred [1, 3, H, W] (CPU), tile by tile with blending; a
    DeblurNet's data-consistency step then runs once on the whole image."""
    _, _, height, width = colour.shape
    strength = getattr(getattr(net, "config", None), "data_consistency", 0.0)
    run = net.network if strength > 0 else net
    rows, row_span = tile_layout(height, tile, overlap)
    cols, col_span = tile_layout(width, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        out = run(colour.contiguous().to(device), psf).float().cpu()
    else:
        row_weights = blend_weights(height, rows, row_span, overlap)
        col_weights = blend_weights(width, cols, col_span, overlap)
        out = torch.zeros(1, 3, height, width)
        for top, row_weight in zip(rows, row_weights, strict=True):
            for left, col_weight in zip(cols, col_weights, strict=True):
                window = (
                    slice(None),
                    slice(None),
                    slice(top, top + row_span),
                    slice(left, left + col_span),
                )
                result = run(colour[window].contiguous().to(device), psf).float().cpu()
                out[window] += result * (row_weight[:, None] * col_weight)
    if strength > 0:
        out = _consistent(out, colour, psf, strength, device)
    return out


def _consistent(
    estimate: torch.Tensor, colour: torch.Tensor, psf: torch.Tensor, strength: float, device
) -> torch.Tensor:
    """The data-consistency step on the whole image, one channel at a time: its float64 spectra of a
    12-megapixel photo take about 1 GB per channel. The noise is estimated once, from all channels,
    as `DeblurNet.forward` does."""
    from pydeblur.baselines import estimate_noise_sigma
    from pydeblur.consistency import data_consistency

    sigma = estimate_noise_sigma(colour).to(device)
    channels = [
        data_consistency(
            estimate[:, c : c + 1].to(device), colour[:, c : c + 1].to(device), psf, strength, sigma
        ).cpu()
        for c in range(estimate.shape[1])
    ]
    return torch.cat(channels, dim=1)


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system at once.

    Without it, every large tensor of every tile is mapped afresh and page-faulted in: on these CPUs that
    doubled the CPU time of a tiled run (docs/deblur.md). The setting is process-wide (memory freed
    later stays with the process), so the `pydeblur` commands call it and a library caller may. The
    retained heap is reused by the next tile, so CPU tiles are then sized for 2 GiB instead of 1.5 GiB.
    Returns whether it took effect (False off glibc).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    global _allocator_tuned
    m_trim_threshold, m_mmap_max = -1, -4  # from glibc's malloc.h
    no_mmap = libc.mallopt(m_mmap_max, 0) == 1
    _allocator_tuned = no_mmap and libc.mallopt(m_trim_threshold, 1 << 30) == 1
    return _allocator_tuned


# ------------------------------------------------------------------------------------------------------


def deblur(
    image,
    psf,
    model: str | os.PathLike | torch.nn.Module = "default",
    device: str | torch.device = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    max_memory: int | None = None,
):
    """Deblur `image`, blurred by the known kernel `psf`, with pydeblur's network.

    Args:
        image: NumPy HxW, HxWx1, HxWx3 or HxWx4 array, or torch [H, W], [C, H, W] or [B, C, H, W]
            tensor (C = 1, 3 or 4); uint8, uint16, or float with values in [0, 1]. Grey images are
            deblurred as RGB and averaged back; an alpha channel is passed through untouched.
        psf: the blur kernel, [kh, kw], non-negative (normalised to sum 1 here), centre at
            (kh // 2, kw // 2); an array, a tensor, or a kernel file (.npy/.png/.txt/.csv/.mat).
        model: "default" (the shipped weights), another shipped name, a weights file, or a module
            with forward(blurred [B, 3, H, W], psf [B, 1, kh, kw]) -> [B, 3, H, W] (run in eval
            mode and handed back in its own mode).
        device: "auto" (CUDA when pydeblur has CUDA kernels and a GPU is present; for a module: where
            it lives), "cpu", "cuda:N" (a module living elsewhere is moved there).
        tile: tile side in pixels; None picks the largest that fits the free memory (a whole image
            that fits is one tile).
        overlap: pixels shared by neighbouring tiles; None derives it from the kernel size and the
            network's receptive field.
        max_memory: bytes of working memory to size tiles by (with tile=None).

    Returns:
        The deblurred image in the kind, dtype, shape, value range and device of `image`.
    """
    for name, value, least in (
        ("tile", tile, 1),
        ("overlap", overlap, 0),
        ("max_memory", max_memory, 1),
    ):
        if value is not None and (
            not isinstance(value, int) or isinstance(value, bool) or value < least
        ):
            raise ValueError(f"{name} must be an integer >= {least} or None, got {value!r}")
    colour, alpha, form = _to_batch(image)
    height, width = colour.shape[-2:]
    kernel = _as_psf(psf, (height, width))
    kh, kw = kernel.shape
    if isinstance(model, torch.nn.Module) and device in ("auto", None):
        target = _module_device(model)  # a module given runs where it lives
    else:
        target = resolve_device(device)
    net = resolve_model(model, target)
    if overlap is None:
        overlap = default_overlap(net, (kh, kw))
    if tile is None:  # the memory budget yields to the overlap: tiles of less are mostly overlap
        tile = max(auto_tile(net, (kh, kw), target, max_memory), 2 * overlap)
    if tile < height or tile < width:
        check_tile(tile, overlap)
    kernel = kernel[None, None].to(target)
    results = []
    was_training = net.training
    net.eval()
    try:
        with (
            torch.no_grad()
        ):  # not inference_mode: its tensors could not enter the caller's autograd
            for index in range(colour.shape[0]):
                rgb = colour[index : index + 1].expand(1, 3, height, width)
                results.append(_run_tiled(net, rgb, kernel, target, tile, overlap))
    finally:
        net.train(was_training)  # a module given mid-training is handed back as it was
    return _from_batch(results[0] if len(results) == 1 else torch.cat(results), alpha, form)
