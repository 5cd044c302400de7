"""pydeblur.kernel_io: kernel files in every format, round trips, and the kernel checks."""

import h5py
import numpy as np
import pytest

from pydeblur.kernel_io import check_psf, read_psf, write_psf


@pytest.fixture
def kernel():
    rng = np.random.default_rng(0)
    k = rng.random((5, 7)).astype(np.float32)  # not square: catches transposes
    k[0, 0] = 0
    return k / k.sum()


@pytest.mark.parametrize("name", ["k.npy", "k.txt", "k.csv", "k.mat"])
def test_exact_round_trips(tmp_path, kernel, name):
    write_psf(tmp_path / name, kernel)
    np.testing.assert_allclose(read_psf(tmp_path / name), kernel, rtol=1e-6, atol=1e-9)


def test_mat_v73_round_trip_and_matlab_layout(tmp_path, kernel):
    write_psf(tmp_path / "k.mat", kernel, mat_version="7.3")
    assert h5py.is_hdf5(tmp_path / "k.mat")
    assert (tmp_path / "k.mat").read_bytes().startswith(b"MATLAB 7.3 MAT-file")
    np.testing.assert_allclose(read_psf(tmp_path / "k.mat"), kernel, rtol=1e-6)
    # a file as MATLAB writes it: column-major, so HDF5 holds the transpose; two variables
    with h5py.File(tmp_path / "m.mat", "w") as f:
        f["kernel"] = kernel.T.astype(np.float64)
        f["other"] = np.zeros((3, 3))
    np.testing.assert_allclose(read_psf(tmp_path / "m.mat"), kernel, rtol=1e-6)
    np.testing.assert_allclose(read_psf(tmp_path / "m.mat", key="kernel"), kernel, rtol=1e-6)
    with pytest.raises(ValueError, match="no variable"):
        read_psf(tmp_path / "m.mat", key="nope")


def test_mat_v5_with_several_variables_needs_a_key(tmp_path, kernel):
    import scipy.io

    scipy.io.savemat(tmp_path / "a.mat", {"blurA": kernel, "blurB": kernel.T})
    with pytest.raises(ValueError, match="key="):
        read_psf(tmp_path / "a.mat")
    np.testing.assert_allclose(read_psf(tmp_path / "a.mat", key="blurB"), kernel.T, rtol=1e-6)


@pytest.mark.parametrize("bits", [8, 16])
def test_png_round_trip_within_quantisation(tmp_path, kernel, bits):
    write_psf(tmp_path / "k.png", kernel, bits=bits)
    back = read_psf(tmp_path / "k.png")
    assert back.shape == kernel.shape and back.dtype == np.float32
    np.testing.assert_allclose(back.sum(), 1.0, rtol=1e-6)
    # one quantisation step of the maximum, relative, renormalised
    np.testing.assert_allclose(back, kernel, atol=2 * kernel.max() / (2**bits - 1))


def test_text_kernels_with_any_separator(tmp_path):
    (tmp_path / "a.txt").write_text("0 1 0\n1 2 1\n0 1 0\n")
    (tmp_path / "b.csv").write_text("0,1,0\n1,2,1\n0,1,0\n")
    expected = np.array([[0, 1, 0], [1, 2, 1], [0, 1, 0]], np.float32) / 6
    np.testing.assert_allclose(read_psf(tmp_path / "a.txt"), expected)
    np.testing.assert_allclose(read_psf(tmp_path / "b.csv"), expected)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (np.zeros((0, 3)), "empty"),
        (np.array([[0.5, -0.2], [0.3, 0.4]]), "negative"),
        (np.array([[0.5, np.nan], [0.3, 0.4]]), "NaN"),
        (np.array([[0.5, np.inf], [0.3, 0.4]]), "NaN or infinite"),
        (np.zeros((3, 3)), "is all zeros"),
        (np.ones(5), "2-D"),
        (np.array([["a"]]), "numeric"),
    ],
)
def test_invalid_kernels_get_clear_errors(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        check_psf(bad)
    if bad.dtype.kind == "f" and bad.ndim == 2:
        np.save(tmp_path / "bad.npy", bad)
        with pytest.raises(ValueError, match=message):
            read_psf(tmp_path / "bad.npy")


def test_kernel_larger_than_the_image_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="larger than the image"):
        check_psf(np.ones((9, 9)), image_shape=(8, 100))
    assert check_psf(np.ones((8, 8)), image_shape=(8, 8)).sum() == pytest.approx(1)
    with pytest.raises(ValueError, match="unknown kernel file type"):
        read_psf(tmp_path / "k.jpg")
    with pytest.raises(FileNotFoundError, match="no such kernel"):
        read_psf(tmp_path / "missing.npy")
    (tmp_path / "t.txt").write_text("1 2\nx y\n")
    with pytest.raises(ValueError, match="not a table"):
        read_psf(tmp_path / "t.txt")


def test_tiny_negative_rounding_is_accepted():
    k = np.array([[0.5, -1e-9], [0.25, 0.25]])
    out = check_psf(k)
    assert out.min() == 0 and out.sum() == pytest.approx(1)
