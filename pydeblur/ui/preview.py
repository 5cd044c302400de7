"""The page's live preview: a crop of the photo deblurred at once by a Wiener filter, then by the
network, and pictures (PNG data URLs) of crops and kernels.

Both previews deblur the crop with context around it (the kernel's larger side, as far as the photo
reaches: the light that the blur carried into the crop from outside), then cut the crop out, so the
crop's borders look nearly as they will in the whole photo. (The network's own tile overlap, which
`Deblurrer` uses to make tiles agree exactly, is some 250 pixels: as context it would make a 512-pixel
crop cost four times as much, benchmarks/test_bench_ui.py.) The Wiener preview is
`pydeblur.baselines.wiener` (the network's own boundary extension, then `wiener_deconvolve`); the
network's is `pydeblur.restore.Deblurrer` itself.
"""

from __future__ import annotations

import base64

import numpy as np

# The noise floor of the Wiener preview's nsr: a clean photo (estimated sigma ~0) would otherwise
# get the inverse filter, whose ringing hides the kernel's fit.
WIENER_NOISE_FLOOR = 0.002


def window_around(shape: tuple[int, ...], centre: tuple[float, float], size: int):
    """The size x size window (X, Y, W, H) centred as near `centre` (x, y) as fits in an image of
    `shape` (H, W, ...); smaller where the image is.

    >>> window_around((300, 400, 3), (390, 10), 256)
    (144, 0, 256, 256)
    >>> window_around((100, 400), (0, 0), 256)
    (0, 0, 256, 100)
    """
    height, width = shape[:2]
    if not (isinstance(size, int) and not isinstance(size, bool) and size >= 16):
        raise ValueError(f"preview size must be an integer >= 16, got {size!r}")
    try:
        cx, cy = (float(v) for v in centre)
    except (TypeError, ValueError):
        raise ValueError(f"preview centre must be two numbers x, y, got {centre!r}") from None
    if not (np.isfinite(cx) and np.isfinite(cy)):
        raise ValueError(f"preview centre must be finite, got {centre!r}")
    w, h = min(size, width), min(size, height)
    x = int(np.clip(round(cx - w / 2), 0, width - w))
    y = int(np.clip(round(cy - h / 2), 0, height - h))
    return x, y, w, h


def with_context(window, shape: tuple[int, ...], margin: int):
    """`window` (X, Y, W, H) grown by `margin` pixels a side, clipped to an image of `shape`.

    >>> with_context((144, 0, 256, 256), (300, 400), 40)
    (104, 0, 296, 296)
    """
    x, y, w, h = window
    height, width = shape[:2]
    left, top = max(x - margin, 0), max(y - margin, 0)
    return left, top, min(x + w + margin, width) - left, min(y + h + margin, height) - top


def _cut(image: np.ndarray, window) -> np.ndarray:
    x, y, w, h = window
    return image[y : y + h, x : x + w]


def _inner(result: np.ndarray, window, region) -> np.ndarray:
    """The window's part of a result computed on `region`."""
    x, y, w, h = window
    return result[y - region[1] : y - region[1] + h, x - region[0] : x - region[0] + w]


def wiener_nsr(region: np.ndarray, noise_sigma: float, strength: float = 1.0) -> float:
    """The Wiener preview's noise-to-signal ratio: max(noise_sigma, WIENER_NOISE_FLOOR)^2 over the
    region's variance (the signal power, as `pydeblur.noise.signal_to_noise_db` defines it), divided
    by `strength` (above 1 trusts the data more, as in `Deblurrer`); within [1e-6, 1].

    >>> region = np.random.default_rng(0).random((64, 64, 3))
    >>> round(wiener_nsr(region, 0.01), 5), round(wiener_nsr(region, 0.01, strength=2), 5)
    (0.0012, 0.0006)
    """
    variance = max(float(np.var(region)), 1e-6)
    nsr = max(noise_sigma, WIENER_NOISE_FLOOR) ** 2 / variance / strength
    return float(np.clip(nsr, 1e-6, 1.0))


def wiener_preview(
    image: np.ndarray, psf: np.ndarray, window, noise_sigma: float, strength: float = 1.0
) -> np.ndarray:
    """The crop `window` (X, Y, W, H) of `image` (HxWx3 float in [0, 1]) deblurred by the Wiener
    filter for `psf` at `wiener_nsr`: HxWx3 float32 in [0, 1].

    >>> from pydeblur.kernels import motion
    >>> photo = np.random.default_rng(0).random((120, 160, 3)).astype(np.float32)
    >>> wiener_preview(photo, motion(9, 30), (10, 20, 64, 48), 0.01).shape
    (48, 64, 3)
    """
    import torch

    from pydeblur.baselines import wiener

    margin = max(psf.shape)
    region = with_context(window, image.shape, margin)
    part = np.ascontiguousarray(_cut(image, region), dtype=np.float32)
    nsr = wiener_nsr(part, noise_sigma, strength)
    tensor = torch.from_numpy(part).permute(2, 0, 1)[None]
    kernel = torch.from_numpy(np.ascontiguousarray(psf, dtype=np.float32))[None, None]
    with torch.no_grad():
        out = wiener(tensor, kernel, nsr, margin=margin)[0].permute(1, 2, 0).clamp(0, 1).numpy()
    return np.ascontiguousarray(_inner(out, window, region))


def network_preview(
    deblurrer,
    image: np.ndarray,
    psf: np.ndarray,
    window,
    noise_sigma,
    strength: float = 1.0,
    gamma: str = "linear",
    clip_level: float | None = None,
) -> np.ndarray:
    """The crop `window` (X, Y, W, H) of `image` (HxWx3 float in [0, 1]) deblurred by a
    `pydeblur.restore.Deblurrer` (the kernel's larger side as context): HxWx3 float32.

    noise_sigma: the photo's (None: estimated from the context region alone); strength, gamma and
    clip_level: as `Deblurrer.__call__`'s.

    >>> from pydeblur.kernels import motion
    >>> from pydeblur.restore import Deblurrer
    >>> photo = np.random.default_rng(0).random((96, 128, 3)).astype(np.float32)
    >>> network_preview(Deblurrer(device="cpu"), photo, motion(5), (8, 8, 64, 48), 0.01).shape
    (48, 64, 3)
    """
    region = with_context(window, image.shape, max(psf.shape))
    part = np.ascontiguousarray(_cut(image, region), dtype=np.float32)
    out = deblurrer(part, psf, noise_sigma, strength, gamma, clip_level)
    return np.ascontiguousarray(_inner(out, window, region))


def _png(array: np.ndarray) -> bytes:
    import cv2

    if array.ndim == 3 and array.shape[2] == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, encoded = cv2.imencode(".png", array, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    if not ok:
        raise ValueError("cannot encode the picture as PNG")
    return encoded.tobytes()


def png_data_url(image: np.ndarray) -> str:
    """An 8-bit PNG of a float image in [0, 1] (HxW or HxWx3 RGB), as a data: URL for the page.

    >>> png_data_url(np.zeros((2, 2, 3), np.float32))[:22]
    'data:image/png;base64,'
    """
    from pydeblur.io import to_integer

    return "data:image/png;base64," + base64.b64encode(_png(to_integer(image))).decode("ascii")


def png_bytes(image: np.ndarray) -> bytes:
    """An 8-bit PNG file's bytes of a float image in [0, 1] (HxW or HxWx3 RGB).

    >>> png_bytes(np.ones((4, 4), np.float32))[1:4]
    b'PNG'
    """
    from pydeblur.io import to_integer

    return _png(to_integer(image))


def kernel_picture(psf: np.ndarray) -> str:
    """A picture of a kernel [kh, kw] for the page: grey, its maximum white, as a PNG data URL (the
    page enlarges it without smoothing).

    >>> from pydeblur.kernels import motion
    >>> kernel_picture(motion(9))[:22]
    'data:image/png;base64,'
    """
    psf = np.asarray(psf, dtype=np.float64)
    return png_data_url((psf / psf.max()).astype(np.float32))


def view_of(image: np.ndarray, max_side: int = 2048) -> tuple[np.ndarray, float]:
    """A photo (HxW, HxWx3 or HxWx4 float) as RGB for the page's overview, shrunk (area average) to
    at most `max_side` pixels a side: (HxWx3 float32, its scale: view pixels per photo pixel).

    >>> view, scale = view_of(np.zeros((3000, 4000), np.float32))
    >>> view.shape, scale
    ((1536, 2048, 3), 0.512)
    """
    import cv2

    rgb = as_rgb(image)
    height, width = rgb.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    return rgb, scale


def as_rgb(image: np.ndarray) -> np.ndarray:
    """HxW, HxWx1, HxWx3 or HxWx4 float -> HxWx3 float32 (grey repeated, alpha dropped).

    >>> as_rgb(np.zeros((2, 3), np.float32)).shape, as_rgb(np.zeros((2, 3, 4), np.float32)).shape
    ((2, 3, 3), (2, 3, 3))
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[..., :3], dtype=np.float32)
