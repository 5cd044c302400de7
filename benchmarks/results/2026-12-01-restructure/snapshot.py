"""Outputs compared before/after the #16 restructuring: deblur() of all 32 Levin captures and of a
tiled large image (float and uint8), saved to OUT/deblur.npz. Usage: python snapshot.py OUT"""

import sys
from pathlib import Path

import numpy as np

import pydeblur
from pydeblur.io import read_image
from pydeblur.kernel_io import read_psf


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    levin = Path("/work/shared/data/levin")
    results = {}
    for i in range(1, 5):
        for k in range(1, 9):
            image, _ = read_image(levin / "blurred" / f"im{i}_kernel{k}.png")
            psf = read_psf(levin / "kernels" / f"kernel{k}.npy")
            results[f"levin_{i}_{k}"] = pydeblur.deblur(image, psf, device="cpu")
    image, _ = read_image(levin / "blurred" / "im1_kernel4.png")
    big = np.tile(image, (3, 3))
    psf = read_psf(levin / "kernels" / "kernel4.npy")
    results["tiled"] = pydeblur.deblur(big, psf, device="cpu", tile=640)
    results["tiled_u8"] = pydeblur.deblur(
        (big * 255).round().astype(np.uint8), psf, device="cpu", tile=640
    )
    np.savez(out / "deblur.npz", **results)
    print("saved", len(results))


if __name__ == "__main__":  # pytest imports it (doctest-modules): nothing runs then
    main(Path(sys.argv[1]))
