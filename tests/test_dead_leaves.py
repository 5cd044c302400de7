"""The synthetic dead-leaves training photos (training.dead_leaves) and their place in build_data."""

import numpy as np
import pytest

from pydeblur.io import read_image, write_image
from training.dead_leaves import dead_leaves, dead_leaves_photos, photo_colours, radii

PALETTE = np.array([[10, 20, 30], [200, 100, 50], [90, 250, 160]], np.uint8)


def test_radii_follow_the_inverse_cube_law():
    r = radii(200_000, 2.0, 50.0, np.random.default_rng(0))
    assert r.min() >= 2.0 and r.max() <= 50.0
    low, high = 2.0**-2, 50.0**-2
    for q in (0.25, 0.5, 0.9):  # the quantiles of density r^-3 on [2, 50]
        expected = (low - q * (low - high)) ** -0.5
        assert np.quantile(r, q) == pytest.approx(expected, rel=0.01)


def test_dead_leaves_are_disks_of_the_palette_at_every_scale():
    image = dead_leaves(256, PALETTE, np.random.default_rng(1))
    assert image.shape == (256, 256, 3) and image.dtype == np.uint8
    flat = image.reshape(-1, 1, 3)
    of_palette = (flat == PALETTE[None]).all(axis=2).any(axis=1).mean()
    assert 0.7 < of_palette < 1  # disk interiors; anti-aliased edges blend two colours
    for colour in PALETTE:
        assert (image == colour).all(axis=2).mean() > 0.1
    edges = (np.abs(np.diff(image.astype(int), axis=1)).sum(axis=2) > 0).mean()
    assert edges > 0.05  # many small disks, not a few large ones
    assert np.array_equal(image, dead_leaves(256, PALETTE, np.random.default_rng(1)))
    assert not np.array_equal(image, dead_leaves(256, PALETTE, np.random.default_rng(2)))


def test_dead_leaves_photos_are_written_once_with_the_photos_colours(tmp_path):
    source = tmp_path / "source.png"
    pixels = np.zeros((20, 30, 3), np.float32)
    pixels[:, 15:] = (1.0, 0.5, 0.0)
    write_image(source, pixels)
    colours = photo_colours([str(source)], 50, np.random.default_rng(0))
    assert colours.shape == (50, 3) and colours.dtype == np.uint8
    assert {tuple(c) for c in colours.tolist()} <= {(0, 0, 0), (255, 128, 0)}

    folder = tmp_path / "leaves"
    paths = dead_leaves_photos(3, 64, [str(source)], folder, seed=5)
    assert len(paths) == 3 and len(set(paths)) == 3
    first, _ = read_image(paths[0])
    assert first.shape == (64, 64, 3)
    stamps = [(folder / p).stat().st_mtime_ns for p in paths]
    again = dead_leaves_photos(4, 64, [str(source)], folder, seed=5)
    assert again[:3] == paths and [(folder / p).stat().st_mtime_ns for p in paths] == stamps
    assert np.array_equal(read_image(again[0])[0], first)  # image i depends on (seed, i) alone
    with pytest.raises(ValueError, match="dead_leaves must be 0 or more"):
        dead_leaves_photos(-1, 64, [str(source)], folder)


def test_build_data_adds_the_dead_leaves_to_the_training_photos(tmp_path):
    from training.train import parse_args
    from training.train_data import build_data

    rng = np.random.default_rng(0)
    for i in range(10):
        write_image(tmp_path / f"p{i}.png", rng.random((64, 64, 3)).astype(np.float32))
    args = ["--data", str(tmp_path), "--out", str(tmp_path / "run"), "--crop", "16"]
    plain, _ = build_data(parse_args(args + ["--val-crop", "16"])[0])
    opts, _ = parse_args(args + ["--val-crop", "16", "--dead-leaves", "3"])
    train, _ = build_data(opts)
    synthetic = [p for p in train.photo_paths if "dead_leaves" in p]
    assert len(set(synthetic)) == 3 and len(train.photo_paths) > len(plain.photo_paths)
    assert all(p.startswith(str(tmp_path / "run" / "dead_leaves")) for p in synthetic)
