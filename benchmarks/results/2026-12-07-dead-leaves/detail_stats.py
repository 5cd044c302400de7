"""Median `pydeblur.datasets.detail` of 128² crops: the train photos at scales 1, 0.5, 0.3 (uniform
positions, and the most detailed of 8 or 32), the dead-leaves photos of a run, Kodak's central crops:
PYTHONPATH=. python benchmarks/results/2026-12-07-dead-leaves/detail_stats.py RUN_FOLDER
"""

import sys
from pathlib import Path

import numpy as np

from pydeblur.datasets import detail, split_photos
from pydeblur.io import read_image
from training.train_data import scaled_photos

CROP, PER_PHOTO = 128, 20
run = Path(sys.argv[1])
rng = np.random.default_rng(0)


def crops(image, candidates):
    h, w = image.shape[:2]
    out = []
    for _ in range(PER_PHOTO):
        best = max(
            detail(image[y : y + CROP, x : x + CROP])
            for y, x in zip(
                rng.integers(0, h - CROP, candidates),
                rng.integers(0, w - CROP, candidates),
                strict=True,
            )
        )
        out.append(best)
    return out


train = split_photos("/work/shared/data/photos", seed=0)["train"]
for scale in (1.0, 0.5, 0.3):
    images = [read_image(p)[0] for p in scaled_photos(train, scale, run / f"photos_x{scale:g}")]
    row = [np.median(sum((crops(im, n) for im in images), [])) for n in (1, 8, 32)]
    print(
        f"train photos x{scale:g}: uniform {row[0]:.4f}, 8 candidates {row[1]:.4f}, 32 {row[2]:.4f}"
    )
leaves = [read_image(p)[0] for p in sorted((run / "dead_leaves").glob("*.png"))]
row = [np.median(sum((crops(im, n) for im in leaves), [])) for n in (1, 32)]
print(f"dead leaves ({len(leaves)}): uniform {row[0]:.4f}, 32 candidates {row[1]:.4f}")
kodak = sorted(Path("/work/shared/data/kodak").glob("*.png"))
central = []
for path in kodak:
    im = read_image(path)[0]
    y, x = (im.shape[0] - CROP) // 2, (im.shape[1] - CROP) // 2
    central.append(detail(im[y : y + CROP, x : x + CROP]))
print(f"Kodak central crops ({len(kodak)}): {np.median(central):.4f}")
