"""A kernel per region, measured: a synthetic spatially varying blur on Kodak photos, deblurred with one
kernel, with `--psf-grid` (`pydeblur.psf_grid.deblur_grid`) and by the per-region oracle.

    python benchmarks/psf_grid_measure.py [--photos kodim01,kodim03,kodim05,kodim07] [--device cpu]

The blur: a grid of kernels (LAYOUTS), each pixel blurred by the mix of the kernels of the cells
around it, weighted by smooth steps over `--transition` px (default 64) across each cell edge (a
partition of unity, separable in rows and columns): blurred = sum over cells of weight_cell(x, y) *
(sharp * kernel of the cell), so each pixel's kernel is the weighted mix of its cells' kernels; linear
convolution, valid region (so the borders are a real photo's), then Gaussian noise of sigma SIGMA; the
photo's values are taken as the data (gamma linear), float32.

Per photo and layout, PSNR (dB) against the aligned sharp photo, BORDER px a side left out:

- (a) one kernel: the mean of the grid's kernels (the blur at the image centre, where the cells meet),
  `Deblurrer(...)(blurred, mean kernel)`;
- (b) `--psf-grid`: `deblur_grid(blurred, kernels, deblurrer)`;
- (c) oracle per region: each cell's pixels from deblurring the photo blurred by that cell's kernel
  alone (the same noise), i.e. what the model gives where the blur really is constant: a ceiling.

All three get the true noise level. The second table scores only the transition bands (pixels within
`--transition` / 2 of a cell edge), where the blur is a mix that no single kernel describes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("PYDEBLUR_DATA", REPO.parent / "shared" / "data"))
PHOTOS = ("kodim01", "kodim03", "kodim05", "kodim07")
SIGMA = 0.01
TRANSITION = 64
BORDER = 16
# name: rows of kernel specs (pydeblur.kernels.parse_psf_spec)
LAYOUTS = {
    "1x2: motion:15,0 / motion:15,90": [["motion:15,0", "motion:15,90"]],
    "2x2 roll: motion:13,45 / 13,135 over 13,135 / 13,45": [
        ["motion:13,45", "motion:13,135"],
        ["motion:13,135", "motion:13,45"],
    ],
}


def pad_to(kernel: np.ndarray, side: int) -> np.ndarray:
    """A kernel of odd sides zero-padded to side x side (odd), its centre element kept at the centre.

    >>> pad_to(np.ones((1, 3)), 5)[2]
    array([0., 1., 1., 1., 0.])
    """
    top, left = (side - kernel.shape[0]) // 2, (side - kernel.shape[1]) // 2
    return np.pad(
        kernel.astype(np.float64),
        ((top, side - kernel.shape[0] - top), (left, side - kernel.shape[1] - left)),
    )


def axis_weights(length: int, count: int, transition: int) -> np.ndarray:
    """[count, length]: per cell along one axis, 1 inside it, smooth steps (3t^2 - 2t^3) over
    `transition` px centred on its edges at `pydeblur.psf_grid.cell_bounds`; they sum to 1.

    >>> w = axis_weights(100, 2, 20)
    >>> bool(np.allclose(w.sum(axis=0), 1)), float(w[0, 39]), float(w[0, 60]), round(float(w[0, 50]), 2)
    (True, 1.0, 0.0, 0.46)
    """
    from pydeblur.psf_grid import cell_bounds

    x = np.arange(length) + 0.5
    rises = []
    for edge in cell_bounds(length, count)[1:-1]:
        t = np.clip((x - edge + transition / 2) / transition, 0, 1)
        rises.append(t * t * (3 - 2 * t))
    steps = [np.ones(length), *rises, np.zeros(length)]
    return np.stack([steps[i] - steps[i + 1] for i in range(count)])


def synthesize(sharp: np.ndarray, kernels: list[list[np.ndarray]], seed: int, transition: int):
    """(varying blur [h, w, 3] float32, per-cell uniform blurs, reference [h, w, 3], band mask [h, w])
    for a sharp photo [H, W, 3] in [0, 1] and rows of kernels, the blur changing over `transition` px;
    noise SIGMA, the same realisation in every image."""
    from pydeblur.degrade import blur_valid, valid_offset

    side = max(max(k.shape) for row in kernels for k in row)
    side += 1 - side % 2
    photo = sharp.transpose(2, 0, 1)[None].astype(np.float64)
    uniform = [[blur_valid(photo, pad_to(k, side))[0] for k in row] for row in kernels]
    height, width = uniform[0][0].shape[-2:]
    rows = axis_weights(height, len(kernels), transition)
    cols = axis_weights(width, len(kernels[0]), transition)
    varying = sum(
        rows[r][:, None] * cols[c][None, :] * uniform[r][c]
        for r in range(len(kernels))
        for c in range(len(kernels[0]))
    )
    noise = np.random.default_rng(seed).normal(0, SIGMA, varying.shape)

    def camera(blurred):
        return np.clip(blurred + noise, 0, 1).transpose(1, 2, 0).astype(np.float32)

    top, left = valid_offset(side, side)
    reference = sharp[top : top + height, left : left + width].astype(np.float64)
    band = (rows.max(axis=0) < 1)[:, None] | (cols.max(axis=0) < 1)[None, :]
    return camera(varying), [[camera(u) for u in row] for row in uniform], reference, band


def psnr(estimate: np.ndarray, reference: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR (dB), values in [0, 1], BORDER px a side left out, over `mask` [H, W] when given.

    >>> round(psnr(np.full((40, 40, 3), 0.5), np.full((40, 40, 3), 0.6)), 2)
    20.0
    """
    error = (estimate.astype(np.float64) - reference) ** 2
    keep = np.zeros(error.shape[:2], bool)
    keep[BORDER:-BORDER, BORDER:-BORDER] = True
    if mask is not None:
        keep &= mask
    return float(10 * np.log10(1 / max(error[keep].mean(), 1e-20)))


def measure(
    sharp: np.ndarray, specs: list[list[str]], deblurrer, seed: int, transition: int
) -> dict:
    """PSNRs (whole, band) and seconds of the blurred input and methods (a), (b), (c) on one photo."""
    from pydeblur.kernel_io import load_psf
    from pydeblur.psf_grid import cell_bounds, deblur_grid

    kernels = [[load_psf(spec) for spec in row] for row in specs]
    blurred, uniform, reference, band = synthesize(sharp, kernels, seed, transition)
    side = max(max(k.shape) for row in kernels for k in row)
    mean_kernel = np.mean([pad_to(k, side) for row in kernels for k in row], axis=0)
    results, seconds = {"blurred": blurred}, {}

    start = time.perf_counter()
    results["a"] = deblurrer(blurred, mean_kernel, SIGMA)
    seconds["a"] = time.perf_counter() - start
    start = time.perf_counter()
    results["b"] = deblur_grid(blurred, kernels, deblurrer, SIGMA)
    seconds["b"] = time.perf_counter() - start
    start = time.perf_counter()
    oracle = np.empty_like(blurred)
    rows, cols = (
        cell_bounds(blurred.shape[0], len(kernels)),
        cell_bounds(blurred.shape[1], len(kernels[0])),
    )
    for r, row in enumerate(kernels):
        for c, kernel in enumerate(row):
            cell = (slice(rows[r], rows[r + 1]), slice(cols[c], cols[c + 1]))
            oracle[cell] = deblurrer(uniform[r][c], kernel, SIGMA)[cell]
    results["c"] = oracle
    seconds["c"] = time.perf_counter() - start
    return {
        "whole": {key: psnr(value, reference) for key, value in results.items()},
        "band": {key: psnr(value, reference, band) for key, value in results.items()},
        "seconds": seconds,
    }


def markdown(rows: list[tuple[str, str, dict]], transition: int) -> str:
    """The two tables: per photo and layout, then the layouts' means over the photos."""
    keys = ("blurred", "a", "b", "c")
    head = (
        "| photo | layout | blurred | (a) one kernel | (b) `--psf-grid` | (c) oracle per region |"
    )
    head += " seconds (a) / (b) / (c) |"
    lines = [head, "|---|---|---|---|---|---|---|"]
    for photo, layout, result in rows:
        scores = " | ".join(f"{result['whole'][k]:.2f}" for k in keys)
        times = " / ".join(f"{result['seconds'][k]:.1f}" for k in ("a", "b", "c"))
        lines.append(f"| {photo} | {layout} | {scores} | {times} |")
    lines += [
        "",
        "| layout | part | blurred | (a) one kernel | (b) `--psf-grid` | (c) oracle per region |",
        "|---|---|---|---|---|---|",
    ]
    for layout in dict.fromkeys(layout for _, layout, _ in rows):
        mine = [result for _, name, result in rows if name == layout]
        for part, label in (
            ("whole", "whole image"),
            ("band", f"transition bands ({transition} px)"),
        ):
            means = " | ".join(f"{np.mean([r[part][k] for r in mine]):.2f}" for k in keys)
            lines.append(f"| {layout} | mean of {len(mine)}, {label} | {means} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python benchmarks/psf_grid_measure.py", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--photos", default=",".join(PHOTOS), help="Kodak photo names, comma-separated"
    )
    parser.add_argument("--model", default="default", help="shipped model name or weights file")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--data", type=Path, default=DATA / "kodak", help="the Kodak folder (read only)"
    )
    parser.add_argument(
        "--transition",
        type=int,
        default=TRANSITION,
        help=f"px over which the blur changes from cell to cell (default {TRANSITION})",
    )
    args = parser.parse_args(argv)
    from pydeblur.io import read_image
    from pydeblur.restore import Deblurrer
    from pydeblur.tiling import tune_allocator

    tune_allocator()
    deblurrer = Deblurrer(args.model, args.device)
    rows = []
    for index, name in enumerate(args.photos.split(",")):
        sharp, _ = read_image(args.data / f"{name}.png")
        for layout, specs in LAYOUTS.items():
            result = measure(sharp[..., :3], specs, deblurrer, index, args.transition)
            rows.append((name, layout, result))
            scores = ", ".join(f"{k} {v:.2f}" for k, v in result["whole"].items())
            print(f"{name} {layout}: {scores}", file=sys.stderr, flush=True)
    print(markdown(rows, args.transition))
    return 0


if __name__ == "__main__":
    sys.exit(main())
