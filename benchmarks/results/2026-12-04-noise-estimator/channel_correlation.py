"""The channel-correlation estimate on crops like the training data's (independent noise, true
correlation 0), binned by the true noise sigma, with the old detail (finest diagonal Haar) and the
new (mixed third difference). Run from the repository root:

    PYTHONPATH=. python benchmarks/results/2026-12-04-noise-estimator/channel_correlation.py
"""

import torch

from pydeblur import datasets
from pydeblur.noise import estimate_channel_correlation, expected_noise_variance
from training.eval_sets import haar_detail


def haar_correlation(y: torch.Tensor) -> torch.Tensor:
    """`estimate_channel_correlation` as it was before 2026-12-04, on the Haar detail."""
    d = haar_detail(y)
    each = d.flatten(1).abs().median(dim=1).values
    mean = d.mean(dim=1).flatten(1).abs().median(dim=1).values
    c = y.shape[1]
    return (((mean / each) ** 2 * c - 1) / (c - 1)).clamp(0, 1)


def main() -> None:
    photos = datasets.split_photos("../shared/data/photos")["val"]
    data = datasets.BlurredCrops(
        photos, 16, crop_size=128, photons=(1024.0, 524288.0), gauss=(0.0, 8.0), seed=5
    )
    rows = []
    for i in range(len(data)):
        item = data[i]
        y = item["blurred"][None]
        sigma = float(
            expected_noise_variance(y, item["exposure"], item["photons"], item["gauss"])[0] ** 0.5
        )
        rows.append(
            (sigma, float(haar_correlation(y)[0]), float(estimate_channel_correlation(y)[0]))
        )
    bins = [(0, 0.005), (0.005, 0.02), (0.02, 1)]
    print("| true sigma | crops | Haar: mean correlation | third difference: mean correlation |")
    print("|---|---|---|---|")
    for low, high in bins:
        sel = [r for r in rows if low <= r[0] < high]
        if sel:
            h = sum(r[1] for r in sel) / len(sel)
            t = sum(r[2] for r in sel) / len(sel)
            print(f"| {low}-{high} | {len(sel)} | {h:.3f} | {t:.3f} |")


if __name__ == "__main__":
    main()
