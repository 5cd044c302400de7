"""`pydeblur demo [-o PATH]`: blur the shipped photo with the shipped kernel (fixed seed, no network
access), deblur it, and write blurred | Wiener | pydeblur side by side with the PSNR of each."""

import argparse
from pathlib import Path

from pydeblur import DEMO_PHOTO as PHOTO
from pydeblur import DEMO_PSF as KERNEL

SEED = 0
LABEL_HEIGHT = 30
GAP = 8


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="blur a shipped photo, deblur it, and write a side-by-side PNG",
        description=(
            "Blur the photo shipped with pydeblur by its shipped camera-shake kernel, add the paper's "
            "photon noise (fixed seed), deblur it with the Wiener filter and with the network, write "
            "the three side by side as a PNG and print the PSNR of each against the sharp photo."
        ),
    )
    parser.add_argument(
        "-o", "--output", default="pydeblur_demo.png", metavar="PATH", help="the PNG to write"
    )
    parser.add_argument(
        "--model", default="default", metavar="NAME|PATH", help="shipped model name or weights file"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA if available), cpu or cuda")
    parser.set_defaults(func=run)


def make_example():
    """The shipped photo blurred by the shipped kernel with the paper's photon noise.

    Returns (sharp [1, 3, H, W], blurred [1, 3, H, W], psf [kh, kw]): the blur is a linear convolution
    of the whole photo, so the blurred image is smaller than the photo by the kernel size less one and
    `sharp` is the part of the photo it is aligned with.

    >>> sharp, blurred, psf = make_example()
    >>> sharp.shape, blurred.shape, psf.shape
    (torch.Size([1, 3, 287, 351]), torch.Size([1, 3, 287, 351]), torch.Size([34, 34]))
    """
    import torch

    from pydeblur.degrade import degrade, valid_offset
    from pydeblur.io import read_image
    from pydeblur.kernel_io import read_psf

    photo, _ = read_image(PHOTO)
    psf = torch.from_numpy(read_psf(KERNEL))
    padded = torch.from_numpy(photo).permute(2, 0, 1)[None]
    blurred = degrade(padded, psf, generator=torch.Generator().manual_seed(SEED))
    top, left = valid_offset(*psf.shape)
    height, width = blurred.shape[-2:]
    sharp = padded[..., top : top + height, left : left + width]
    return sharp, blurred, psf


def side_by_side(panels: list, labels: list[str]):
    """Float [3, H, W] tensors in [0, 1] -> one HxWx3 float array, each panel under its label.

    The result is [LABEL_HEIGHT + H, sum of the widths + GAP between panels, 3].

    >>> import torch
    >>> side_by_side([torch.zeros(3, 20, 40), torch.ones(3, 20, 50)], ["dark", "light"]).shape
    (50, 98, 3)
    """
    import cv2
    import numpy as np

    columns = []
    for panel, label in zip(panels, labels, strict=True):
        image = panel.clamp(0, 1).permute(1, 2, 0).cpu().numpy()
        band = np.full((LABEL_HEIGHT, image.shape[1], 3), 255, dtype=np.uint8)
        origin = (6, LABEL_HEIGHT - 10)
        cv2.putText(band, label, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        columns.append(np.vstack([band.astype(np.float32) / 255, image]))
        columns.append(np.ones((columns[-1].shape[0], GAP, 3), dtype=np.float32))
    return np.hstack(columns[:-1])


def run(args: argparse.Namespace) -> int:
    import torch

    from pydeblur.atomic import check_writable
    from pydeblur.baselines import oracle_wiener
    from pydeblur.io import check_image_path, write_image
    from pydeblur.metrics import psnr
    from pydeblur.restore import Deblurrer
    from pydeblur.tiling import tune_allocator

    check_image_path(args.output)  # a bad output name is refused before any work
    check_writable(Path(args.output).parent)
    tune_allocator()
    deblurrer = Deblurrer(args.model, args.device)
    net, device = deblurrer.model, deblurrer.device
    sharp, blurred, psf = make_example()
    # The baseline: the best single Wiener filter among the network's own bank (its nsr values and
    # boundary padding; for a model without one, such as an HQSNet, the oracle's grid), chosen knowing
    # the sharp photo: an upper bound for any one of them.
    own_bank = {"nsr_grid": net.nsr, "margin": net.config.margin} if hasattr(net, "nsr") else {}
    with torch.no_grad():
        wiener, nsr, scores = oracle_wiener(
            blurred.to(device), psf[None, None].to(device), sharp.to(device), **own_bank
        )
    restored = deblurrer(blurred[0], psf)[None]
    results = [
        (f"blurred {float(psnr(blurred.clamp(0, 1), sharp)):.2f} dB", blurred[0]),
        (f"Wiener, best nsr {float(nsr[0]):.2g}: {float(scores.max()):.2f} dB", wiener[0].cpu()),
        (f"pydeblur ({Path(args.model).stem}) {float(psnr(restored, sharp)):.2f} dB", restored[0]),
    ]
    write_image(args.output, side_by_side([r[1] for r in results], [r[0] for r in results]))
    print(
        f"{PHOTO.name} blurred by {KERNEL.name} with photon noise (seed {SEED}); PSNR vs the sharp photo:"
    )
    for label, _ in results:
        print(f"  {label}")
    print(f"wrote {args.output}")
    return 0
