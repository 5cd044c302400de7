"""`pydeblur blur`: synthesise a motion-blurred, noisy photo from a sharp one and a kernel."""

import os
from pathlib import Path

import numpy as np
import torch

from pydeblur.degrade import degrade, pad_for_blur
from pydeblur.io import check_image_path, read_image, write_image
from pydeblur.kernel_io import read_psf
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
    parser.add_argument("sharp", help="sharp image (8 or 16 bit; grey, RGB or RGBA)")
    parser.add_argument("--psf", required=True, help="kernel file: .npy .png .txt .csv .mat")
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
    psf = read_psf(args.psf)
    height, width = image.shape[:2]
    if psf.shape[0] > height or psf.shape[1] > width:
        raise ValueError(
            f"kernel of size {psf.shape[0]}x{psf.shape[1]} is larger than the image ({height}x{width})"
        )
    layout = image.ndim
    channels = image if layout == 3 else image[..., None]
    colour, alpha = channels[..., :3], channels[..., 3:]
    x = torch.from_numpy(np.ascontiguousarray(colour.transpose(2, 0, 1)))[None]
    padded = pad_for_blur(x, *psf.shape, mode="reflect")
    generator = torch.Generator().manual_seed(args.seed)
    photons = None if args.no_noise else args.photons
    blurred = degrade(padded, torch.from_numpy(psf), photons, args.exposure, args.gauss, generator)[
        0
    ].numpy()
    out = np.concatenate([blurred.transpose(1, 2, 0), alpha], axis=2)
    write_image(args.output, out if layout == 3 else out[..., 0], dtype=source_dtype)
    print(f"wrote {args.output}")
