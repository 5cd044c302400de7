"""A kernel per region: a spatially varying blur given as a grid of kernels, one per cell of an image
cut into rows x cols equal cells, deblurred cell by cell and cross-faded with `pydeblur.tiling`.

A grid folder holds one kernel file per cell, named `r{ROW}_c{COL}` with any suffix `read_psf`
reads (.npy, .png, .txt, .csv, .mat; formats may differ between cells): `r0_c0.npy` is the top-left
cell, `r0_c1.npy` the one to its right, `r1_c0.npy` the one below it. Rows and columns count from 0;
the grid's rows x cols are the largest indices + 1, and every cell must have its kernel. Ignored:
hidden files, subfolders, files of other suffixes (a README), and the pictures `pydeblur psf` writes
beside a kernel (`r0_c0.png` beside `r0_c0.npy`, `r0_c0-picture.png` beside `r0_c0.png`). Refused,
on one line naming the folder or file: an empty folder, another name with a kernel suffix, a cell
with two kernel files, a missing cell; and, once the image is known, a kernel larger than its cell
or cells narrower than the overlap between them.

`deblur_grid(image, grid, deblurrer)` deblurs each cell with its own kernel over the cell plus half
the tiles' overlap on each side shared with a neighbour (so its borders have context), and blends the
cells with `tiling.blend_weights`: each cell counts alone up to 16 px from its border, and neighbours
cross-fade over the 32 px around it (docs/deblur.md, "A kernel per region").
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pydeblur import tiling
from pydeblur.kernel_io import KERNEL_SUFFIXES, check_psf, read_psf

CELL_NAME = re.compile(r"^r(\d+)_c(\d+)$", re.IGNORECASE)
NAMING = "r{ROW}_c{COL} (" + ", ".join(KERNEL_SUFFIXES) + "; rows and columns from 0)"
_PICTURE_SUFFIX = "-picture"  # `pydeblur psf -o r0_c0.png` writes its picture as r0_c0-picture.png
_SHOWN = 4  # names listed in an error message before "..."


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names)} in all)" if len(names) > _SHOWN else "")


class PsfGrid:
    """The kernels of a rows x cols grid of equal cells over an image, each float32 [kh, kw] summing
    to 1 (`check_psf`); `names[r][c]` says where each came from (its file, for error messages).

    Build one with `read_psf_grid(folder)` or `PsfGrid.from_kernels(rows_of_kernels)`.

    >>> grid = PsfGrid.from_kernels([[np.ones((3, 3)), np.ones((1, 5))]])
    >>> grid.shape, grid.kernel_shape, grid.names[0][1]
    ((1, 2), (3, 5), 'psf grid: cell r0_c1')
    """

    def __init__(self, kernels, names, source: str = "psf grid"):
        self.kernels = tuple(tuple(row) for row in kernels)
        self.names = tuple(tuple(row) for row in names)
        self.source = source

    @classmethod
    def from_kernels(cls, kernels: Sequence[Sequence], source: str = "psf grid") -> PsfGrid:
        """A grid from rows of kernels (arrays, tensors or kernel files/specs as `load_psf` takes),
        top row first; every row must hold the same number of kernels.

        >>> PsfGrid.from_kernels([["motion:9,0"], ["motion:9,90"]]).shape
        (2, 1)
        """
        from pydeblur.kernel_io import load_psf

        rows = [list(row) for row in kernels]
        if not rows or any(not row for row in rows):
            raise ValueError(f"{source}: a grid needs at least one row of at least one kernel")
        if len({len(row) for row in rows}) != 1:
            lengths = ", ".join(str(len(row)) for row in rows)
            raise ValueError(f"{source}: the rows hold different numbers of kernels ({lengths})")
        names = [
            [f"{source}: cell r{r}_c{c}" for c in range(len(row))] for r, row in enumerate(rows)
        ]
        checked = []
        for r, row in enumerate(rows):
            checked.append([])
            for c, kernel in enumerate(row):
                if isinstance(kernel, (str, os.PathLike)):
                    kernel = load_psf(kernel)
                elif isinstance(kernel, torch.Tensor):
                    kernel = kernel.detach().cpu().double().numpy()
                checked[-1].append(check_psf(kernel, names[r][c]))
        return cls(checked, names, source)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols) of the grid.

        >>> PsfGrid.from_kernels([[np.ones((3, 3))] * 3] * 2).shape
        (2, 3)
        """
        return len(self.kernels), len(self.kernels[0])

    @property
    def kernel_shape(self) -> tuple[int, int]:
        """(largest kh, largest kw) over the grid's kernels: what the overlap is planned for.

        >>> PsfGrid.from_kernels([[np.ones((1, 9)), np.ones((7, 1))]]).kernel_shape
        (7, 9)
        """
        return (
            max(k.shape[0] for row in self.kernels for k in row),
            max(k.shape[1] for row in self.kernels for k in row),
        )


def cell_name(row: int, col: int, suffix: str = ".npy") -> str:
    """The file name of cell (row, col) in a grid folder.

    >>> cell_name(0, 1), cell_name(2, 0, ".png")
    ('r0_c1.npy', 'r2_c0.png')
    """
    return f"r{row}_c{col}{suffix}"


def _is_picture(path: Path, cells: dict) -> bool:
    """Whether `path` is the picture `pydeblur psf` writes beside a kernel file of the grid."""
    if path.suffix.lower() != ".png":
        return False
    stem = path.stem
    if stem.endswith(_PICTURE_SUFFIX):  # r0_c0-picture.png, beside r0_c0.png
        return (path.parent / (stem[: -len(_PICTURE_SUFFIX)] + ".png")).is_file()
    match = CELL_NAME.match(stem)  # r0_c0.png beside r0_c0.npy (or .txt, .csv, .mat)
    if not match:
        return False
    return any(p.suffix.lower() != ".png" for p in cells.get(_key(match), []))


def _key(match: re.Match) -> tuple[int, int]:
    return int(match.group(1)), int(match.group(2))


def read_psf_grid(folder: str | os.PathLike) -> PsfGrid:
    """Read a grid folder (module docstring: `r{ROW}_c{COL}.npy` etc.) as a `PsfGrid`.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_psf_grid(folder, [["motion:9,0", "motion:9,90"]])
    >>> sorted(p.name for p in folder.iterdir())
    ['r0_c0.npy', 'r0_c1.npy']
    >>> read_psf_grid(folder).shape
    (1, 2)
    >>> _ = (folder / "r1_c1.npy").write_bytes((folder / "r0_c0.npy").read_bytes())
    >>> read_psf_grid(folder)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ValueError: ...: the 2x2 kernel grid lacks r1_c0 (every cell needs a kernel named r{ROW}_c{COL} ...)
    """
    folder = Path(folder)
    if not folder.exists():
        raise FileNotFoundError(f"no such kernel grid folder: {folder}")
    if not folder.is_dir():
        raise NotADirectoryError(f"{folder}: a kernel grid is a folder of kernel files, not a file")
    cells: dict[tuple[int, int], list[Path]] = {}
    odd: list[Path] = []
    entries = sorted(
        p
        for p in folder.iterdir()
        if not p.name.startswith(".") and p.suffix.lower() in KERNEL_SUFFIXES and p.is_file()
    )
    for path in entries:
        match = CELL_NAME.match(path.stem)
        if match:
            cells.setdefault(_key(match), []).append(path)
        else:
            odd.append(path)
    for paths in cells.values():
        paths[:] = [p for p in paths if not _is_picture(p, cells)]
    odd = [p for p in odd if not _is_picture(p, cells)]
    if odd:
        raise ValueError(
            f"{folder}: {_listing([p.name for p in odd])} not named as a grid cell; kernel files "
            f"of a grid are named {NAMING} (move the others out)"
        )
    if not cells:
        raise ValueError(f"{folder}: no kernel files named {NAMING} in this folder")
    for (row, col), paths in sorted(cells.items()):
        if len(paths) > 1:
            raise ValueError(
                f"{folder}: cell r{row}_c{col} has {len(paths)} kernel files "
                f"({_listing([p.name for p in paths])}); keep one"
            )
    rows = 1 + max(row for row, _ in cells)
    cols = 1 + max(col for _, col in cells)
    missing = [
        f"r{row}_c{col}" for row in range(rows) for col in range(cols) if (row, col) not in cells
    ]
    if missing:
        raise ValueError(
            f"{folder}: the {rows}x{cols} kernel grid lacks {_listing(missing)} (every cell needs a "
            f"kernel named {NAMING})"
        )
    paths = [[cells[row, col][0] for col in range(cols)] for row in range(rows)]
    kernels = [[read_psf(path) for path in row] for row in paths]
    return PsfGrid(kernels, [[str(path) for path in row] for row in paths], str(folder))


def write_psf_grid(folder: str | os.PathLike, kernels: Sequence[Sequence], suffix: str = ".npy"):
    """Write rows of kernels (as `PsfGrid.from_kernels` takes them) as a grid folder, one
    `r{ROW}_c{COL}{suffix}` file per cell (`kernel_io.write_psf`, atomic).

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp()) / "grid"
    >>> write_psf_grid(folder, [[np.ones((3, 3))], [np.ones((5, 5))]], ".txt")
    >>> sorted(p.name for p in folder.iterdir())
    ['r0_c0.txt', 'r1_c0.txt']
    """
    from pydeblur.kernel_io import write_psf

    grid = kernels if isinstance(kernels, PsfGrid) else PsfGrid.from_kernels(kernels)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for row, kernel_row in enumerate(grid.kernels):
        for col, kernel in enumerate(kernel_row):
            write_psf(folder / cell_name(row, col, suffix), kernel)


def as_grid(grid) -> PsfGrid:
    """A `PsfGrid` as given, a grid folder read by `read_psf_grid`, or rows of kernels.

    >>> as_grid([[np.ones((3, 3)), np.ones((3, 3))]]).shape
    (1, 2)
    """
    if isinstance(grid, PsfGrid):
        return grid
    if isinstance(grid, (str, os.PathLike)):
        return read_psf_grid(grid)
    if isinstance(grid, (Sequence, np.ndarray)):
        return PsfGrid.from_kernels(grid)
    raise TypeError(
        f"grid must be a PsfGrid, a grid folder or rows of kernels, got {type(grid).__name__}"
    )


def cell_bounds(length: int, count: int) -> list[int]:
    """Edges of `count` equal cells over [0, length): count + 1 integers; sides differ by <= 1 px.

    >>> cell_bounds(100, 3)
    [0, 33, 66, 100]
    """
    return [index * length // count for index in range(count + 1)]


def cell_windows(length: int, count: int, margin: int) -> list[tuple[int, int, torch.Tensor]]:
    """Per cell along one axis: (start, stop, weight [stop - start]): the cell's pixels plus `margin`
    on each side shared with a neighbour, and its blending weight, from `tiling.blend_weights`;
    the weights sum to 1 at every position and each neighbour pair cross-fades around their
    shared edge.

    blend_weights takes tiles of one span; cells differ by up to a pixel and the outer ones have no
    margin outside the image, so the windows are laid out on an axis extended by `margin` at each
    end (cell i's window starts at its own edge there) and cut back to the image.

    >>> windows = cell_windows(100, 2, 20)
    >>> [(start, stop) for start, stop, _ in windows]
    [(0, 70), (30, 100)]
    >>> total = torch.zeros(100)
    >>> for start, stop, weight in windows:
    ...     total[start:stop] += weight
    >>> torch.allclose(total, torch.ones(100))
    True
    >>> [round(float(w), 2) for w in windows[0][2][42:58:3]]  # the first cell fades out around 50
    [1.0, 0.82, 0.61, 0.39, 0.18, 0.0]
    """
    bounds = cell_bounds(length, count)
    if count == 1:
        return [(0, length, torch.ones(length))]
    span = max(b - a for a, b in zip(bounds, bounds[1:], strict=False)) + 2 * margin
    starts = bounds[:-1]  # on the extended axis: real position + margin
    weights = tiling.blend_weights(starts[-1] + span, starts, span, 2 * margin)
    windows = []
    for start, weight in zip(starts, weights, strict=True):
        real = start - margin
        lo, hi = max(real, 0), min(real + span, length)
        windows.append((lo, hi, weight[lo - real : hi - real]))
    return windows


def _check_cells(grid: PsfGrid, height: int, width: int, overlap: int) -> None:
    rows, cols = grid.shape
    row_bounds, col_bounds = cell_bounds(height, rows), cell_bounds(width, cols)
    where = f"a {rows}x{cols} grid over the {height}x{width} image"
    for r in range(rows):
        for c in range(cols):
            cell = (row_bounds[r + 1] - row_bounds[r], col_bounds[c + 1] - col_bounds[c])
            kh, kw = grid.kernels[r][c].shape
            if kh > cell[0] or kw > cell[1]:
                raise ValueError(
                    f"{grid.names[r][c]}: the {kh}x{kw} kernel is larger than its cell "
                    f"({cell[0]}x{cell[1]} pixels of {where}); use fewer cells"
                )
    small_rows = rows > 1 and height // rows < overlap
    small_cols = cols > 1 and width // cols < overlap
    if small_rows or small_cols:
        most = (
            f"at most {max(1, height // overlap)} rows and {max(1, width // overlap)} columns here"
        )
        raise ValueError(
            f"{grid.source}: cells of {height // rows}x{width // cols} pixels ({where}) are narrower "
            f"than the {overlap}-pixel overlap neighbouring cells need for kernels up to "
            f"{grid.kernel_shape[0]}x{grid.kernel_shape[1]}; use fewer cells ({most})"
        )


def deblur_grid(
    image,
    grid,
    deblurrer=None,
    noise_sigma: float | None = None,
    strength: float = 1.0,
    gamma: str = "linear",
    clip_level: float | None = None,
):
    """Deblur `image`, blurred by a different kernel in each cell of `grid`: every cell deblurred by
    `deblurrer` (a `pydeblur.Deblurrer`; None: `Deblurrer()`) with its own kernel, over the cell plus
    half the tile overlap (`deblurrer.plan` for the grid's largest kernel) on each side it shares with
    a neighbour, and the cells cross-faded by `tiling.blend_weights` (`cell_windows`).

    grid: a `PsfGrid`, a grid folder (`read_psf_grid`) or rows of kernels. The image is cut into
    rows x cols equal cells (`cell_bounds`); each must be at least its kernel and, along an axis with
    more than one cell, at least the overlap. noise_sigma: None estimates it once from the whole image
    (in linear light with gamma="srgb", as `deblur` does) for every cell. Other settings and what
    comes back: as `Deblurrer.__call__` (same kind, dtype, shape, range and device; alpha passed
    through). A 1x1 grid is exactly `deblurrer(image, kernel, ...)`.

    >>> from pydeblur.restore import Deblurrer
    >>> blurred = np.full((64, 96, 3), 128, np.uint8)
    >>> grid = [[np.ones((3, 3)), np.ones((1, 5))]]
    >>> sharp = deblur_grid(blurred, grid, Deblurrer(device="cpu", overlap=32))
    >>> sharp.shape, sharp.dtype
    ((64, 96, 3), dtype('uint8'))
    """
    from pydeblur.colour import check_gamma
    from pydeblur.image_batch import from_batch, to_batch
    from pydeblur.restore import Deblurrer, _check_settings, estimate_noise

    _check_settings(noise_sigma, strength, clip_level)
    check_gamma(gamma)
    grid = as_grid(grid)
    deblurrer = Deblurrer() if deblurrer is None else deblurrer
    if not isinstance(deblurrer, Deblurrer):
        raise TypeError(
            f"deblurrer must be a pydeblur.Deblurrer or None, got {type(deblurrer).__name__}"
        )
    colour, alpha, form = to_batch(image)
    height, width = colour.shape[-2:]
    _tile, overlap = deblurrer.plan(grid.kernel_shape, (height, width))
    _check_cells(grid, height, width, overlap)
    margin = (overlap + 1) // 2
    rows = cell_windows(height, grid.shape[0], margin)
    cols = cell_windows(width, grid.shape[1], margin)
    results = []
    for index in range(colour.shape[0]):
        one = colour[index : index + 1]
        sigma = noise_sigma
        if sigma is None:  # once for the whole image, as `deblur` estimates it
            sigma = estimate_noise(one, gamma)
        out = torch.zeros(one.shape)
        for r, (top, bottom, row_weight) in enumerate(rows):
            for c, (left, right, col_weight) in enumerate(cols):
                crop = one[..., top:bottom, left:right].contiguous()
                sharp = deblurrer(
                    crop, grid.kernels[r][c], sigma, strength, gamma, clip_level
                ).float()
                out[..., top:bottom, left:right] += sharp * (row_weight[:, None] * col_weight)
        results.append(out)
    return from_batch(results[0] if len(results) == 1 else torch.cat(results), alpha, form)
