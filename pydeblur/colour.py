"""The sRGB transfer function (IEC 61966-2-1): camera files are sRGB-encoded, blur happens in linear light.

`srgb_to_linear` decodes, `linear_to_srgb` encodes; both take NumPy arrays (computed in float64) or
torch tensors (in their own floating dtype) of any shape, and extend the curve to values outside
[0, 1] by odd symmetry and the power law, so a deblurred image's overshoots survive the round trip.
"""

import numpy as np
import torch

GAMMAS = ("linear", "srgb")
_KNEE = 0.04045  # encoded value where the linear segment meets the power law
_LINEAR_KNEE = _KNEE / 12.92


def _module(values):
    return torch if isinstance(values, torch.Tensor) else np


def srgb_to_linear(values):
    """Decode sRGB-encoded values (nominally in [0, 1]) to linear light.

    >>> srgb_to_linear(np.array([0.0, 0.04045, 0.5, 1.0])).round(4)
    array([0.    , 0.0031, 0.214 , 1.    ])
    """
    xp = _module(values)
    values = values if xp is torch else np.asarray(values, dtype=np.float64)
    magnitude = xp.abs(values)
    curve = ((magnitude + 0.055) / 1.055) ** 2.4
    return xp.sign(values) * xp.where(magnitude <= _KNEE, magnitude / 12.92, curve)


def linear_to_srgb(values):
    """Encode linear light as sRGB (the inverse of `srgb_to_linear`).

    >>> levels = np.arange(256) / 255
    >>> bool((np.round(linear_to_srgb(srgb_to_linear(levels)) * 255) == np.arange(256)).all())
    True
    """
    xp = _module(values)
    values = values if xp is torch else np.asarray(values, dtype=np.float64)
    magnitude = xp.abs(values)
    curve = 1.055 * magnitude ** (1 / 2.4) - 0.055
    return xp.sign(values) * xp.where(magnitude <= _LINEAR_KNEE, magnitude * 12.92, curve)


def srgb_slope(values):
    """d(linear) / d(encoded) of `srgb_to_linear` at encoded values in [0, 1] (NumPy, float64).

    >>> float(srgb_slope(0.0)) == 1 / 12.92
    True
    """
    values = np.asarray(values, dtype=np.float64)
    return np.where(values <= _KNEE, 1 / 12.92, 2.4 / 1.055 * ((values + 0.055) / 1.055) ** 1.4)


def check_gamma(gamma) -> str:
    """`gamma` if it names a transfer function of `GAMMAS`, else a one-line ValueError.

    >>> check_gamma("srgb")
    'srgb'
    """
    if gamma not in GAMMAS:
        raise ValueError(f"gamma must be one of {', '.join(GAMMAS)}, got {gamma!r}")
    return gamma
