"""docs/figures/howto.png: a camera-like photo deblurred by the commands docs/deblur.md shows.

    python -m training.howto_figure [--out docs/figures/howto.png]

The shipped demo photo is decoded to linear light, blurred there by the kernel `motion:21,30` (as a
camera's shake blurs), given noise (sigma 0.005, linear) and saved as an 8-bit sRGB PNG, the way a
camera writes it (`training.realphoto.degrade`). Then `pydeblur deblur` runs on that file with the
defaults, with `--gamma linear`, and with `--strength 0.5` and `2`; the figure shows each with its PSNR
against the sharp photo, and the commands are printed.
"""

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

SPEC = "motion:21,30"
RUNS = (
    ("defaults (--gamma auto = srgb)", []),
    ("--gamma linear", ["--gamma", "linear"]),
    ("--strength 0.5", ["--strength", "0.5"]),
    ("--strength 2", ["--strength", "2"]),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.howto_figure")
    parser.add_argument("--out", type=Path, default=Path("docs/figures/howto.png"))
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import pydeblur
    from pydeblur.atomic import save_figure
    from pydeblur.cli import main as cli
    from pydeblur.colour import srgb_to_linear
    from pydeblur.io import read_image, write_image
    from pydeblur.kernels import parse_psf_spec
    from pydeblur.metrics import image_psnr
    from training.realphoto import BORDER, degrade

    photo, _ = read_image(pydeblur.DEMO_PHOTO)
    camera, sharp = degrade(srgb_to_linear(photo), parse_psf_spec(SPEC), "srgb-8bit", seed=0)
    folder = Path(tempfile.mkdtemp())
    blurred = folder / "blurred.png"
    write_image(blurred, camera / 255.0)
    panels = [("camera photo (blurred)", camera / 255.0)]
    for label, options in RUNS:
        out = folder / f"{len(panels)}.png"
        command = ["deblur", str(blurred), "--psf", SPEC, "-o", str(out), "--device", "cpu"]
        shown = ["pydeblur deblur blurred.png --psf", SPEC, "-o", out.name, *options]
        print(" ".join(shown), file=sys.stderr)
        if cli(command + options) != 0:
            return 1
        panels.append((label, read_image(out)[0]))
    panels.append(("sharp", sharp))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 4.0))
    for axis, (label, image) in zip(axes, panels, strict=True):
        axis.imshow(np.clip(image, 0, 1))
        title = label if label == "sharp" else f"{label}\n{image_psnr(image, sharp, BORDER):.2f} dB"
        axis.set_title(title, fontsize=9)
        axis.axis("off")
    fig.tight_layout()
    save_figure(fig, args.out)
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
