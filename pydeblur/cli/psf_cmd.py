"""`pydeblur psf`: draw one camera-shake trajectory and write its PSFs and a picture of them."""

from pathlib import Path

import numpy as np

from pydeblur.atomic import check_writable, save_figure
from pydeblur.kernel_io import write_psf
from pydeblur.psf import (
    ANXIETY,
    EXPOSURES,
    PSF_SIZE,
    TRAJECTORY_LENGTH,
    TrajectoryParams,
    make_psfs,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "psf",
        help="make the motion-blur PSFs of one random camera-shake trajectory",
        description="Writes psf1.npy .. psfE.npy (float32, sum 1, one per exposure fraction) and "
        "psfs.png (the trajectory and the PSFs) to DIR.",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--size", type=int, default=PSF_SIZE, help=f"PSF size (default {PSF_SIZE})")
    parser.add_argument(
        "--length", type=float, default=TRAJECTORY_LENGTH, help="trajectory length in pixels"
    )
    parser.add_argument("--anxiety", type=float, default=ANXIETY, help="shake intensity")
    parser.add_argument(
        "--exposures",
        type=float,
        nargs="+",
        default=list(EXPOSURES),
        help="cumulative exposure fractions (default 1/8 1/4 1/2 1)",
    )
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="output folder")
    parser.set_defaults(func=run)


def run(args) -> None:
    params = TrajectoryParams(size=args.size, length=args.length, anxiety=args.anxiety)
    result = make_psfs(1, args.seed, args.exposures, params)
    out = Path(args.output)
    check_writable(out)
    for j, psf in enumerate(result.psfs[0], start=1):
        write_psf(out / f"psf{j}.npy", psf)
    draw_psfs(result.psfs[0], result.trajectories[0], result.exposures, out / "psfs.png")
    print(f"wrote {len(result.exposures)} PSFs and psfs.png to {out}")


def draw_psfs(psfs: np.ndarray, trajectory: np.ndarray, exposures, path: Path) -> None:
    """The trajectory coloured by exposure segment, then each PSF (as in Boracchi & Foi's Figure 1).

    psfs: [E, size, size]; trajectory: complex [samples]; one float per PSF in exposures.

    >>> import tempfile
    >>> result = make_psfs(1, seed=0, params=TrajectoryParams(size=9, length=8.0, samples=200))
    >>> target = Path(tempfile.mkdtemp()) / "psfs.png"
    >>> draw_psfs(result.psfs[0], result.trajectories[0], result.exposures, target)
    >>> target.is_file()
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(psfs)
    size = psfs.shape[-1]
    fig, axes = plt.subplots(1, n + 1, figsize=(2.6 * (n + 1), 2.9), constrained_layout=True)
    colours = plt.cm.viridis(np.linspace(0, 0.9, n))
    samples = len(trajectory)
    start = 0
    for j, fraction in enumerate(exposures):
        end = int(np.ceil(fraction * samples))
        part = trajectory[max(start - 1, 0) : end]
        axes[0].plot(part.real, part.imag, color=colours[j], lw=1.5, label=f"T = {fraction:g}")
        start = end
    axes[0].plot(trajectory[0].real, trajectory[0].imag, "o", color=colours[0], ms=4)
    centre = size // 2
    axes[0].plot(centre, centre, "+", color="red", ms=8)
    axes[0].set(
        xlim=(-0.5, size - 0.5), ylim=(size - 0.5, -0.5), aspect="equal", title="trajectory"
    )
    axes[0].legend(fontsize=6, loc="lower right")
    for j, (ax, psf) in enumerate(zip(axes[1:], psfs, strict=True)):
        ax.imshow(psf, cmap="gray", interpolation="nearest", vmin=0)
        ax.plot(centre, centre, "+", color="red", ms=6)
        ax.set_title(f"PSF {j + 1}, T = {exposures[j]:g}")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    save_figure(fig, path)
