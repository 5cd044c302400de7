"""How wrong are Levin's kernels for their captures, next to training's perturb_psf?

For each of the 32 captures: the model residual y - k * gt (rms over the valid interior, after the best
0.25-px shift of k * gt) with the given kernel, with a kernel fitted to (gt, y) by non-negative least
squares (the floor: noise, quantisation, anything no single kernel explains), and with the given
kernel replaced by perturb_psf(k, s) applied to a synthetic twin (what training shows the network).
Diagnostic only: nothing here is trained on or tuned from.

    python benchmarks/results/2026-12-07-kernel-errors/levin_kernel_error.py
"""

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import shift as nd_shift
from scipy.optimize import nnls
from scipy.signal import fftconvolve

from training.eval_sets import levin_items
from training.levin_scoring import best_shift
from training.train_data import perturb_psf

HERE = Path(__file__).parent
PAD = 5  # the fitted kernel's extra margin per side: room for the captures' offsets


def best_shift_rms(prediction, y, border):
    """rms of y - prediction over the interior, prediction at its best shift (-8..8 px in 0.25-px
    steps, bilinear: the benchmark's own search)."""
    mse, _ = best_shift(
        torch.from_numpy(prediction)[None, None], torch.from_numpy(y)[None, None], 8, border=border
    )
    return float(mse.sqrt())


def fit_kernel(x, y, size):
    half = size // 2
    windows = np.lib.stride_tricks.sliding_window_view(x, (size, size))
    rows = windows.reshape(-1, size * size)[:, ::-1]  # true convolution flips the kernel
    target = y[half : half + windows.shape[0], half : half + windows.shape[1]].reshape(-1)
    keep = np.arange(rows.shape[0]) % 3 == 0  # a third of the rows: plenty for 1,000 unknowns
    k, _ = nnls(
        rows[keep].astype(np.float64), target[keep].astype(np.float64), maxiter=20 * size * size
    )
    return k.reshape(size, size)


def main():
    torch.manual_seed(0)
    print("item | given | fitted | perturbed 0.3 | perturbed 1.0 | fitted-vs-given kernel rel. L2")
    table = []
    for item in levin_items():
        x = item["sharp"][0].numpy().astype(np.float64)
        y = item["blurred"][0].numpy().astype(np.float64)
        k = item["psf"][0].numpy().astype(np.float64)
        size = k.shape[0] + 2 * PAD
        border = size + 8
        given = best_shift_rms(fftconvolve(x, k, mode="same"), y, border)
        k_fit = fit_kernel(x, y, size)
        fitted = best_shift_rms(fftconvolve(x, k_fit, mode="same"), y, border)
        clean = fftconvolve(x, k, mode="same")
        perturbed = []
        for strength in (0.3, 1.0):
            values = []
            for _ in range(4):
                kp = perturb_psf(item["psf"][None].double(), strength)[0, 0].numpy()
                values.append(best_shift_rms(fftconvolve(x, kp, mode="same"), clean, border))
            perturbed.append(float(np.mean(values)))
        k_pad = np.pad(k, PAD)
        best_rel = min(
            np.linalg.norm(nd_shift(k_pad, (dy, dx), order=1) - k_fit) / np.linalg.norm(k_pad)
            for dy in np.arange(-5, 5.01, 0.25)
            for dx in np.arange(-5, 5.01, 0.25)
        )
        row = (given, fitted, *perturbed, best_rel)
        table.append(row)
        print(
            item["name"],
            " | ".join(f"{255 * v:.2f}" if i < 4 else f"{v:.3f}" for i, v in enumerate(row)),
            flush=True,
        )
        np.save(HERE / f"fitted_{item['name']}.npy", k_fit.astype(np.float32))
    mean = np.mean(table, axis=0)
    print(
        "mean (x255 for the rms columns):",
        " | ".join(f"{255 * v:.2f}" if i < 4 else f"{v:.3f}" for i, v in enumerate(mean)),
    )


if __name__ == "__main__":
    main()
