"""Running a network over an image too large for one pass: layout, blending, memory sizing, the run.

An image is cut into overlapping square tiles; each tile's border band, which the tile edge spoils
(the network's receptive field and the Wiener filters' reach), is discarded, and neighbours cross-fade
over a short ramp inside the overlap. `run_tiled` takes any function of a tile, so the same piece
serves every model. docs/deblur.md gives the measurements behind the constants.
"""

from __future__ import annotations

import ctypes
import math
import sys
from collections.abc import Callable

import torch

# Working memory per pixel of a padded tile in the forward pass = FEATURE_BYTES_PER_PIXEL (the Wiener bank,
# its spectra and the 48-channel stack) + LIVE_ACTIVATIONS float32 maps of the widest layer, about 30 %
# above the peak RSS measured (docs/deblur.md); a context branch adds its own maps.
FEATURE_BYTES_PER_PIXEL = 600
LIVE_ACTIVATIONS = 4
# Tiles on a CPU stop growing at this working set (docs/deblur.md: larger tiles mostly add page faults
# unless `tune_allocator` took effect).
CPU_MEMORY_CAP = 3 * 1024**3 // 2
CPU_MEMORY_CAP_TUNED = 2 * 1024**3
_allocator_tuned = False
# Pixels over which neighbouring tiles cross-fade: both are exact there (the discarded bands hold the
# tile borders' reach), so a short ramp only has to hide the Wiener filters' canvas-size differences.
BLEND_RAMP = 32
MAX_TILE = 4096
MIN_TILE = 64


def default_overlap(receptive_radius: int, psf_shape: tuple[int, int]) -> int:
    """Pixels shared by neighbouring tiles: twice the reach of a tile border plus the blending ramp, so
    that the band each tile discards holds the network's receptive field and the reach of the tile-border
    disturbance through the Wiener filters, which grows with the kernel size.

    >>> default_overlap(20, (31, 31))
    200
    """
    reach = receptive_radius + 2 * max(psf_shape)
    return int(math.ceil((2 * reach + BLEND_RAMP) / 8) * 8)


def available_bytes(device: torch.device) -> int:
    """Working memory to size tiles by: 60 % of a GPU's free memory; on a CPU half the available memory,
    at most `CPU_MEMORY_CAP` (`CPU_MEMORY_CAP_TUNED` once `tune_allocator` took effect).

    >>> 0 < available_bytes(torch.device("cpu")) <= CPU_MEMORY_CAP_TUNED
    True
    """
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


def auto_tile(bytes_per_pixel: int, psf_shape: tuple[int, int], budget: int) -> int:
    """The largest square tile (a multiple of 8 in MIN_TILE..MAX_TILE) whose padded forward pass fits
    in `budget` bytes at `bytes_per_pixel`.

    >>> auto_tile(1768, (34, 34), 2 * 1024**3)
    1032
    """
    padded = int(math.sqrt(budget / bytes_per_pixel))
    tile = padded - 2 * max(psf_shape)
    return max(MIN_TILE, min(MAX_TILE, tile // 8 * 8))


def check_tile(tile: int, overlap: int) -> None:
    """Tiles must be integers at least twice the overlap (else they would be mostly overlap).

    >>> check_tile(512, 300)
    Traceback (most recent call last):
    ValueError: tile (512) must be at least twice the overlap between tiles (300); use a larger tile or a smaller overlap
    """
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
    `tile` would, so no tile is mostly wasted context.

    >>> tile_layout(1000, 512, 128)
    ([0, 290, 581], 419)
    """
    if length <= tile:
        return [0], length
    count = math.ceil((length - overlap) / (tile - overlap))
    span = math.ceil((length + (count - 1) * overlap) / count)
    step = (length - span) / (count - 1)
    return [round(i * step) for i in range(count)], span


def blend_weights(length: int, starts: list[int], span: int, overlap: int) -> list[torch.Tensor]:
    """Per tile, a 1-D weight [span] over its span; the weights of all tiles sum to 1 at every position.

    At a side shared with a neighbour, a tile's weight is 0 over the first (overlap - ramp) / 2 pixels of
    the overlap (spoiled by the tile border), then ramps linearly to 1 over `ramp` = min(BLEND_RAMP,
    overlap / 3) pixels; the neighbour's weight does the mirror image, so the two ramps coincide.

    >>> first, second = blend_weights(100, [0, 40], 60, 20)
    >>> torch.allclose(first[40:] + second[:20], torch.ones(20))
    True
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


def run_tiled(
    run: Callable[[torch.Tensor], torch.Tensor], image: torch.Tensor, tile: int, overlap: int
) -> torch.Tensor:
    """`run` over image [1, C, H, W] (CPU) tile by tile, blended: [1, C', H, W] float32 on the CPU.

    run(tile [1, C, h, w] on the CPU) -> [1, C', h, w] on any device (any C'). An image no larger
    than `tile` is one call.

    >>> image = torch.rand(1, 3, 100, 90)
    >>> torch.allclose(run_tiled(lambda t: 2 * t, image, tile=48, overlap=12), 2 * image)
    True
    """
    height, width = image.shape[-2:]
    rows, row_span = tile_layout(height, tile, overlap)
    cols, col_span = tile_layout(width, tile, overlap)
    if len(rows) == 1 and len(cols) == 1:
        return run(image.contiguous()).float().cpu()
    row_weights = blend_weights(height, rows, row_span, overlap)
    col_weights = blend_weights(width, cols, col_span, overlap)
    out = None
    for top, row_weight in zip(rows, row_weights, strict=True):
        for left, col_weight in zip(cols, col_weights, strict=True):
            window = (
                slice(None),
                slice(None),
                slice(top, top + row_span),
                slice(left, left + col_span),
            )
            result = run(image[window].contiguous()).float().cpu()
            if out is None:
                out = torch.zeros(1, result.shape[1], height, width)
            out[window] += result * (row_weight[:, None] * col_weight)
    return out


def tune_allocator() -> bool:
    """Make glibc keep freed memory for reuse instead of returning it to the system at once.

    Without it, every large tensor of every tile is mapped afresh and page-faulted in: on these CPUs that
    doubled the CPU time of a tiled run (docs/deblur.md). The setting is process-wide (memory freed
    later stays with the process), so the `pydeblur` commands call it and a library caller may. The
    retained heap is reused by the next tile, so CPU tiles are then sized for 2 GiB instead of 1.5 GiB.
    Returns whether it took effect (False off glibc).

    >>> tune_allocator() in (True, False)
    True
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
