"""`pydeblur deblur BLURRY... --psf KERNEL -o OUT`: deblur files or folders of photos (`--psf-grid
FOLDER` instead of `--psf`: a kernel per region, `pydeblur.psf_grid`).

Under `torchrun --nproc_per_node=N`, each rank deblurs its own shard of the files (one GPU per rank when
CUDA is used) and rank 0 prints a summary of all ranks.
"""

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from pydeblur.io import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "deblur",
        help="deblur photos whose blur kernel is known",
        description=(
            "Deblur one photo, several, or every PNG/JPEG/TIFF in a folder, with a known blur kernel "
            "(--psf), or one per region of the photo (--psf-grid). "
            "Outputs keep the format and bit depth of their input unless --bit-depth says otherwise. "
            "Under `torchrun --nproc_per_node=N` "
            "the files are shared out between the processes."
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="BLURRY", help="image files or folders of them"
    )
    kernel = parser.add_mutually_exclusive_group(required=True)
    kernel.add_argument(
        "--psf",
        metavar="KERNEL",
        help="blur kernel: a file (.npy, .png, .txt, .csv or .mat) or a spec: motion:LENGTH,ANGLE, "
        "defocus:RADIUS, gaussian:SIGMA[,SIGMA2,ANGLE] (pixels; degrees counter-clockwise from +x; "
        "docs/kernels.md)",
    )
    kernel.add_argument(
        "--psf-grid",
        metavar="FOLDER",
        help="instead of --psf, a kernel per region: a folder of kernel files r0_c0.npy, r0_c1.npy, "
        "... (row, column from 0; any --psf file type), one per cell of the photo cut into rows x "
        "columns equal cells; each cell is deblurred with its own kernel and neighbours cross-fade "
        'over their shared edge (docs/deblur.md, "A kernel per region")',
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUT",
        help="output file (one input) or folder (written with the inputs' file names)",
    )
    parser.add_argument(
        "--model", default="default", metavar="NAME|PATH", help="shipped model name or weights file"
    )
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N"
    )
    parser.add_argument(
        "--tile", type=int, default=None, help="tile side in pixels (default: from free memory)"
    )
    parser.add_argument(
        "--noise",
        default="auto",
        type=parse_noise,
        metavar="auto|SIGMA",
        help="noise standard deviation of the photos in [0, 1] units of the full range (8-bit noise "
        "of 2.55 levels is 0.01); auto (default) estimates it per photo",
    )
    parser.add_argument(
        "--strength",
        default=1.0,
        type=parse_strength,
        metavar="S",
        help="above 1 trusts the data more (sharper, noisier), below 1 less (smoother); default 1",
    )
    parser.add_argument(
        "--gamma",
        default="auto",
        choices=("auto", "srgb", "linear"),
        help="srgb: the files are sRGB-encoded (camera JPEGs and PNGs): decode to linear light, where "
        "blur happens, deblur, encode again; linear: deblur the values as they are; auto (default): "
        "linear for float32 TIFFs, srgb for 8- and 16-bit files",
    )
    parser.add_argument(
        "--clip-level",
        default=CLIP_LEVEL,
        type=parse_clip_level,
        metavar="LEVEL|none",
        help="values at or above LEVEL (of the full range) are clipped highlights, left out of the "
        "data term so they do not ring (default 0.98); none: every pixel is data",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="print each photo's noise level (estimated or given)"
    )
    parser.add_argument(
        "--bit-depth",
        type=int,
        choices=(8, 16, 32),
        default=None,
        help="samples of the outputs: 8 or 16 bit integer, or 32 (float, TIFF only); default: the "
        "input's. JPEG holds 8 only, PNG 8 or 16",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="allow an output to replace its own input (refused otherwise)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        metavar="N",
        help=f"refuse images of more pixels, from their header (default {DEFAULT_MAX_PIXELS:,}; "
        "0: no limit)",
    )
    parser.set_defaults(func=run)


def list_inputs(inputs: list[str]) -> list[Path]:
    """The image files named, and those found (not recursively, hidden files skipped) in the folders
    named; each file once.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("b.png", "a.jpg", ".hidden.png", "notes.txt"):
    ...     (folder / name).touch()
    >>> [p.name for p in list_inputs([str(folder), str(folder / "b.png")])]
    ['a.jpg', 'b.png']
    """
    files: list[Path] = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            found = sorted(
                p
                for p in path.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
            )
            if not found:
                raise ValueError(f"no PNG, JPEG or TIFF images in the folder {path}")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    unique = {file.resolve(): file for file in reversed(files)}
    return [file for file in files if unique[file.resolve()] is file]


def _names_a_folder(output: str, files: list[Path], inputs: list[str]) -> bool:
    """A trailing slash or an existing folder is a folder; so is a name without a suffix when the
    inputs are several or a folder. A name with a suffix is always a file name."""
    out = Path(output)
    if output.endswith(("/", os.sep)) or out.is_dir():
        return True
    several = len(files) > 1 or any(Path(name).is_dir() for name in inputs)
    return out.suffix == "" and several


def plan_outputs(
    files: list[Path], output: str, inputs: list[str] | None = None, overwrite: bool = False
) -> list[Path]:
    """Where each input's result goes: `output` itself when it names a file, else
    `output/<input name>`. Refused: an unsupported output suffix, several inputs for one file, two
    inputs with one name, and (unless `overwrite`) an output that is its input, through links too.

    >>> [p.as_posix() for p in plan_outputs([Path("in/a.png"), Path("in/b.tif")], "out/")]
    ['out/a.png', 'out/b.tif']
    >>> plan_outputs([Path("in/a.png")], "sharp.jpg") == [Path("sharp.jpg")]
    True
    """
    from pydeblur.io import check_image_path

    out = Path(output)
    if not _names_a_folder(output, files, inputs or [str(f) for f in files]):
        if out.exists() and not out.is_file():
            raise ValueError(f"output {out} exists and is not a file")
        if len(files) > 1:
            raise ValueError(
                f"output {out} names one file for {len(files)} inputs; name a folder (end it with /)"
            )
        check_image_path(out)
        targets = [out]
    else:
        targets = [out / f.name for f in files]
    seen: dict[Path, Path] = {}
    for source, target in zip(files, targets, strict=True):
        if target in seen:
            raise ValueError(f"{seen[target]} and {source} would both be written to {target}")
        if not overwrite and target.exists() and os.path.samefile(source, target):
            raise ValueError(
                f"output {target} is the input {source}; choose another output or pass --overwrite"
            )
        seen[target] = source
    return targets


def prepare_folders(targets: list[Path]) -> None:
    """Before any work: every output folder exists and is writable, and the temporary files of
    killed earlier runs are gone from it.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "new" / "sharp.png"
    >>> prepare_folders([target])
    >>> target.parent.is_dir()
    True
    """
    from pydeblur.atomic import check_writable, remove_leftovers

    for folder in dict.fromkeys(target.parent for target in targets):
        check_writable(folder)
        remove_leftovers(folder)


CLIP_LEVEL = 0.98  # --clip-level's default (docs/deblur.md: measured)


def file_gamma(sample_type) -> str:
    """--gamma auto for a file of this sample type: "linear" for float32 data, "srgb" for 8 and 16 bit
    (camera files are sRGB-encoded).

    >>> file_gamma(np.uint8), file_gamma(np.float32)
    ('srgb', 'linear')
    """
    return "linear" if np.dtype(sample_type) == np.float32 else "srgb"


def _number(text: str, word: str | None, accept, meaning: str) -> float | None:
    """`text` as a number that `accept`s, or None when it is `word`; else an argparse error saying
    what the option takes (`meaning`)."""
    if word is not None and text == word:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not accept(value):  # nan fails every comparison
        raise argparse.ArgumentTypeError(f"must be {meaning}, got {text!r}")
    return value


def parse_noise(text: str) -> float | None:
    """--noise: "auto" (None) or a number in [0, 1].

    >>> parse_noise("auto"), parse_noise("0.01")
    (None, 0.01)
    """
    return _number(text, "auto", lambda v: 0 <= v <= 1, "auto or a number in [0, 1]")


def parse_clip_level(text: str) -> float | None:
    """--clip-level: "none" (None) or a number in (0, 1].

    >>> parse_clip_level("none"), parse_clip_level("0.98")
    (None, 0.98)
    """
    return _number(text, "none", lambda v: 0 < v <= 1, "none or a number in (0, 1]")


def parse_strength(text: str) -> float:
    """--strength: a positive number.

    >>> parse_strength("1.5")
    1.5
    """
    return _number(text, None, lambda v: 0 < v < float("inf"), "a positive number")


def describe(image, settings: dict) -> tuple[str, float]:
    """The noise level and gamma one photo is deblurred with, for --verbose: (the message, the noise
    sigma), so that an estimated sigma is handed to the deblurrer rather than estimated twice.

    >>> describe(np.full((16, 16), 0.5, np.float32), {"noise_sigma": 0.01, "gamma": "linear"})
    ('noise sigma 0.0100 (given, 2.55 of 255), gamma linear', 0.01)
    """
    from pydeblur.restore import estimate_noise

    gamma = settings.get("gamma", "linear")
    sigma = settings.get("noise_sigma")
    how = "given"
    if sigma is None:
        how, sigma = "estimated", estimate_noise(image, gamma)
    where = ", in linear light" if gamma == "srgb" else ""
    return f"noise sigma {sigma:.4f} ({how}{where}, {sigma * 255:.2f} of 255), gamma {gamma}", sigma


def _naming(source: Path, error: BaseException) -> str:
    """The error's message, on one line, starting with the file's name unless it names it already."""
    message = " ".join(str(error).split()) or type(error).__name__
    return message if str(source) in message else f"{source}: {message}"


GREY_NOTE = (
    "--model robust deblurs grey photos better: `default` was trained on noise independent per colour "
    "channel and keeps a grey photo's noise as detail (4.7-9.4 dB lower at noise 0.01-0.03; README, "
    '"Two shipped models")'
)


def is_grey(image) -> bool:
    """Whether a photo as `pydeblur.io.read_image` returns it is grey: one channel (grey+alpha too) or
    three equal colour channels, whose noise the channels then share.

    >>> import numpy as np
    >>> is_grey(np.zeros((4, 4), np.float32)), is_grey(np.random.rand(4, 4, 3).astype(np.float32))
    (True, False)
    """
    if image.ndim == 2 or image.shape[2] <= 2:
        return True
    return bool((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all())


def deblur_file(
    source: Path,
    target: Path,
    psf,
    deblurrer,
    max_pixels: int | None,
    settings: dict | None = None,
    verbose: bool = False,
    bit_depth: int | None = None,
) -> bool:
    """Deblur one file into `target` with a `pydeblur.restore.Deblurrer`; every error names `source`.
    Returns whether the photo is grey (`is_grey`).

    psf: a [kh, kw] kernel, or what else `deblurrer(image, psf, **settings)` takes (a
    `pydeblur.psf_grid.PsfGrid` with `deblur_grid` bound to a Deblurrer, as --psf-grid runs it);
    settings: `Deblurrer.__call__`'s noise_sigma, strength, gamma and
    clip_level (gamma "auto": "linear" for a float file, "srgb" for 8- and 16-bit ones); verbose:
    print the noise level used (to stderr). `target` gets the sample type of `source`, or that of
    `bit_depth` (8, 16 or 32: uint8, uint16 or float32; `pydeblur.io.SAMPLE_TYPES`).

    >>> import tempfile, numpy as np
    >>> from pydeblur.io import read_image, write_image
    >>> from pydeblur.restore import Deblurrer
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_image(folder / "blurry.png", np.full((24, 32, 3), 0.5, np.float32))
    >>> psf = np.full((5, 5), 1 / 25, np.float32)
    >>> deblur_file(folder / "blurry.png", folder / "sharp.png", psf, Deblurrer("default", "cpu"), None)
    True
    >>> read_image(folder / "sharp.png")[0].shape
    (24, 32, 3)
    """
    from pydeblur.io import SAMPLE_TYPES, check_image_path, read_image, write_image

    try:
        image, source_type = read_image(source, max_pixels=max_pixels)
        sample_type = source_type if bit_depth is None else SAMPLE_TYPES[bit_depth]
        check_image_path(target, sample_type, image.shape[2] if image.ndim == 3 else 1)
        settings = dict(settings or {})
        if settings.get("gamma") == "auto":
            settings["gamma"] = file_gamma(source_type)
        if verbose:  # the sigma said is the sigma used (estimate_noise, as the deblurrer's own)
            message, settings["noise_sigma"] = describe(image, settings)
            print(f"{source}: {message}", file=sys.stderr)
        write_image(target, deblurrer(image, psf, **settings), sample_type)
        return is_grey(image)
    except ValueError as error:
        raise ValueError(_naming(source, error)) from error
    except Exception as error:  # OSError, cv2.error, torch's RuntimeError (out of memory, say)
        raise RuntimeError(_naming(source, error)) from error


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pydeblur import distributed
    from pydeblur.kernel_io import load_psf
    from pydeblur.restore import Deblurrer, resolve_device
    from pydeblur.tiling import tune_allocator

    if args.max_pixels < 0:
        raise ValueError(f"--max-pixels must be >= 0 (0: no limit), got {args.max_pixels}")
    max_pixels = args.max_pixels or None
    tune_allocator()
    files = list_inputs(args.inputs)
    targets = plan_outputs(files, args.output, args.inputs, args.overwrite)
    if args.bit_depth is not None:  # a depth the output format cannot hold: refused before any work
        from pydeblur.io import SAMPLE_TYPES, check_image_path

        for target in targets:
            check_image_path(target, SAMPLE_TYPES[args.bit_depth], channels=1)
    if args.psf_grid is not None:
        from pydeblur.psf_grid import read_psf_grid

        psf = read_psf_grid(args.psf_grid)
        psf_shape = psf.kernel_shape
    else:
        psf = load_psf(args.psf)
        psf_shape = psf.shape
    # gloo suffices for the one gather of the summary, and works whatever the device.
    shard = distributed.start("gloo")
    try:
        device = str(shard.device(resolve_device(args.device)))  # one GPU per rank
        deblurrer = Deblurrer(args.model, device, tile=args.tile)
        if args.tile is not None:
            deblurrer.plan(psf_shape)  # a tile under twice the overlap: refused before any work
        if args.psf_grid is not None:  # each photo deblurred cell by cell
            import functools

            from pydeblur.psf_grid import deblur_grid

            deblurrer = functools.partial(deblur_grid, deblurrer=deblurrer)
        prepare_folders(targets)
        settings = {
            "noise_sigma": args.noise,
            "strength": args.strength,
            "gamma": args.gamma,
            "clip_level": args.clip_level,
        }
        options = (settings, args.verbose, args.bit_depth)
        if len(files) == 1 and shard.world == 1:  # its error is the command's one-line error
            grey = deblur_file(files[0], targets[0], psf, deblurrer, max_pixels, *options)
            print(f"wrote {targets[0]}")
            if grey and args.model == "default":
                print(f"note: {files[0]} is grey; {GREY_NOTE}", file=sys.stderr)
            return 0
        mine = shard.take(list(zip(files, targets, strict=True)))
        failures: list[str] = []
        grey = 0
        start = time.perf_counter()
        quiet = True if shard.rank != 0 else None  # None: a bar only on a terminal
        bar = tqdm(mine, unit="image", disable=quiet, file=sys.stderr)
        for source, target in bar:
            bar.set_postfix_str(source.name)
            try:
                grey += deblur_file(source, target, psf, deblurrer, max_pixels, *options)
            except Exception as error:  # a bad file does not stop the others
                failures.append(_naming(source, error))
                tqdm.write(f"pydeblur deblur: error: {failures[-1]}", file=sys.stderr)
        record = {"done": len(mine) - len(failures), "failed": len(failures), "grey": grey}
        record["seconds"] = time.perf_counter() - start
        records = shard.gather(record)
    finally:
        shard.stop()
    if shard.rank == 0:
        done = sum(r["done"] for r in records)
        failed = sum(r["failed"] for r in records)
        seconds = max(r["seconds"] for r in records)
        where = f" by {shard.world} processes" if shard.world > 1 else ""
        summary = f"deblurred {done} of {done + failed} images in {seconds:.1f} s{where} into {args.output}"
        print(summary + (f"; {failed} failed (errors above)" if failed else ""))
        grey = sum(r["grey"] for r in records)
        if grey and args.model == "default":
            print(f"note: {grey} of {done} images are grey; {GREY_NOTE}", file=sys.stderr)
    return 1 if any(r["failed"] for r in records) else 0
