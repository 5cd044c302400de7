"""Split the photos by source photo and materialise the fixed test set.

    python -m training.prepare_data [--photos ../shared/data/photos] [--out data/]

writes OUT/split.json (train/val/test photo lists) and OUT/test_set.safetensors (every test photo x
--test-crops crops x 4 exposures, the paper's noise: 4 photos x 16 x 4 = 256 images by default).
"""

import argparse
import time
from pathlib import Path

from pydeblur.datasets import (
    BlurredCrops,
    load_test_set,
    save_test_set,
    split_photos,
    write_manifest,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PHOTOS = REPO.parent / "shared" / "data" / "photos"
TEST_SEED = (
    1234  # the test set's crops, trajectories and noise (any fixed number; not the split seed)
)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--photos", default=str(DEFAULT_PHOTOS), help="folder of sharp photos")
    parser.add_argument("--out", default=str(REPO / "data"), help="output folder (default data/)")
    parser.add_argument("--seed", type=int, default=0, help="split seed (default 0)")
    parser.add_argument("--test-crops", type=int, default=16, help="crops per test photo (16)")
    parser.add_argument("--crop-size", type=int, default=256, help="test crop size (256)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    split = split_photos(args.photos, seed=args.seed)
    write_manifest(split, out / "split.json")
    print(", ".join(f"{name}: {len(paths)} photos" for name, paths in split.items()))

    start = time.perf_counter()
    test = BlurredCrops(split["test"], args.test_crops, crop_size=args.crop_size, seed=TEST_SEED)
    path = out / "test_set.safetensors"
    save_test_set(test, path)
    size_mb = path.stat().st_size / 2**20
    print(
        f"wrote {path}: {len(load_test_set(path))} images ({test.n_crops} crops) "
        f"{size_mb:.0f} MiB in {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
