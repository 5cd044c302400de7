"""`pydeblur blur`: synthesise a motion-blurred, noisy photo from a sharp one and a kernel."""

import os
from pathlib import Path

import torch

from pydeblur.degrade import degrade, pad_for_blur
from pydeblur.image_batch import from_batch, to_batch
from pydeblur.io import check_image_path, read_image, write_image
from pydeblur.kernel_io import check_psf, load_psf
from pydeblur.noise import GAUSS, PHOTONS


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "blur",
        help="blur a sharp image with a kernel and add photon noise",
        description="The sharp image is extended by reflection by the kernel's size so the output "
        "has the input's size; the blur is a true convolution with the kernel's centre element "
        "(kh // 2, kw // 2) as origin, followed by Poisson-Gaussian noise "
        "z = Poisson(L T blurred) + N(0, S^2), output z / (L T), clipped to [0, 1] by the file.",
    )
    parser.add_argument(
        "sharp",
        help="sharp image (8 or 16 bit, or a 32-bit float TIFF; grey, grey+alpha, RGB or RGBA)",
    )
    parser.add_argument(
        "--psf",
        required=True,
        metavar="KERNEL",
        help="kernel file (.npy .png .txt .csv .mat) or spec: motion:LENGTH,ANGLE, defocus:RADIUS, "
        "gaussian:SIGMA[,SIGMA2,ANGLE] (docs/kernels.md)",
    )
    parser.add_argument(
        "--photons",
        type=float,
        default=PHOTONS,
        help=f"lambda, photons at full scale ({PHOTONS:g})",
    )
    parser.add_argument("--exposure", type=float, default=1.0, help="exposure T (default 1)")
    parser.add_argument("--gauss", type=float, default=GAUSS, help=f"sigma in photons ({GAUSS:g})")
    parser.add_argument("--no-noise", action="store_true", help="blur only")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    parser.add_argument("-o", "--output", required=True, help="blurred image (same bit depth)")
    parser.set_defaults(func=run)


def run(args) -> None:
    output = Path(args.output)
    if output.exists() and os.path.samefile(args.sharp, output):
        raise ValueError(f"output {output} is the input {args.sharp}; choose another output")
    image, source_dtype = read_image(args.sharp)
    check_image_path(output, source_dtype, image.shape[2] if image.ndim == 3 else 1)
    psf = check_psf(load_psf(args.psf), f"kernel {args.psf}", image.shape[:2])
    colour, alpha, form = to_batch(image)
    padded = pad_for_blur(colour, *psf.shape, mode="reflect")
    generator = torch.Generator().manual_seed(args.seed)
    photons = None if args.no_noise else args.photons
    blurred = degrade(padded, torch.from_numpy(psf), photons, args.exposure, args.gauss, generator)
    write_image(output, from_batch(blurred, alpha, form), dtype=source_dtype)
    print(f"wrote {args.output}")
