"""A kernel measured from a point light in the photo: a star, an LED, a distant lamp.

`kernel_from_point_light(image, box)` turns the crop around one small bright source into a kernel:
background subtracted, thresholded at the noise level, centred by its centre of mass, normalised;
refused with a clear message when the crop holds no isolated source or the source is clipped.
docs/kernels.md gives the rules and their measured accuracy.
"""

import math

import numpy as np

from pydeblur.colour import srgb_slope, srgb_to_linear
from pydeblur.kernels import MAX_KERNEL_SIDE, _finish, _number

LUMINANCE = (0.2126, 0.7152, 0.0722)  # Rec. 709 / sRGB primaries, on linear light


# ---------------------------------------------------------------------------------------------------
# A kernel from a point light


def _as_unit_image(image) -> tuple[np.ndarray, float]:
    """image -> (float64 [H, W, C] in [0, 1] without alpha, its quantisation step)."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., : 1 if array.shape[2] == 1 else 3]
    elif array.ndim == 2:
        array = array[..., None]
    else:
        raise ValueError(f"image must be [H, W] or [H, W, 1/3/4], got shape {array.shape}")
    if array.dtype in (np.uint8, np.uint16):
        top = np.iinfo(array.dtype).max
        return array.astype(np.float64) / top, 1.0 / top
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"image must be uint8, uint16 or float in [0, 1], got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
        raise ValueError("image values must be finite and in [0, 1] (a float image)")
    return array, 1.0 / 65535  # a float image: quantised as finely as 16 bits at least


def _check_box(box, shape: tuple[int, int]) -> tuple[int, int, int, int]:
    try:
        values = [float(v) for v in box]
    except (TypeError, ValueError):
        raise ValueError(f"box must be four integers X, Y, W, H, got {box!r}") from None
    if len(values) != 4 or not all(v.is_integer() for v in values):
        raise ValueError(f"box must be four integers X, Y, W, H, got {box!r}")
    x, y, w, h = (int(v) for v in values)
    if min(w, h) < 7 or max(w, h) > MAX_KERNEL_SIDE:
        raise ValueError(f"box must be 7 to {MAX_KERNEL_SIDE} pixels a side, got {w}x{h}")
    if x < 0 or y < 0 or x + w > shape[1] or y + h > shape[0]:
        raise ValueError(
            f"box {x},{y},{w},{h} (X, Y, W, H) is not inside the {shape[1]}x{shape[0]} image"
        )
    return x, y, w, h


def _recentre(values: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Pixels (values at rows, cols) moved so their centre of mass is a centre element: bilinear,
    so non-negative and the centre of mass exact. float64 [2 hr + 1, 2 hc + 1]."""
    total = values.sum()
    cr, cc = (rows * values).sum() / total, (cols * values).sum() / total
    hr, hc = int(math.ceil(np.abs(rows - cr).max())), int(math.ceil(np.abs(cols - cc).max()))
    out = np.zeros((2 * hr + 1, 2 * hc + 1))
    r, c = rows - cr + hr, cols - cc + hc
    r0 = np.clip(np.floor(r), 0, 2 * hr).astype(int)
    c0 = np.clip(np.floor(c), 0, 2 * hc).astype(int)
    fr, fc = r - r0, c - c0
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            weight = values * wr * wc
            inside = weight > 0
            np.add.at(out, (r0[inside] + dr, c0[inside] + dc), weight[inside])
    return out


def kernel_from_point_light(
    image,
    box,
    *,
    threshold: float = 3.0,
    min_snr: float = 20.0,
    saturation: float = 0.98,
    linear: bool = False,
    return_info: bool = False,
):
    """The blur kernel as a small bright source (a star, a distant LED) inside `box` shows it:
    float32 [kh, kw] (odd sides, sum 1, centred on its centre of mass); with `return_info`, also a
    dict of what was measured.

    image: [H, W] grey or [H, W, 3 | 4] RGB(A) (alpha ignored), uint8 / uint16 or float in [0, 1].
    box: (X, Y, W, H) in pixels, the crop's columns X .. X + W - 1 and rows Y .. Y + H - 1 (OpenCV's
    Rect, cv2.selectROI's return), 7 to MAX_KERNEL_SIDE a side.

    1. Values are decoded from sRGB to linear light (unless `linear`: the values are linear already,
       as in a linear TIFF from a raw converter), since blur adds light; colour becomes the Rec. 709
       luminance Y = 0.2126 R + 0.7152 G + 0.0722 B of the linear values.
    2. The crop's outer 2-pixel frame gives the background (its median, subtracted) and the noise
       sigma (1.4826 x its median absolute deviation, at least the quantisation step / sqrt(12)).
    3. Pixels above `threshold` sigma are kept, grouped 8-connected across gaps of one pixel; the
       group of most light is the source. Other groups of under 5 % of its light or under `min_snr`
       are left out (noise, faint stars).
    4. It is moved (bilinear, sub-pixel) so its centre of mass is the centre element, and normalised.

    Refused (ValueError saying why): no group of signal-to-noise (light / (sigma sqrt(pixels))) of
    `min_snr` at least; a source touching the frame (cut by the box, or the box too tight); a second
    source of 5 % of the light or more; a clipped source (a channel at or above `saturation` of full
    scale, before decoding).

    info: "centre" (x, y) of the centre of mass in the photo, "background" and "noise" (linear, in
    full-scale units), "snr", "pixels" (of the source), "peak" (its brightest value before decoding,
    in full-scale units), "left_out" (the groups left out).

    >>> from pydeblur.kernels import motion
    >>> star = np.full((31, 31), 0.05)
    >>> star[14:17, 12:19] += 0.3 * motion(5, 0)[0]  # a star streaked 5 pixels to the right
    >>> k, info = kernel_from_point_light(star, (0, 0, 31, 31), linear=True, return_info=True)
    >>> k.shape, np.round(info["centre"], 6).tolist(), info["pixels"]
    ((3, 7), [15.0, 15.0], 21)
    """
    from scipy import ndimage

    threshold = _number("threshold", threshold)
    min_snr = _number("min_snr", min_snr)
    saturation = _number("saturation", saturation)
    if not threshold > 0 or not min_snr > 0 or not 0 < saturation <= 1:
        raise ValueError(
            "threshold and min_snr must be > 0 and saturation in (0, 1], got "
            f"{threshold:g}, {min_snr:g}, {saturation:g}"
        )
    values, step = _as_unit_image(image)
    x, y, w, h = _check_box(box, values.shape[:2])
    raw = values[y : y + h, x : x + w]
    light = raw if linear else srgb_to_linear(raw)
    luminance = light[..., 0] if light.shape[2] == 1 else light @ np.array(LUMINANCE)

    frame = np.ones((h, w), bool)
    frame[2:-2, 2:-2] = False
    border = luminance[frame]
    background = float(np.median(border))
    noise = 1.4826 * float(np.median(np.abs(border - background)))
    if not linear:  # the quantisation step in linear light, at the background's level
        encoded = float(np.median(raw[frame].mean(axis=1)))
        step *= float(srgb_slope(encoded))
    noise = max(noise, step / math.sqrt(12))
    signal = luminance - background
    above = signal > threshold * noise
    groups, count = ndimage.label(ndimage.binary_dilation(above), structure=np.ones((3, 3)))
    groups = np.where(above, groups, 0)
    where = f"box {x},{y},{w},{h}"
    if count == 0 or not above.any():
        raise ValueError(
            f"{where}: no source above the noise (sigma {noise:.2g}); not a point light"
        )
    labels = np.arange(1, count + 1)
    light_of = ndimage.sum(signal, groups, labels)
    size_of = ndimage.sum(above, groups, labels)
    snr_of = light_of / (noise * np.sqrt(np.maximum(size_of, 1)))
    main = int(np.argmax(light_of))
    snr = float(snr_of[main])
    if snr < min_snr:
        raise ValueError(
            f"{where}: no point light found (the brightest spot has signal-to-noise {snr:.1f}, "
            f"under min_snr {min_snr:g}; noise sigma {noise:.2g}); box a brighter source"
        )
    source = groups == labels[main]
    if (source & frame).any():
        raise ValueError(
            f"{where}: the source touches the box's 2-pixel border (it is cut by the box, or the box "
            "is too tight); enlarge the box to hold it with dark sky around"
        )
    others = (light_of >= 0.05 * light_of[main]) & (snr_of >= min_snr)
    others[main] = False
    if others.any():
        rows, cols = np.nonzero(groups == labels[int(np.argmax(np.where(others, light_of, 0)))])
        raise ValueError(
            f"{where}: more than one source (another near x={x + round(cols.mean())}, "
            f"y={y + round(rows.mean())}); draw the box around one isolated point light"
        )
    peak = float(raw[source].max())
    if peak >= saturation:
        clipped = int((raw[source] >= saturation).any(axis=1).sum())
        raise ValueError(
            f"{where}: the source is clipped ({clipped} pixels at or above {saturation:g} of full "
            "scale); use a fainter point light or a shorter exposure"
        )
    rows, cols = np.nonzero(source)
    kernel = _recentre(signal[rows, cols], rows.astype(np.float64), cols.astype(np.float64))
    total = signal[rows, cols].sum()
    kernel = _finish(kernel)
    if not return_info:
        return kernel
    weights = signal[rows, cols] / total
    info = {
        "centre": (float(x + (cols * weights).sum()), float(y + (rows * weights).sum())),
        "background": background,
        "noise": noise,
        "snr": snr,
        "pixels": int(source.sum()),
        "peak": peak,
        "left_out": count - 1,
    }
    return kernel, info
