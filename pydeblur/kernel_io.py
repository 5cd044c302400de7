"""Kernel files and kernel checks: `read_psf` / `write_psf` for .npy, .png (8/16 bit), .txt/.csv and
MATLAB .mat (v5 through scipy.io, v7.3 through h5py), and `check_psf`, which validates any kernel.

Kernels are [kh, kw] float32 arrays summing to 1 with their centre at (kh // 2, kw // 2), oriented for
true convolution. A file's declared size is checked before its data is read; nothing is unpickled.
"""

import io
import os
import warnings
from pathlib import Path

import numpy as np

from pydeblur.atomic import atomic_path

KERNEL_SUFFIXES = (".npy", ".png", ".txt", ".csv", ".mat")
# Kernel files larger than this on a side are refused from their header, before their data is read
# (a compressed .mat could otherwise unpack to any size); real shake kernels are under ~300 pixels.
MAX_KERNEL_FILE_SIDE = 4096
_MAT_NAMES = ("psf", "kernel", "k", "f", "h", "blur")


def check_psf(psf, name: str = "psf", image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a 2-D kernel [kh, kw] and return it as float32 [kh, kw] normalised to sum 1.

    Raises ValueError naming `name` if it is not 2-D, is empty, has NaN/inf or negative values, sums to
    zero, or is larger than `image_shape` (H, W) when given. Negative values within float rounding of
    zero (above -1e-6 times the maximum, as text or FFT round trips leave) are set to zero.

    >>> k = check_psf(np.ones((3, 5)))
    >>> k.shape, k.dtype, round(float(k.sum()), 6)
    ((3, 5), dtype('float32'), 1.0)
    """
    k = np.asarray(psf)
    if k.dtype == object or not (np.issubdtype(k.dtype, np.number) or k.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {k.dtype}")
    k = k.astype(np.float64)
    if k.ndim != 2:
        raise ValueError(f"{name} must be a 2-D kernel, got shape {k.shape}")
    if k.size == 0:
        raise ValueError(f"{name} is empty (shape {k.shape})")
    if not np.all(np.isfinite(k)):
        raise ValueError(f"{name} contains NaN or infinite values")
    peak = k.max()
    if k.min() < -1e-6 * max(peak, 0.0):
        raise ValueError(f"{name} has negative values (minimum {k.min():g}); a PSF is non-negative")
    if peak <= 0:
        raise ValueError(f"{name} is all zeros; a PSF needs a positive sum")
    k = np.maximum(k, 0.0)
    total = k.sum()
    if image_shape is not None and (k.shape[0] > image_shape[0] or k.shape[1] > image_shape[1]):
        raise ValueError(
            f"{name} of size {k.shape[0]}x{k.shape[1]} is larger than the image "
            f"({image_shape[0]}x{image_shape[1]})"
        )
    return (k / total).astype(np.float32)


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in KERNEL_SUFFIXES:
        raise ValueError(
            f"{path}: unknown kernel file type {suffix!r} (expected one of {', '.join(KERNEL_SUFFIXES)})"
        )
    return suffix


def _check_file_shape(path: Path, shape: tuple[int, ...]) -> None:
    if len(shape) == 2 and max(shape) > MAX_KERNEL_FILE_SIDE:
        raise ValueError(
            f"{path}: a {shape[0]}x{shape[1]} kernel is over the {MAX_KERNEL_FILE_SIDE}-pixel limit "
            "of kernel files"
        )


def _read_npy(path: Path) -> np.ndarray:
    """An .npy array, its declared shape checked before the data is read; never unpickles."""
    try:
        mapped = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # numpy's messages (pickle hints, "No data left") mislead here
        raise ValueError(f"{path}: not a NumPy .npy array file ({type(error).__name__})") from error
    if not isinstance(mapped, np.ndarray) or mapped.dtype.hasobject:
        raise ValueError(f"{path}: not a NumPy array of numbers")
    _check_file_shape(path, mapped.shape)
    return np.array(mapped)


def _read_mat(path: Path, key: str | None) -> np.ndarray:
    """The kernel variable of a .mat file (shapes checked from its directory before reading)."""
    import h5py
    import scipy.io

    try:
        if h5py.is_hdf5(path):  # MATLAB v7.3; HDF5 stores MATLAB's column-major arrays transposed
            with h5py.File(path, "r") as f:
                names = [
                    n for n in f.keys() if not n.startswith("#") and isinstance(f[n], h5py.Dataset)
                ]
                shapes = {n: f[n].shape for n in names}
                chosen = _choose_mat_variable(path, names, key, shapes)
                _check_file_shape(path, shapes[chosen])
                return np.asarray(f[chosen]).T
        shapes = {name: shape for name, shape, _ in scipy.io.whosmat(path)}
        chosen = _choose_mat_variable(path, list(shapes), key, shapes)
        _check_file_shape(path, shapes[chosen])
        return np.asarray(scipy.io.loadmat(path, variable_names=[chosen])[chosen])
    except ValueError as error:
        if str(path) in str(error):
            raise
        raise ValueError(f"{path}: cannot read as a MATLAB .mat file ({error})") from error
    except Exception as error:  # h5py's and scipy's readers raise many types on corrupt files
        raise ValueError(
            f"{path}: cannot read as a MATLAB .mat file ({type(error).__name__})"
        ) from error


def _choose_mat_variable(path: Path, names, key: str | None, shapes: dict) -> str:
    if key is not None:
        if key not in names:
            raise ValueError(f"{path}: no variable {key!r} (variables: {', '.join(names)})")
        return key
    matrices = [n for n in names if len(shapes[n]) == 2]
    if len(matrices) == 1:
        return matrices[0]
    for preferred in _MAT_NAMES:
        if preferred in matrices:
            return preferred
    raise ValueError(
        f"{path}: cannot tell which variable is the kernel among {', '.join(names) or 'none'}; "
        "name it with key="
    )


def _read_table(path: Path) -> np.ndarray:
    if path.stat().st_size > 64 * MAX_KERNEL_FILE_SIDE**2:  # 64 characters a number at most
        raise ValueError(f"{path}: too large for a kernel table")
    try:
        text = path.read_text()
        if not text.strip():
            raise ValueError("the file is empty")
        delimiter = "," if "," in text else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "input contained no data": check_psf says "empty"
            kernel = np.loadtxt(io.StringIO(text), delimiter=delimiter, ndmin=2)
    except ValueError as error:  # UnicodeDecodeError included
        reason = "not text" if isinstance(error, UnicodeDecodeError) else str(error)
        raise ValueError(f"{path}: not a table of numbers ({reason})") from error
    _check_file_shape(path, kernel.shape)
    return kernel


def read_psf(path: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """Read a kernel file as float32 [kh, kw] normalised to sum 1 (validated by `check_psf`).

    .npy; .png 8 or 16 bit (a colour PNG is averaged over its channels); .txt / .csv (whitespace or comma
    separated); .mat v5 (scipy.io) or v7.3 (h5py): the one 2-D variable, else `key`, else one named
    psf/kernel/k/f/h/blur.

    >>> import pydeblur
    >>> k = read_psf(pydeblur.DEMO_PSF)
    >>> k.shape, k.dtype, round(float(k.sum()), 4)
    ((34, 34), dtype('float32'), 1.0)
    """
    path = Path(path)
    suffix = _suffix(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such kernel file: {path}")
    if suffix == ".npy":
        kernel = _read_npy(path)
    elif suffix == ".png":
        from pydeblur.io import read_image

        kernel, _ = read_image(path)
        if kernel.ndim == 3:
            kernel = kernel[..., 0] if kernel.shape[2] == 2 else kernel[..., :3].mean(axis=2)
    elif suffix in (".txt", ".csv"):
        kernel = _read_table(path)
    else:
        kernel = _read_mat(path, key)
    return check_psf(kernel, name=f"kernel in {path}")


def load_psf(source: str | os.PathLike, key: str | None = None) -> np.ndarray:
    """A kernel named by a spec or a file: float32 [kh, kw] summing to 1 (validated by `check_psf`).

    A string whose part before its first ':' is a kernel name (motion, defocus, disk, gaussian) and
    that does not end in a kernel file suffix is a spec, made by `pydeblur.kernels.parse_psf_spec`
    (`motion:15,30`, `defocus:4`, `gaussian:2`; docs/kernels.md); anything else, and every
    os.PathLike, is a file read by `read_psf` (`key`: its .mat variable). The rule does not look at
    the disk: a file literally named like a spec has a suffix (`motion:15,30.npy`), so it is a file.

    >>> load_psf("motion:9,0").shape, load_psf("defocus:4").shape
    ((1, 11), (9, 9))
    >>> import pydeblur
    >>> load_psf(str(pydeblur.DEMO_PSF)).shape
    (34, 34)
    """
    if isinstance(source, str) and not source.lower().endswith(KERNEL_SUFFIXES):
        from pydeblur.kernels import is_psf_spec, parse_psf_spec

        if is_psf_spec(source):
            return check_psf(parse_psf_spec(source), name=f"kernel {source}")
    return read_psf(source, key)


def write_psf(
    path: str | os.PathLike, psf, *, bits: int = 16, mat_version: str = "5", key: str = "psf"
) -> None:
    """Write a kernel [kh, kw] (normalised to sum 1 first) in the format of the file's suffix.

    .npy float32; .png scaled so the maximum is white, `bits` 8 or 16 (a PNG keeps the shape only up to
    quantisation: read_psf renormalises); .txt whitespace- and .csv comma-separated, 9 significant digits
    (exact for float32); .mat float64 variable `key`, `mat_version` "5" (scipy.io) or "7.3" (h5py, an
    HDF5 file with MATLAB's 512-byte header).

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "box.csv"
    >>> write_psf(target, np.ones((3, 3)))
    >>> read_psf(target)[1]
    array([0.11111111, 0.11111111, 0.11111111], dtype=float32)
    """
    path = Path(path)
    suffix = _suffix(path)
    kernel = check_psf(psf)
    if suffix == ".png":
        from pydeblur.io import write_image

        if bits not in (8, 16):
            raise ValueError(f"bits must be 8 or 16, got {bits}")
        write_image(path, kernel / kernel.max(), dtype=np.uint16 if bits == 16 else np.uint8)
        return
    if suffix == ".mat" and mat_version not in ("5", "7.3"):
        raise ValueError(f'mat_version must be "5" or "7.3", got {mat_version!r}')
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if suffix == ".npy":
            with open(tmp, "wb") as f:
                np.save(f, kernel)
        elif suffix in (".txt", ".csv"):
            np.savetxt(tmp, kernel, fmt="%.9g", delimiter="," if suffix == ".csv" else " ")
        elif mat_version == "5":
            import scipy.io

            with open(tmp, "wb") as f:
                scipy.io.savemat(f, {key: kernel.astype(np.float64)})
        else:
            _write_mat73(tmp, kernel.astype(np.float64), key)


def _write_mat73(path: Path, kernel: np.ndarray, key: str) -> None:
    import h5py

    with h5py.File(path, "w", userblock_size=512) as f:
        dataset = f.create_dataset(key, data=kernel.T)
        dataset.attrs["MATLAB_class"] = np.bytes_("double")
    header = b"MATLAB 7.3 MAT-file, written by pydeblur".ljust(116) + b"\x00" * 8
    header += (0x0200).to_bytes(2, "little") + b"IM"
    with open(path, "r+b") as f:
        f.write(header.ljust(512, b"\x00"))
