"""Parametric blur kernels (motion, defocus, Gaussian) and their text specs. Kernels measured from a
point light in a photo are `pydeblur.point_light`'s, camera-shake trajectories `pydeblur.psf`'s, kernel
files `pydeblur.kernel_io`'s.

Every kernel returned is float32 [kh, kw], non-negative, summing to 1, with odd sides and its centre at
element (kh // 2, kw // 2) (the project's convention, docs/design.md), oriented for true convolution:
the kernel is the picture a point light would leave in the blurred photo.

Angles are in degrees, counter-clockwise from the +x axis as the image is seen on screen (rows going
down): a direction at angle a moves +cos(a) columns and -sin(a) rows per pixel. 0 is horizontal (along
a row), 90 vertical (along a column), 45 runs from the lower left to the upper right (elements
(c + t, c - t) for the centre c), as MATLAB's fspecial('motion', len, 45). docs/kernels.md says more.
"""

import math
import re

import numpy as np

from pydeblur.psf import centre_trajectories, exposure_weights, splat_psfs

# The largest side of a parametric kernel or of a point-light box, in pixels.
MAX_KERNEL_SIDE = 1001
# The longest motion path, in pixels (its samples: 64 a pixel).
MAX_PATH_LENGTH = 16 * MAX_KERNEL_SIDE
_SAMPLES_PER_PIXEL = 64
_TINY = 1e-7  # values under this fraction of the maximum are float noise (float32 cannot tell them)
SPEC_FORMS = "motion:LENGTH[,ANGLE], defocus:RADIUS (or disk:RADIUS), gaussian:SIGMA[,SIGMA2,ANGLE]"


# ---------------------------------------------------------------------------------------------------
# Parameters and the common last step


def _number(name: str, value) -> float:
    """A finite real number, else a one-line ValueError naming the argument."""
    if isinstance(value, (str, bytes, bool)):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {number}")
    return number


def _check_side(what: str, rows: int, cols: int) -> None:
    if max(rows, cols) > MAX_KERNEL_SIDE:
        raise ValueError(
            f"{what} needs a {rows}x{cols} kernel, over the {MAX_KERNEL_SIDE}-pixel limit of "
            "parametric kernels"
        )


def _direction(angle: float) -> tuple[float, float]:
    """(dx, dy) of a unit step at `angle` degrees, y pointing down; exact at multiples of 90."""
    radians = math.radians(angle % 360.0)
    dx, dy = math.cos(radians), -math.sin(radians)
    return (0.0 if abs(dx) < 1e-12 else dx), (0.0 if abs(dy) < 1e-12 else dy)


def _finish(kernel: np.ndarray) -> np.ndarray:
    """Float noise zeroed, zero borders trimmed symmetrically (the centre element stays the centre),
    normalised, float32."""
    kernel = np.where(kernel > _TINY * kernel.max(), kernel, 0.0)
    rows, cols = np.nonzero(kernel)
    cr, cc = kernel.shape[0] // 2, kernel.shape[1] // 2
    hr, hc = int(np.abs(rows - cr).max()), int(np.abs(cols - cc).max())
    kernel = kernel[cr - hr : cr + hr + 1, cc - hc : cc + hc + 1]
    return (kernel / kernel.sum()).astype(np.float32)


# ---------------------------------------------------------------------------------------------------
# Motion


def _splat_path(points: np.ndarray) -> np.ndarray:
    """Rasterise a polyline [n, 2] of (x, y) points, travelled at constant speed: float32 kernel."""
    steps = np.hypot(*np.diff(points, axis=0).T)
    cumulative = np.concatenate([[0.0], np.cumsum(steps)])
    total = float(cumulative[-1])
    samples = max(math.ceil(total * _SAMPLES_PER_PIXEL - 1e-6), 2)  # not one more for rounding
    # sample midpoints of `samples` equal arcs; each segment's samples interpolated along it
    arc = (np.arange(samples) + 0.5) * (total / samples)
    segment = np.clip(np.searchsorted(cumulative, arc, side="right") - 1, 0, len(steps) - 1)
    t = (arc - cumulative[segment]) / steps[segment]
    xy = points[segment] + t[:, None] * (points[segment + 1] - points[segment])
    track = (xy[:, 0] + 1j * xy[:, 1])[None]  # column + 1j * row, as pydeblur.psf's trajectories
    track = track - track.mean()
    half = int(math.ceil(max(np.abs(track.real).max(), np.abs(track.imag).max()))) + 1
    size = 2 * half + 1
    weights = exposure_weights(samples, [1.0])
    kernel = splat_psfs(centre_trajectories(track, size, weights[0]), size, weights)[0, 0]
    return _finish(kernel)


def _path_extent(points: np.ndarray) -> tuple[int, int]:
    """Half extents (rows, columns) of the kernel of a path centred on its arc-length centroid."""
    steps = np.hypot(*np.diff(points, axis=0).T)
    middles = (points[1:] + points[:-1]) / 2
    centroid = (middles * steps[:, None]).sum(axis=0) / steps.sum()
    reach = np.abs(points - centroid).max(axis=0)
    return int(math.ceil(reach[1])) + 1, int(math.ceil(reach[0])) + 1


def motion(length: float, angle: float = 0.0) -> np.ndarray:
    """Linear motion blur: a straight line of `length` pixels at `angle` degrees, centred on its
    midpoint: float32 [kh, kw], odd sides, sum 1.

    The point light moves at constant speed over a segment of exactly `length` pixels (>= 1); the
    segment is sampled 64 times a pixel and each sample is spread bilinearly over its four neighbours
    (anti-aliasing; the same rasteriser as the camera-shake PSFs of `pydeblur.psf`), so the kernel's
    centre of mass is the centre element, its variance along the line is length^2 / 12 + 1/6 (the 1/6
    from the interpolation, within 0.05 px^2) and across it 0 at 0 and 90 degrees, under 0.2 px^2
    (1/6 on average) at other angles.

    angle: degrees counter-clockwise from the +x axis, image y pointing down: the line runs +cos(angle)
    columns and -sin(angle) rows per pixel; 0 is horizontal, 90 vertical, 45 rises to the right.
    Angles are taken modulo 180. Names and meaning as MATLAB's fspecial('motion', len, theta), which
    draws len pixels with nearest-pixel weights: fspecial('motion', 9, 0) is 9 equal pixels (variance
    80/12), motion(9, 0) 11 pixels with the bilinear ends 1/72 and 7/72 (variance 81/12 + 1/6).

    >>> k = motion(9, 0)
    >>> k.shape, k.dtype
    ((1, 11), dtype('float32'))
    >>> np.round(k * 72).astype(int)  # ends: the bilinear share of the last half pixel
    array([[1, 7, 8, 8, 8, 8, 8, 8, 8, 7, 1]])
    >>> motion(9, 90).shape, motion(9, 45).shape, motion(15, 30).shape
    ((11, 1), (9, 9), (9, 15))
    """
    length = _number("length", length)
    angle = _number("angle", angle)
    if length < 1:
        raise ValueError(f"length must be >= 1 pixel, got {length:g}")
    dx, dy = _direction(angle)
    half = length / 2
    # the exact extent first, so a too-long line is refused before any allocation
    rows, cols = 2 * math.ceil(half * abs(dy)) + 3, 2 * math.ceil(half * abs(dx)) + 3
    _check_side(f"motion({length:g}, {angle:g})", rows, cols)
    return _splat_path(np.array([[-half * dx, -half * dy], [half * dx, half * dy]]))


def motion_path(points) -> np.ndarray:
    """Motion blur along a path through `points`, travelled at constant speed (curved camera shake):
    float32 [kh, kw], odd sides, sum 1, centred on the path's centre of mass.

    points: [n, 2] (x, y) pairs, n >= 2, in pixels, x to the right (columns) and y down (rows), as the
    streak a point light leaves in the photo; straight segments join consecutive points. The path is
    shifted so its arc-length centroid lands on the centre element (the absolute position is dropped),
    then rasterised as `motion` (64 samples a pixel, bilinear), so the kernel's centre of mass is the
    centre element. Its length is 1 to MAX_PATH_LENGTH pixels. motion_path([(-L/2, 0), (L/2, 0)])
    equals motion(L, 0).

    >>> k = motion_path([(0, 0), (4, 0), (4, 4)])  # right 4 pixels, then down 4: an L
    >>> k.shape, round(float(k.sum()), 6)
    ((7, 7), 1.0)
    >>> (k > 0).astype(int)  # the corner is at the top right
    array([[0, 0, 0, 0, 0, 0, 0],
           [0, 0, 0, 0, 0, 0, 0],
           [1, 1, 1, 1, 1, 0, 0],
           [0, 0, 0, 0, 1, 0, 0],
           [0, 0, 0, 0, 1, 0, 0],
           [0, 0, 0, 0, 1, 0, 0],
           [0, 0, 0, 0, 1, 0, 0]])
    """
    try:
        points = np.array(points, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("points must be a sequence of (x, y) pairs of numbers") from None
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 2:
        raise ValueError(f"points must be at least two (x, y) pairs, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("points must be finite")
    length = float(np.hypot(*np.diff(points, axis=0).T).sum())
    if not length >= 1:
        raise ValueError(f"points must make a path of length >= 1 pixel, got {length:g}")
    if length > MAX_PATH_LENGTH:
        raise ValueError(
            f"points make a path of {length:g} pixels, over the {MAX_PATH_LENGTH} limit"
        )
    rows, cols = _path_extent(points)
    _check_side("the path", 2 * rows + 1, 2 * cols + 1)
    return _splat_path(points)


# ---------------------------------------------------------------------------------------------------
# Defocus


def _quadrant_area(a: np.ndarray, b: np.ndarray, r: float) -> np.ndarray:
    """Area of the disk of radius r (centre 0) inside [0, a] x [0, b], for a, b >= 0."""
    a, b = np.minimum(a, r), np.minimum(b, r)

    def primitive(t):  # integral of sqrt(r^2 - u^2) from 0 to t
        return 0.5 * (t * np.sqrt(np.maximum(r * r - t * t, 0.0)) + r * r * np.arcsin(t / r))

    knee = np.sqrt(np.maximum(r * r - b * b, 0.0))  # where the circle's height falls to b
    inner = np.minimum(a, knee)
    return b * inner + primitive(a) - primitive(inner)


def _corner_area(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    """Signed area of the disk inside the rectangle between (0, 0) and (x, y)."""
    return np.sign(x) * np.sign(y) * _quadrant_area(np.abs(x), np.abs(y), r)


def defocus(radius: float) -> np.ndarray:
    """Out-of-focus blur: a uniform disk of `radius` pixels, each element its pixel's exact area
    coverage by the disk (analytic): float32 [n, n], n = 2 * ceil(radius - 1/2) + 1, sum 1.

    The disk is centred on the centre element's centre; the pixel squares are 1 pixel wide, so a
    fully covered element holds 1 / (pi radius^2) and the kernel has the symmetries of the square
    grid. radius > 0 (one under 1/2 is a single pixel). As MATLAB's fspecial('disk', radius), which
    also integrates the pixels crossed by the circle.

    >>> k = defocus(1.5)
    >>> k.shape, round(float(k[1, 1] * np.pi * 1.5**2), 6)
    ((3, 3), 1.0)
    >>> defocus(4).shape, defocus(0.3).tolist()
    ((9, 9), [[1.0]])
    """
    radius = _number("radius", radius)
    if not radius > 0:
        raise ValueError(f"radius must be > 0, got {radius:g}")
    half = max(math.ceil(radius - 0.5), 0)  # pixels whose square the disk enters
    _check_side(f"defocus({radius:g})", 2 * half + 1, 2 * half + 1)
    edges = np.arange(-half, half + 2, dtype=np.float64) - 0.5
    corner = _corner_area(edges[None, :], edges[:, None], radius)
    area = corner[1:, 1:] - corner[:-1, 1:] - corner[1:, :-1] + corner[:-1, :-1]
    return _finish(np.maximum(area, 0.0))


# ---------------------------------------------------------------------------------------------------
# Gaussian


def gaussian(
    sigma: float, sigma2: float | None = None, angle: float = 0.0, truncate: float = 4.0
) -> np.ndarray:
    """Gaussian blur: standard deviation `sigma` pixels along `angle`, `sigma2` (default `sigma`)
    across it: float32 [kh, kw], odd sides, sum 1, centred.

    Point samples of exp(-q^T C^-1 q / 2) at the pixel centres q (as MATLAB's fspecial('gaussian')
    and OpenCV's getGaussianKernel), C = sigma^2 d d^T + sigma2^2 p p^T for the unit direction d at
    `angle` (degrees counter-clockwise from +x, image y down: d = (cos, -sin) in (column, row)) and p
    across it. The kernel reaches `truncate` standard deviations along each axis (scipy's default 4,
    not MATLAB's hsize): half sides ceil(truncate * sqrt(C_rows)), ceil(truncate * sqrt(C_cols)).
    For sigmas >= 0.8 its covariance is C to about 0.2 % (the truncation); smaller sigmas give kernels
    narrower than sigma (point sampling).

    >>> gaussian(1.0).shape, gaussian(2.0, 0.5).shape, gaussian(2.0, 0.5, 90).shape
    ((9, 9), (5, 17), (17, 5))
    """
    sigma = _number("sigma", sigma)
    sigma2 = sigma if sigma2 is None else _number("sigma2", sigma2)
    angle = _number("angle", angle)
    truncate = _number("truncate", truncate)
    for name, value in (("sigma", sigma), ("sigma2", sigma2), ("truncate", truncate)):
        if not value > 0:
            raise ValueError(f"{name} must be > 0, got {value:g}")
    dx, dy = _direction(angle)
    # covariance in (x = column, y = row); the across direction p = (-dy, dx)
    cxx = sigma**2 * dx * dx + sigma2**2 * dy * dy
    cyy = sigma**2 * dy * dy + sigma2**2 * dx * dx
    cxy = (sigma**2 - sigma2**2) * dx * dy
    hx, hy = math.ceil(truncate * math.sqrt(cxx)), math.ceil(truncate * math.sqrt(cyy))
    _check_side(f"gaussian({sigma:g}, {sigma2:g}, {angle:g})", 2 * hy + 1, 2 * hx + 1)
    y, x = np.mgrid[-hy : hy + 1, -hx : hx + 1].astype(np.float64)
    det = cxx * cyy - cxy * cxy
    exponent = (cyy * x * x - 2 * cxy * x * y + cxx * y * y) / det
    return _finish(np.exp(-0.5 * exponent))


# ---------------------------------------------------------------------------------------------------
# Specs

_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_SPECS = {  # name -> (function, the names of its numbers, how many are required)
    "motion": (motion, ("LENGTH", "ANGLE"), 1),
    "defocus": (defocus, ("RADIUS",), 1),
    "disk": (defocus, ("RADIUS",), 1),
    "gaussian": (gaussian, ("SIGMA", "SIGMA2", "ANGLE"), 1),
}
SPEC_NAMES = tuple(_SPECS)


def is_psf_spec(text) -> bool:
    """Whether `text` is meant as a kernel spec: a string whose part before its first ':' is a spec
    name (motion, defocus, disk, gaussian; any case). Whether its numbers are right is
    `parse_psf_spec`'s to say.

    >>> is_psf_spec("motion:15,30"), is_psf_spec("Gaussian: 2"), is_psf_spec("kernels/k.npy")
    (True, True, False)
    >>> is_psf_spec("C:/kernels/k.npy")
    False
    """
    if not isinstance(text, str) or ":" not in text:
        return False
    return text.split(":", 1)[0].strip().lower() in _SPECS


def parse_psf_spec(text: str) -> np.ndarray:
    """The kernel a text spec names: float32 [kh, kw] (odd sides, sum 1, centred).

    Forms (names in any case, spaces allowed): `motion:LENGTH[,ANGLE]` (`motion`, ANGLE default 0),
    `defocus:RADIUS` or `disk:RADIUS` (`defocus`), `gaussian:SIGMA[,SIGMA2[,ANGLE]]` (`gaussian`).
    Lengths, radii and sigmas in pixels; angles in degrees counter-clockwise from +x, image y down.
    Raises ValueError naming the spec and what is wrong with it.

    >>> parse_psf_spec("motion:15,30").shape, parse_psf_spec("defocus:4").shape
    ((9, 15), (9, 9))
    >>> parse_psf_spec("gaussian:2,1,90").shape
    (17, 9)
    >>> parse_psf_spec("motion:15,north")
    Traceback (most recent call last):
    ...
    ValueError: kernel spec 'motion:15,north': ANGLE 'north' is not a number
    """
    if not isinstance(text, str):
        raise ValueError(f"a kernel spec must be a string, got {type(text).__name__}")
    name, colon, rest = text.partition(":")
    key = name.strip().lower()
    if key not in _SPECS:
        raise ValueError(f"unknown kernel spec {text!r} (expected {SPEC_FORMS})")
    function, names, required = _SPECS[key]
    fields = [field.strip() for field in rest.split(",")] if rest.strip() else []
    usage = f"{key}:{','.join(names[:required])}" + "".join(f"[,{n}]" for n in names[required:])
    if not required <= len(fields) <= len(names):
        counts = f"{required} to {len(names)} numbers" if len(names) > required else "one number"
        raise ValueError(f"kernel spec {text!r}: {key} takes {counts} ({usage}), got {len(fields)}")
    values = []
    for field, label in zip(fields, names, strict=False):
        if not _NUMBER.match(field):
            raise ValueError(f"kernel spec {text!r}: {label} {field!r} is not a number")
        values.append(float(field))
    try:
        return function(*values)
    except ValueError as error:
        raise ValueError(f"kernel spec {text!r}: {error}") from None
