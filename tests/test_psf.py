"""Trajectories and PSFs (Boracchi-Foi port) and kernel files."""

import numpy as np
import pytest

from pydeblur.psf import (
    EXPOSURES,
    TrajectoryParams,
    centre_of_mass,
    centre_trajectories,
    exposure_weights,
    make_psfs,
    random_trajectories,
    splat_psfs,
)


@pytest.fixture(scope="module")
def psf_set():
    return make_psfs(300, seed=11)


def test_trajectory_length_is_exact():
    x = random_trajectories(50, seed=1)
    assert x.shape == (50, 2000) and x.dtype == np.complex128
    lengths = np.abs(np.diff(x, axis=1)).sum(axis=1)
    np.testing.assert_allclose(lengths, 64.0, rtol=1e-12)
    short = random_trajectories(3, seed=1, params=TrajectoryParams(length=20, samples=500))
    np.testing.assert_allclose(np.abs(np.diff(short, axis=1)).sum(axis=1), 20.0, rtol=1e-12)


def test_psfs_shapes_sums_and_signs(psf_set):
    psfs = psf_set.psfs
    assert psfs.shape == (300, 4, 34, 34) and psfs.dtype == np.float32
    assert psf_set.trajectories.shape == (300, 2000)
    assert psf_set.exposures == EXPOSURES
    assert np.all(psfs >= 0) and np.all(np.isfinite(psfs))
    np.testing.assert_allclose(psfs.sum(axis=(2, 3)), 1.0, atol=1e-5)


def test_each_psf_is_a_prefix_of_the_next(psf_set):
    weights = exposure_weights(2000, EXPOSURES)
    raw = splat_psfs(psf_set.trajectories, 34, weights)
    growth = np.diff(raw, axis=1)
    assert growth.min() > -1e-12  # the accumulator only grows
    assert np.all(np.diff(raw.sum(axis=(2, 3)), axis=1) > 0)  # each one strictly longer
    # make_psfs returns exactly these accumulators, normalised
    np.testing.assert_allclose(
        psf_set.psfs, raw / raw.sum(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-7
    )


def test_exposure_weights_are_fractional_at_the_interval_end():
    w = exposure_weights(10, [0.25, 1.0])
    np.testing.assert_array_equal(w[0], [1, 1, 0.5, 0, 0, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(w[1], np.ones(10))
    with pytest.raises(ValueError, match="increase"):
        exposure_weights(10, [0.5, 0.25])
    with pytest.raises(ValueError, match="increase"):
        exposure_weights(10, [0.5, 1.5])


def test_splatting_is_bilinear_with_real_as_column_and_imaginary_as_row():
    x = np.full((1, 4), 12.25 + 7.5j)
    psf = splat_psfs(x, 20, exposure_weights(4, [1.0]))[0, 0]
    expected = np.zeros((20, 20))
    expected[7, 12], expected[7, 13] = 0.75 * 0.5, 0.25 * 0.5
    expected[8, 12], expected[8, 13] = 0.75 * 0.5, 0.25 * 0.5
    np.testing.assert_allclose(psf, expected, atol=1e-15)


@pytest.mark.parametrize("size", [34, 33])
def test_longest_exposure_is_centred_on_the_centre_element(size):
    result = make_psfs(200, seed=4, params=TrajectoryParams(size=size))
    weights = exposure_weights(2000, EXPOSURES)
    kept = splat_psfs(result.trajectories, size, weights)[:, -1].sum(axis=(1, 2)) > 1 - 1e-9
    assert kept.mean() > 0.8  # most trajectories fit the support entirely
    for psf in result.psfs[kept, -1]:
        np.testing.assert_allclose(centre_of_mass(psf), (size // 2, size // 2), atol=2e-4)
    # the trajectory is shifted, not deformed
    np.testing.assert_allclose(
        centre_trajectories(result.trajectories, size).mean(axis=1), size // 2 * (1 + 1j)
    )


def test_seeded_reproducibility_and_independence_of_batching():
    a = make_psfs(6, seed=5)
    np.testing.assert_array_equal(a.psfs, make_psfs(6, seed=5).psfs)
    assert not np.array_equal(a.psfs, make_psfs(6, seed=6).psfs)
    # set k depends on (seed, k) only: not on how many are made, nor on the time loop's batch size
    np.testing.assert_allclose(make_psfs(3, seed=5).psfs, a.psfs[:3], atol=1e-7)
    np.testing.assert_allclose(make_psfs(6, seed=5, chunk=2).psfs, a.psfs, atol=1e-7)
    sequence = np.random.SeedSequence([5, 7])
    np.testing.assert_array_equal(make_psfs(1, sequence).psfs, make_psfs(1, [5, 7]).psfs)


def test_wide_trajectories_are_redrawn_not_left_empty():
    # about 1.5% of default trajectories leave the support during the first exposure
    psfs = make_psfs(600, seed=0).psfs
    assert np.all(psfs.sum(axis=(2, 3)) > 0.99)


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="size"):
        TrajectoryParams(size=1)
    with pytest.raises(ValueError, match="length"):
        TrajectoryParams(length=0)
    with pytest.raises(ValueError, match="anxiety"):
        TrajectoryParams(anxiety=-1)
    with pytest.raises(ValueError, match="n must"):
        make_psfs(0)


# ---------------------------------------------------------------------------------------------------
# kernel files


def test_psf_command_writes_the_psfs_and_the_figure(tmp_path):
    from pydeblur.cli import main

    assert main(["psf", "--seed", "3", "-o", str(tmp_path)]) == 0
    written = [np.load(tmp_path / f"psf{j}.npy") for j in range(1, 5)]
    expected = make_psfs(1, seed=3).psfs[0]
    for j, psf in enumerate(written):
        assert psf.dtype == np.float32 and psf.shape == (34, 34)
        np.testing.assert_array_equal(psf, expected[j])
    assert (tmp_path / "psfs.png").stat().st_size > 10_000
