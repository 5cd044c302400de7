"""Boundary handling for circular (FFT) deconvolution of real, non-periodic images.

The Wiener bank treats its input as periodic: the jump between the left and right (top and bottom)
edges of a real photo is a sharp edge that the inverse filter amplifies into ringing bands along the
borders. `pad_periodic` extends the image into a larger canvas that wraps around smoothly (every row
and column of the canvas is continuous across the wrap), deconvolution runs on the canvas, and `crop`
cuts the original frame back out.

The extension, in the spirit of Liu & Jia (2008, "Reducing boundary artifacts in image
deconvolution"), is built one axis at a time: the gap between the last and the first pixel of a row
(through the wrap) is filled by a cross-fade between the mirror image of the row's end and the mirror
image of its start, with a smoothstep weight, so the canvas is continuous at both image edges and across
the wrap. Far from the image, where the two mirrored textures meet, the fill is blended towards a
strongly low-passed copy of itself, which removes the texture seam; near the image it keeps the local
texture, whose statistics match the blur and noise of the photo (a purely smooth fill, as in Liu & Jia,
leaves a texture discontinuity at the image edge that rings too).
"""

from typing import NamedTuple

import torch
import torch.nn.functional as F


class Padding(NamedTuple):
    """Pixels added on each side: the image sits at rows top..top+H, columns left..left+W.

    >>> padding = Padding(top=7, bottom=13, left=7, right=11)
    >>> padding.top + padding.bottom, tuple(padding)
    (20, (7, 13, 7, 11))
    """

    top: int
    bottom: int
    left: int
    right: int


def fast_fft_size(n: int) -> int:
    """The smallest integer >= n whose prime factors are 2, 3 and 5 (fast for pocketfft and cuFFT).

    >>> fast_fft_size(97), fast_fft_size(128), fast_fft_size(241)
    (100, 128, 243)
    """
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    size = n
    while True:
        m = size
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return size
        size += 1


def padding_for(
    height: int, width: int, psf_size: tuple[int, int], margin: int | None = None
) -> Padding:
    """The padding `pad_periodic` uses for an image of height x width and a PSF of psf_size (kh, kw).

    Each side gets at least `margin` pixels (default: the PSF's larger side), and the padded size is
    rounded up to a fast FFT size; the extra pixels go to the bottom and right.

    >>> padding_for(100, 90, (7, 5))  # 114 -> 120 rows, 104 -> 108 columns
    Padding(top=7, bottom=13, left=7, right=11)
    """
    kh, kw = psf_size
    margin = max(kh, kw) if margin is None else margin
    if margin < 1:
        raise ValueError(f"margin must be at least 1, got {margin}")
    padded_h = fast_fft_size(height + 2 * margin)
    padded_w = fast_fft_size(width + 2 * margin)
    return Padding(margin, padded_h - height - margin, margin, padded_w - width - margin)


def _reflect_index(index: torch.Tensor, n: int) -> torch.Tensor:
    """Map any integer index onto 0..n-1 by mirror reflection without repeating the edge sample."""
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index < n, index, period - index)


def _fill_last_axis(x: torch.Tensor, before: int, after: int) -> torch.Tensor:
    """Extend the last axis of x by before + after samples so that it wraps around continuously."""
    n = x.shape[-1]
    gap = before + after
    if gap == 0:
        return x
    t = torch.arange(gap, device=x.device)
    # Gap sample t sits t + 1 samples after the last image sample and gap - t samples before the first.
    from_end = _reflect_index(n - 2 - t, n)
    from_start = _reflect_index(gap - t, n)
    s = (t + 1).to(x.dtype) / (gap + 1)
    weight = s * s * (3 - 2 * s)  # smoothstep: 0 next to the end of the image, 1 next to its start
    fill = x[..., from_end] * (1 - weight) + x[..., from_start] * weight
    # Blend towards a smooth copy away from the image: hides the seam where the two mirrors meet.
    smooth = _box_smooth_last(fill, max(1, gap // 4))
    far = torch.sin(torch.pi * (t + 1).to(x.dtype) / (gap + 1)) ** 2
    fill = fill + far * (smooth - fill)
    # Gap samples 0..after-1 follow the image (right/bottom pad), the rest precede it (left/top pad).
    return torch.cat([fill[..., after:], x, fill[..., :after]], dim=-1)


def _box_smooth_last(x: torch.Tensor, radius: int) -> torch.Tensor:
    """Two passes of a box filter of width 2 radius + 1 along the last axis, replicate border."""
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    kernel = torch.full(
        (1, 1, 2 * radius + 1), 1.0 / (2 * radius + 1), dtype=x.dtype, device=x.device
    )
    for _ in range(2):
        flat = F.conv1d(F.pad(flat, (radius, radius), mode="replicate"), kernel)
    return flat.reshape(shape)


def pad_periodic(
    image: torch.Tensor, psf_size: tuple[int, int], margin: int | None = None
) -> tuple[torch.Tensor, Padding]:
    """Extend [B, C, H, W] images into a canvas that is smooth across its periodic wrap.

    psf_size: (kh, kw) of the PSF that will deconvolve the canvas; margin: pixels added on each side
    (default the PSF's larger side). Returns the canvas [B, C, H + top + bottom, W + left + right] and
    the `Padding`, for `crop`.

    >>> canvas, padding = pad_periodic(torch.rand(1, 3, 20, 30), (5, 5))
    >>> canvas.shape, padding
    (torch.Size([1, 3, 30, 40]), Padding(top=5, bottom=5, left=5, right=5))
    """
    if not isinstance(image, torch.Tensor) or image.dim() != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise ValueError(f"image must be a [B, C, H, W] tensor, got {shape}")
    if not image.is_floating_point():
        raise TypeError(f"image must be a floating-point tensor, got {image.dtype}")
    height, width = image.shape[-2:]
    if height < 2 or width < 2:
        raise ValueError(f"image must be at least 2x2 pixels, got {height}x{width}")
    padding = padding_for(height, width, psf_size, margin)
    rows = _fill_last_axis(image, padding.left, padding.right)
    canvas = _fill_last_axis(rows.transpose(-1, -2), padding.top, padding.bottom).transpose(-1, -2)
    return canvas.contiguous(), padding


def crop(canvas: torch.Tensor, padding: Padding) -> torch.Tensor:
    """Cut the original frame out of a padded canvas [..., H', W'] (the inverse of `pad_periodic`):
    -> [..., H' - top - bottom, W' - left - right].

    >>> image = torch.rand(2, 3, 16, 12)
    >>> torch.equal(crop(*pad_periodic(image, (3, 3))), image)
    True
    """
    height = canvas.shape[-2] - padding.top - padding.bottom
    width = canvas.shape[-1] - padding.left - padding.right
    if height < 1 or width < 1:
        raise ValueError(
            f"padding {tuple(padding)} is larger than the canvas {tuple(canvas.shape)}"
        )
    return canvas[..., padding.top : padding.top + height, padding.left : padding.left + width]


def embed(
    frame: torch.Tensor, padding: Padding, canvas_size: tuple[int, int], fill: float
) -> torch.Tensor:
    """A canvas [..., H', W'] of `fill` holding `frame` [..., H, W] where `pad_periodic` put the image
    (the inverse of `crop` for masks: which canvas pixels hold data).

    >>> embed(torch.ones(1, 1, 2, 2), Padding(1, 1, 1, 1), (4, 4), 0.0)[0, 0].int()
    tensor([[0, 0, 0, 0],
            [0, 1, 1, 0],
            [0, 1, 1, 0],
            [0, 0, 0, 0]], dtype=torch.int32)
    """
    height, width = frame.shape[-2:]
    canvas = frame.new_full((*frame.shape[:-2], *canvas_size), fill)
    canvas[..., padding.top : padding.top + height, padding.left : padding.left + width] = frame
    return canvas
