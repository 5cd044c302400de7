"""Dead-leaves images: synthetic training photos with edges and detail at every scale.

The training photos are few (31) and smooth (wallpapers with sky and bokeh, docs/training.md
"Detail-biased crops"). A dead-leaves image (Matheron's model; used as training data for
restoration networks by Achddou, Gousseau and Ladjal, 2021) is a stack of opaque disks whose
radii follow a power law r^-3 between two limits, which gives it a natural image's scale invariance
and 1/f^2 power spectrum: occlusion edges at every scale and in every direction, and no region that
stays smooth over more than the largest disk. The colours are drawn from the training photos' own
pixels, so the colour statistics stay those of the photos.
"""

from pathlib import Path

import cv2
import numpy as np

SUBPIXEL_BITS = 4  # cv2 draws centres and radii in 1/16 pixel
SIZE = 512  # the generated photos' side: 128-pixel crops at many positions, disks up to SIZE / 3
# disks drawn: this many times the canvas area in mean disk areas (the first drawn end up hidden)
COVERAGE = 6.0


def radii(count: int, smallest: float, largest: float, rng: np.random.Generator) -> np.ndarray:
    """`count` radii with density proportional to r^-3 on [smallest, largest] (inverse CDF).

    >>> r = radii(10000, 2.0, 100.0, np.random.default_rng(0))
    >>> bool(r.min() >= 2.0 and r.max() <= 100.0), round(float(np.median(r)), 1)
    (True, 2.8)
    """
    low, high = smallest**-2.0, largest**-2.0
    return (low - rng.random(count) * (low - high)) ** -0.5


def dead_leaves(
    size: int,
    colours: np.ndarray,
    rng: np.random.Generator,
    smallest: float = 3.0,
    largest: float | None = None,
) -> np.ndarray:
    """One dead-leaves image [size, size, 3] uint8: disks of radius r^-3-distributed in
    [smallest, largest] (default size / 3) drawn back to front with anti-aliased edges, each a
    colour drawn from `colours` [N, 3] (uint8, RGB).

    >>> colours = np.array([[0, 0, 0], [255, 255, 255]], np.uint8)
    >>> image = dead_leaves(64, colours, np.random.default_rng(0))
    >>> image.shape, image.dtype, int(image.min()), int(image.max())
    ((64, 64, 3), dtype('uint8'), 0, 255)
    """
    largest = size / 3 if largest is None else largest
    mean_area = 2 * np.pi * smallest**2 * np.log(largest / smallest)  # E[pi r^2] for r^-3
    count = int(COVERAGE * size * size / mean_area) + 1
    canvas = np.empty((size, size, 3), np.uint8)
    canvas[:] = colours[rng.integers(len(colours))]
    scale = 1 << SUBPIXEL_BITS
    centres = (rng.random((count, 2)) * size * scale).astype(np.int64)
    lengths = np.maximum(1, radii(count, smallest, largest, rng) * scale).astype(np.int64)
    picks = colours[rng.integers(len(colours), size=count)].tolist()
    for (cx, cy), radius, colour in zip(centres.tolist(), lengths.tolist(), picks, strict=True):
        cv2.circle(canvas, (cx, cy), radius, colour, -1, cv2.LINE_AA, SUBPIXEL_BITS)
    return canvas


def photo_colours(paths: list[str], per_photo: int, rng: np.random.Generator) -> np.ndarray:
    """`per_photo` random pixels of each photo: [len(paths) * per_photo, 3] uint8 RGB."""
    from pydeblur.io import read_image

    samples = []
    for path in paths:
        image, _ = read_image(path)
        pixels = image[..., :3].reshape(-1, 3)
        samples.append(pixels[rng.integers(len(pixels), size=per_photo)])
    return np.clip(np.round(np.concatenate(samples) * 255), 0, 255).astype(np.uint8)


def dead_leaves_photos(
    count: int, size: int, colour_sources: list[str], folder: Path, seed: int = 0
) -> list[str]:
    """`count` dead-leaves images of size x size as 8-bit PNGs in folder (written once, then reused),
    their colours from the photos `colour_sources`; image i depends only on (seed, i)."""
    from pydeblur.io import write_image

    if count < 0:
        raise ValueError(f"dead_leaves must be 0 or more photos, got {count}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"dead_leaves_{seed}_{i:05d}_{size}.png" for i in range(count)]
    missing = [i for i, path in enumerate(paths) if not path.exists()]
    if missing:
        colours = photo_colours(colour_sources, 2000, np.random.default_rng([seed, 1]))
        for i in missing:
            image = dead_leaves(size, colours, np.random.default_rng([seed, 2, i]))
            write_image(paths[i], image / 255.0)
    return [str(path) for path in paths]
