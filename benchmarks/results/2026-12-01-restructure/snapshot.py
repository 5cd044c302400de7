"""Outputs to compare before/after the #16 restructuring: deblur() of all 32 Levin captures and of a
tiled large image (npz); the demo and the evaluation JSON are made by the commands in run.sh."""
import sys
from pathlib import Path
import numpy as np, torch
out = Path(sys.argv[1]); out.mkdir(parents=True, exist_ok=True)
levin = Path("/work/shared/data/levin")
from pydeblur.io import read_image
from pydeblur.kernel_io import read_psf
import pydeblur
res = {}
for i in range(1, 5):
    for k in range(1, 9):
        img, _ = read_image(levin / "blurred" / f"im{i}_kernel{k}.png")
        psf = read_psf(levin / "kernels" / f"kernel{k}.npy")
        res[f"levin_{i}_{k}"] = pydeblur.deblur(img, psf, device="cpu")
img, _ = read_image(levin / "blurred" / "im1_kernel4.png")
big = np.tile(img, (3, 3))
res["tiled"] = pydeblur.deblur(big, read_psf(levin / "kernels" / "kernel4.npy"), device="cpu", tile=640)
res["tiled_u8"] = pydeblur.deblur((big * 255).round().astype(np.uint8), read_psf(levin / "kernels" / "kernel4.npy"), device="cpu", tile=640)
np.savez(out / "deblur.npz", **res)
print("saved", len(res))
