"""The caller's image <-> the float32 batch the network works on, and back in the caller's form.

`to_batch` takes a NumPy array (HxW, HxWx1, HxWx2, HxWx3, HxWx4) or a torch tensor ([H, W], [C, H, W],
[B, C, H, W]; C = 1, 2, 3 or 4) of uint8, uint16 or float in [0, 1], and gives the colour channels as
float32 [N, C, H, W] in [0, 1] (C = 1 or 3), the alpha channel apart (the second of grey+alpha, the
fourth of RGBA), and how to give the result back; `from_batch` does the reverse: same kind, dtype,
layout and device, alpha untouched, grey averaged back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

# A float image outside [-SLACK, 1 + SLACK] is not a [0, 1] image (noise may push a blurred image a little
# outside the range; a 0..255 float image is refused rather than silently clipped).
FLOAT_RANGE_SLACK = 0.25


@dataclass(frozen=True)
class _Form:
    """How the caller's image was laid out, to give the result back alike."""

    is_torch: bool
    dtype: np.dtype | torch.dtype
    shape: tuple[int, ...]
    channels: int  # 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA) as given
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


def to_batch(image) -> tuple[torch.Tensor, torch.Tensor | None, _Form]:
    """The caller's image -> (colour [N, C, H, W] float32 in [0, 1] with C 1 or 3, alpha or None, form).

    NumPy arrays are HxW, HxWx1, HxWx2 (grey+alpha), HxWx3 or HxWx4; torch tensors are [H, W],
    [C, H, W] or [B, C, H, W] with C 1, 2, 3 or 4 (the torchvision layout).

    >>> colour, alpha, form = to_batch(np.zeros((4, 5, 4), np.uint8))
    >>> tuple(colour.shape), tuple(alpha.shape), form.channels
    ((1, 3, 4, 5), (1, 1, 4, 5), 4)
    >>> colour, alpha, form = to_batch(torch.zeros(2, 4, 5))  # grey+alpha
    >>> tuple(colour.shape), tuple(alpha.shape), form.channels
    ((1, 1, 4, 5), (1, 1, 4, 5), 2)
    """
    if isinstance(image, np.ndarray):
        form_device, is_torch = None, False
        given_dtype = image.dtype
        if not image.dtype.isnative:  # big-endian data: torch holds native byte order only
            image = image.astype(image.dtype.newbyteorder("="))
        if image.ndim == 2:
            data = image[None, None]
        elif image.ndim == 3 and image.shape[2] in (1, 2, 3, 4):
            data = np.moveaxis(image, 2, 0)[None]
        else:
            raise ValueError(
                f"image must be HxW, HxWx1, HxWx2, HxWx3 or HxWx4, got an array of shape {image.shape}"
            )
        scale = _scale_of(image.dtype)
        tensor = torch.from_numpy(np.ascontiguousarray(data))
    elif isinstance(image, torch.Tensor):
        form_device, is_torch = image.device, True
        scale = _scale_of(image.dtype)
        if image.dim() == 2:
            tensor = image[None, None]
        elif image.dim() in (3, 4) and image.shape[-3] in (1, 2, 3, 4):
            tensor = image[None] if image.dim() == 3 else image
        else:
            raise ValueError(
                "image must be a tensor [H, W], [C, H, W] or [B, C, H, W] with C = 1, 2, 3 or 4, got "
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
    alpha = tensor[:, channels - 1 :] if channels in (2, 4) else None
    colour = tensor[:, : channels - 1] if channels in (2, 4) else tensor
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
                "(scale it into [0, 1]; divide an 8-bit-range image by 255)"
            )
    return colour, alpha, form


def from_batch(colour: torch.Tensor, alpha: torch.Tensor | None, form: _Form):
    """Inverse of `to_batch`: float [N, 3, H, W] (any range; clipped to [0, 1]) -> the caller's
    kind, dtype and layout, with the alpha channel `to_batch` set apart.

    >>> colour, alpha, form = to_batch(np.full((4, 5), 255, np.uint8))
    >>> back = from_batch(colour.expand(1, 3, 4, 5) * 0.5, alpha, form)
    >>> back.shape, back.dtype, int(back[0, 0])
    ((4, 5), dtype('uint8'), 128)
    """
    colour = colour.clamp_(0.0, 1.0)
    if form.channels in (1, 2):  # grey in: grey out
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
