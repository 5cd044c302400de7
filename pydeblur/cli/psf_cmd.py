"""`pydeblur psf`: write a blur kernel and a picture of it: the PSFs of one random camera-shake
trajectory (Boracchi & Foi), a parametric kernel from a spec (`motion:15,30`, `defocus:4`,
`gaussian:2`), or the kernel a point light shows in a photo (`--from-photo PHOTO --box X,Y,W,H`)."""

from pathlib import Path

import numpy as np

from pydeblur.atomic import check_writable, save_figure
from pydeblur.kernel_io import KERNEL_SUFFIXES, write_psf
from pydeblur.psf import (
    ANXIETY,
    EXPOSURES,
    PSF_SIZE,
    TRAJECTORY_LENGTH,
    TrajectoryParams,
    make_psfs,
)

# the camera-shake options: None when not given, so that a spec or a photo can refuse them
_SHAKE_DEFAULTS = {
    "seed": 0,
    "size": PSF_SIZE,
    "length": TRAJECTORY_LENGTH,
    "anxiety": ANXIETY,
    "exposures": list(EXPOSURES),
}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "psf",
        help="make a blur kernel: camera shake, motion/defocus/Gaussian, or from a point light",
        description="Without SPEC or --from-photo: writes psf1.npy .. psfE.npy (float32, sum 1, one per "
        "exposure fraction) of one random camera-shake trajectory and psfs.png (the trajectory and the "
        "PSFs) to the folder OUT. With a SPEC (motion:LENGTH[,ANGLE], defocus:RADIUS, "
        "gaussian:SIGMA[,SIGMA2,ANGLE]; pixels, degrees counter-clockwise from +x, image y down) or "
        "--from-photo: writes the kernel file OUT (.npy, .png, .txt, .csv or .mat) and a picture of "
        "it, OUT with the suffix .png (OUT-picture.png when OUT is a .png). docs/kernels.md.",
    )
    parser.add_argument(
        "spec",
        nargs="?",
        metavar="SPEC",
        help="a parametric kernel, e.g. motion:15,30 or defocus:4",
    )
    shake = parser.add_argument_group("camera shake (without SPEC or --from-photo)")
    shake.add_argument("--seed", type=int, default=None, help="random seed (default 0)")
    shake.add_argument("--size", type=int, default=None, help=f"PSF size (default {PSF_SIZE})")
    shake.add_argument(
        "--length",
        type=float,
        default=None,
        help=f"trajectory length in pixels (default {TRAJECTORY_LENGTH:g})",
    )
    shake.add_argument(
        "--anxiety", type=float, default=None, help=f"shake intensity (default {ANXIETY:g})"
    )
    shake.add_argument(
        "--exposures",
        type=float,
        nargs="+",
        default=None,
        help="cumulative exposure fractions (default 1/8 1/4 1/2 1)",
    )
    photo = parser.add_argument_group("from a point light (a star, a distant LED) in a photo")
    photo.add_argument("--from-photo", metavar="PHOTO", help="the photo (8 or 16 bit)")
    photo.add_argument(
        "--box",
        metavar="X,Y,W,H",
        help="the crop around one point light: left column, top row, width, height, in pixels",
    )
    photo.add_argument(
        "--linear",
        action="store_true",
        help="the photo's values are linear light (default: sRGB, decoded before measuring)",
    )
    photo.add_argument(
        "--threshold", type=float, default=3.0, help="keep pixels above this many noise sigmas (3)"
    )
    photo.add_argument(
        "--min-snr", type=float, default=20.0, help="refuse a fainter source (signal-to-noise 20)"
    )
    photo.add_argument(
        "--saturation",
        type=float,
        default=0.98,
        help="values at or above this fraction of full scale are clipped (0.98)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output folder (camera shake) or kernel file (SPEC, --from-photo)",
    )
    parser.set_defaults(func=run)


def run(args) -> None:
    if args.spec is None and args.from_photo is None:
        if args.box is not None:
            raise ValueError("--box goes with --from-photo")
        return _run_shake(args)
    given = [f"--{name}" for name in _SHAKE_DEFAULTS if getattr(args, name) is not None]
    if given:
        raise ValueError(
            f"{', '.join(given)}: camera-shake options, not for a SPEC or --from-photo"
        )
    if args.spec is not None and args.from_photo is not None:
        raise ValueError("give a SPEC or --from-photo, not both")
    out = Path(args.output)
    if out.suffix.lower() not in KERNEL_SUFFIXES:
        raise ValueError(
            f"-o {out}: a kernel file needs one of the suffixes {', '.join(KERNEL_SUFFIXES)}"
        )
    picture = (
        out.with_name(out.stem + "-picture.png")
        if out.suffix.lower() == ".png"
        else out.with_suffix(".png")
    )
    check_writable(out.parent)
    if args.spec is not None:
        from pydeblur.kernels import parse_psf_spec

        kernel = parse_psf_spec(args.spec)
        write_psf(out, kernel)
        draw_kernel(kernel, picture, args.spec.strip())
        print(f"wrote {out} ({kernel.shape[0]}x{kernel.shape[1]} kernel {args.spec}) and {picture}")
        return None
    kernel, info, (crop, (left, top)) = _from_photo(args)
    write_psf(out, kernel)
    x, y = info["centre"]
    title = f"{Path(args.from_photo).name}, box {args.box}"
    draw_kernel(kernel, picture, title, crop=crop, centre=(x - left, y - top))
    print(
        f"wrote {out} ({kernel.shape[0]}x{kernel.shape[1]} kernel of the point light at x={x:.1f}, "
        f"y={y:.1f}: signal-to-noise {info['snr']:.0f}, {info['pixels']} pixels, noise sigma "
        f"{info['noise']:.2g}) and {picture}"
    )
    return None


def _from_photo(args):
    """(kernel, info, (crop, (x, y))) of `--from-photo` and `--box`."""
    from pydeblur.io import read_image, to_integer
    from pydeblur.point_light import kernel_from_point_light

    if args.box is None:
        raise ValueError("--from-photo needs --box X,Y,W,H (the crop around one point light)")
    try:
        box = tuple(int(part) for part in args.box.split(","))
        if len(box) != 4:
            raise ValueError
    except ValueError:
        raise ValueError(f"--box must be X,Y,W,H (four integers), got {args.box!r}") from None
    image, sample_type = read_image(args.from_photo)
    try:
        kernel, info = kernel_from_point_light(
            to_integer(image, sample_type),  # the file's own samples: their quantisation step
            box,
            threshold=args.threshold,
            min_snr=args.min_snr,
            saturation=args.saturation,
            linear=args.linear,
            return_info=True,
        )
    except ValueError as error:
        raise ValueError(f"{args.from_photo}: {error}") from error
    x, y, w, h = box
    return kernel, info, (image[y : y + h, x : x + w], (x, y))


def _run_shake(args) -> None:
    for name, default in _SHAKE_DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    params = TrajectoryParams(size=args.size, length=args.length, anxiety=args.anxiety)
    result = make_psfs(1, args.seed, args.exposures, params)
    out = Path(args.output)
    check_writable(out)
    for j, psf in enumerate(result.psfs[0], start=1):
        write_psf(out / f"psf{j}.npy", psf)
    draw_psfs(result.psfs[0], result.trajectories[0], result.exposures, out / "psfs.png")
    print(f"wrote {len(result.exposures)} PSFs and psfs.png to {out}")


def draw_kernel(kernel: np.ndarray, path: Path, title: str, crop=None, centre=None) -> None:
    """A picture of one kernel [kh, kw], enlarged on a square canvas (nearest neighbour, a red + on
    its centre element (kh // 2, kw // 2)), titled with `title` and its size; with `crop` (a photo's
    crop [h, w] or [h, w, 3 | 4] in [0, 1]), the crop first, a + at `centre` (x, y) in it.

    >>> import tempfile
    >>> from pydeblur.kernels import motion
    >>> target = Path(tempfile.mkdtemp()) / "k.png"
    >>> draw_kernel(motion(15, 30), target, "motion:15,30")
    >>> target.is_file()
    True
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kh, kw = kernel.shape
    side = max(kh, kw)
    canvas = np.zeros((side, side), np.float32)
    top, left = (side - kh) // 2, (side - kw) // 2
    canvas[top : top + kh, left : left + kw] = kernel
    panels = 1 if crop is None else 2
    fig, axes = plt.subplots(1, panels, figsize=(3.4 * panels, 3.7), constrained_layout=True)
    axes = np.atleast_1d(axes)
    if crop is not None:
        shown = crop[..., :3] if crop.ndim == 3 else crop
        axes[0].imshow(shown, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if centre is not None:
            axes[0].plot(*centre, "+", color="red", ms=10)
        axes[0].set_title(title, fontsize=8)
    ax = axes[-1]
    ax.imshow(canvas, cmap="gray", vmin=0, interpolation="nearest")
    ax.plot(side // 2, side // 2, "+", color="red", ms=8)
    ax.set_title(
        (f"{title}\n" if crop is None else "kernel\n")
        + f"{kh}x{kw} px (rows x columns), peak {kernel.max():.3g}",
        fontsize=8,
    )
    for axis in axes:
        axis.set_xticks([])
        axis.set_yticks([])
    save_figure(fig, path)


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
