"""What is left of each Levin capture once the best single kernel explains it: y - k_fit * gt (the
kernels of levin_kernel_error.py), over the interior. Its rms against the noise estimator's reading of
the capture and of the residual itself, and its correlation between neighbouring pixels (0 for white
noise); the synthetic twins' residual with their exact kernels as the check of the method (white noise
of the known sigma). Diagnostic only.

    PYTHONPATH=. python benchmarks/results/2026-12-07-kernel-errors/residual_noise.py
"""

from pathlib import Path

import numpy as np
import torch
from scipy.signal import fftconvolve

from pydeblur.noise import estimate_noise_sigma
from training.eval_sets import levin_items, levin_synthetic_items

HERE = Path(__file__).parent


def neighbour_correlation(r, lag):
    a, b = r[:, :-lag].ravel(), r[:, lag:].ravel()
    c, d = r[:-lag, :].ravel(), r[lag:, :].ravel()
    return 0.5 * (np.corrcoef(a, b)[0, 1] + np.corrcoef(c, d)[0, 1])


def main():
    print(
        "set item | rms | estimate(y) | estimate(residual) | corr lag 1, 2, 4 (x255 for the first three)"
    )
    for name, items in (("levin", levin_items()), ("synthetic", levin_synthetic_items())):
        rows = []
        for it in items:
            x = it["sharp"][0].numpy().astype(np.float64)
            y = it["blurred"][0].numpy().astype(np.float64)
            if name == "levin":
                k = np.load(HERE / f"fitted_{it['name']}.npy").astype(np.float64)
            else:  # the twin was blurred with the given kernel exactly: the residual is its noise
                k = it["psf"][0].numpy().astype(np.float64)
            b = k.shape[0] + 8
            r = (y - fftconvolve(x, k, mode="same"))[b:-b, b:-b]
            r -= r.mean()
            row = [
                float(np.sqrt(np.mean(r**2))),
                float(estimate_noise_sigma(it["blurred"][None])),
                float(estimate_noise_sigma(torch.from_numpy(r)[None, None].float())),
                *(neighbour_correlation(r, lag) for lag in (1, 2, 4)),
            ]
            rows.append(row)
        mean = np.mean(rows, axis=0)
        print(
            name,
            " | ".join(f"{255 * v:.2f}" if i < 3 else f"{v:.2f}" for i, v in enumerate(mean)),
            flush=True,
        )


if __name__ == "__main__":
    main()
