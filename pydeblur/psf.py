"""Camera-shake trajectories and motion-blur PSFs (Boracchi & Foi, IEEE TIP 2012), and kernel files.

A port of Boracchi & Foi's MATLAB createTrajectory / createPSFs, vectorised across trajectories: the
time recursion over the N samples is sequential, so it runs once for a whole batch of trajectories held
as arrays [n_traj]. Each trajectory draws its random numbers from its own generator (spawned from one
seed), so trajectory k is the same whether it is made alone or in a batch of 10,000.

Coordinates are 0-based pixel positions in the PSF array, real part = column, imaginary part = row.
Centring rule: the trajectory is shifted (sub-pixel) so that the centre of mass of the longest exposure's
PSF is exactly the array's centre element (size // 2, size // 2), the PSF convention of pydeblur (Boracchi's
`do_center` used the 1-based (size + 1) / 2, half a pixel off that convention). Bilinear splatting keeps
the centre of mass, so this holds exactly unless the trajectory leaves the support. The shorter exposures
are prefixes of the same trajectory and keep its position: their centres of mass lie where the camera was
during that part of the exposure, as in the original code.

Kernel files: `read_psf` / `write_psf` for .npy, .png (8/16 bit), .txt/.csv and MATLAB .mat (v5 through
scipy.io, v7.3 through h5py); `check_psf` validates any kernel.
"""

import io
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pydeblur.atomic import atomic_path

PSF_SIZE = 34
TRAJECTORY_LENGTH = 64.0
ANXIETY = 0.005
SAMPLES = 2000
EXPOSURES = (1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclass(frozen=True)
class TrajectoryParams:
    """Parameters of createTrajectory (defaults: the paper's dataset code)."""

    size: int = PSF_SIZE
    length: float = TRAJECTORY_LENGTH
    anxiety: float = ANXIETY
    samples: int = SAMPLES

    def __post_init__(self):
        if int(self.size) != self.size or self.size < 2:
            raise ValueError(f"size must be an integer >= 2, got {self.size}")
        if not self.length > 0:
            raise ValueError(f"length must be positive, got {self.length}")
        if not 0 <= self.anxiety <= 1:
            raise ValueError(f"anxiety must be in [0, 1], got {self.anxiety}")
        if int(self.samples) != self.samples or self.samples < 2:
            raise ValueError(f"samples must be an integer >= 2, got {self.samples}")


def _seed_sequences(seed, n: int) -> list[np.random.SeedSequence]:
    """n independent seed sequences from one seed (int, sequence of ints or SeedSequence)."""
    sequence = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    return sequence.spawn(n)


def _trajectories(sequences: Sequence[np.random.SeedSequence], params: TrajectoryParams):
    """One trajectory per seed sequence, complex128 [n, samples] (see `random_trajectories`)."""
    p = params
    n, steps = len(sequences), p.samples - 1
    step_length = p.length / steps
    scalars = np.empty((n, 4))
    noise = np.empty((4, steps, n))  # [stream, step, trajectory]: each step reads contiguous memory
    for k, sequence in enumerate(sequences):
        rng = np.random.Generator(np.random.PCG64(sequence))
        scalars[k] = rng.random(4)
        noise[:2, :, k] = rng.random((2, steps))
        noise[2:, :, k] = rng.standard_normal((2, steps))
    centripetal = 0.7 * scalars[:, 0]
    gaussian_term = 10.0 * scalars[:, 1]
    big_shake_frequency = 0.2 * scalars[:, 2]
    angle = 2 * np.pi * scalars[:, 3]

    # All that does not depend on the state is computed for every step at once, [steps, n].
    shake = noise[0] < big_shake_frequency * p.anxiety
    # v + dv = v (1 + turn) + kick - pull x, turn = 2 exp(i (pi + U - 0.5)) at a big shake, else 0
    gain = np.ones(shake.shape, dtype=np.complex128)
    gain[shake] += 2 * np.exp(1j * (np.pi + (noise[1][shake] - 0.5)))  # shakes are rare: ~0.1%
    kick = (p.anxiety * step_length) * gaussian_term * (noise[2] + 1j * noise[3])
    pull = p.anxiety * step_length * centripetal

    v = np.exp(1j * angle) * (p.anxiety if p.anxiety > 0 else step_length)
    x = np.zeros((p.samples, n), dtype=np.complex128)
    scale = np.empty(n)
    for t in range(steps):
        v *= gain[t]
        v += kick[t]
        v -= pull * x[t]
        np.divide(step_length, np.abs(v), out=scale)
        v *= scale
        np.add(x[t], v, out=x[t + 1])
    return np.ascontiguousarray(x.T)


def random_trajectories(
    n: int, seed=0, params: TrajectoryParams = TrajectoryParams(), chunk: int = 1024
) -> np.ndarray:
    """n random camera-shake trajectories: complex128 [n, samples], x = column + 1j * row.

    createTrajectory: per trajectory, centripetal = 0.7 U, gaussian term = 10 U, big-shake frequency
    = 0.2 U, initial direction 2 pi U; each step may add a big shake (probability frequency * anxiety,
    a turn of about pi), a Gaussian term and a pull towards the start, then the velocity is renormalised
    to length / (samples - 1), so the polyline's length is exactly `length`. Not yet centred: x[:, 0] = 0.
    Trajectory k depends only on (seed, k), not on n or `chunk` (the batch size of the time loop).
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    sequences = _seed_sequences(seed, n)
    return np.concatenate(
        [_trajectories(sequences[i : i + chunk], params) for i in range(0, n, chunk)]
    )


def exposure_weights(samples: int, exposures: Sequence[float]) -> np.ndarray:
    """Weight of each sample in each cumulative exposure: float64 [len(exposures), samples].

    Sample t (0-based) covers the time interval [t, t + 1] in units of samples; its weight in exposure
    T_j is its overlap with [0, T_j * samples], so the interval end gets a fractional weight.
    """
    exposures = np.asarray(exposures, dtype=np.float64)
    if exposures.ndim != 1 or exposures.size == 0:
        raise ValueError(f"exposures must be a non-empty 1-D sequence, got {exposures!r}")
    if not (np.all(exposures > 0) and np.all(exposures <= 1) and np.all(np.diff(exposures) > 0)):
        raise ValueError(
            f"exposures must increase strictly within (0, 1], got {exposures.tolist()}"
        )
    t = np.arange(samples, dtype=np.float64)
    return np.clip(exposures[:, None] * samples - t[None, :], 0.0, 1.0)


def centre_trajectories(x: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """Shift trajectories [n, samples] so their (weighted) mean is (size // 2) * (1 + 1j)."""
    mean = x.mean(axis=1) if weights is None else (x @ weights) / weights.sum()
    return x - mean[:, None] + (size // 2) * (1 + 1j)


def splat_psfs(x: np.ndarray, size: int, weights: np.ndarray, chunk: int = 512) -> np.ndarray:
    """Cumulative bilinear splatting of centred trajectories into PSFs: float64 [n, E, size, size].

    x: complex [n, samples] in 0-based pixel coordinates (column + 1j * row); weights: [E, samples]
    from `exposure_weights`. As in createPSFs, the lower corner is clamped to [0, size - 2] and the
    triangle weights go to zero beyond one pixel, so samples outside the support are lost. The result is
    divided by `samples` (createPSFs' scale): PSF_j sums to T_j when nothing is lost. One accumulator:
    each sample is splatted once into the exposure segment it starts (split at a fractional end), and
    the segments are summed cumulatively, so PSF_j is a prefix of PSF_{j+1}.
    """
    n, samples = x.shape
    n_exp = weights.shape[0]
    increments = np.diff(weights, axis=0, prepend=0.0)  # each sample's weight in each new segment
    segment, sample = np.nonzero(increments)
    segment_weight = increments[segment, sample]
    bins = n_exp * size * size
    out = np.empty((n, n_exp, size, size))
    for start in range(0, n, chunk):
        xs = x[start : start + chunk, sample]  # [m, entries]
        m = len(xs)
        col, row = xs.real, xs.imag
        c0 = np.clip(np.floor(col), 0, size - 2)
        r0 = np.clip(np.floor(row), 0, size - 2)
        fc, fr = col - c0, row - r0  # in [0, 1) inside the support
        corner = (np.arange(m)[:, None] * bins + segment * (size * size)) + (r0 * size + c0).astype(
            np.int64
        )
        index = np.concatenate([corner, corner + 1, corner + size, corner + size + 1], axis=None)
        # triangle weights max(0, 1 - |d|) of the four neighbours, times the segment weight
        wc0, wc1 = np.maximum(0.0, 1.0 - np.abs(fc)), np.maximum(0.0, 1.0 - np.abs(fc - 1.0))
        wr0 = np.maximum(0.0, 1.0 - np.abs(fr)) * segment_weight
        wr1 = np.maximum(0.0, 1.0 - np.abs(fr - 1.0)) * segment_weight
        value = np.concatenate([wr0 * wc0, wr0 * wc1, wr1 * wc0, wr1 * wc1], axis=None)
        sums = np.bincount(index, value, minlength=m * bins)
        out[start : start + m] = np.cumsum(sums.reshape(m, n_exp, size, size), axis=1)
    return out / samples


@dataclass
class PSFSet:
    """PSFs of n trajectories: psfs float32 [n, E, size, size], each summing to 1, and the centred
    trajectories complex128 [n, samples] (0-based pixel coordinates, column + 1j * row)."""

    psfs: np.ndarray
    trajectories: np.ndarray
    exposures: tuple[float, ...]


def make_psfs(
    n: int = 1,
    seed=0,
    exposures: Sequence[float] = EXPOSURES,
    params: TrajectoryParams = TrajectoryParams(),
    chunk: int = 1024,
) -> PSFSet:
    """n sets of motion-blur PSFs, one random trajectory per set, one PSF per exposure fraction.

    The PSFs of a set are prefixes of one accumulator (each longer than the last), normalised to sum 1.
    Set k depends only on (seed, k). A trajectory so wide that one of its shorter exposures falls
    entirely outside the support (about 1.5% of them at the defaults) gives an all-zero PSF, which
    cannot be normalised (the original code divides by zero there): such a trajectory is redrawn from
    a fresh seed spawned from its own (seed, k), so the result stays reproducible. Kernels that lose
    only part of their mass at the border are kept, truncated, as in the original code.
    """
    if int(n) != n or n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    weights = exposure_weights(params.samples, exposures)
    sequences = _seed_sequences(seed, n)
    psfs = np.empty((n, len(weights), params.size, params.size), dtype=np.float32)
    trajectories = np.empty((n, params.samples), dtype=np.complex128)
    for start in range(0, n, chunk):
        pending = list(range(start, min(start + chunk, n)))
        current = {k: sequences[k] for k in pending}
        for _attempt in range(100):
            x = _trajectories([current[k] for k in pending], params)
            x = centre_trajectories(x, params.size, weights[-1])
            raw = splat_psfs(x, params.size, weights)
            sums = raw.sum(axis=(2, 3), keepdims=True)
            good = np.all(sums[:, :, 0, 0] > 0, axis=1)
            chosen = np.asarray(pending)[good]
            psfs[chosen] = raw[good] / sums[good]
            trajectories[chosen] = x[good]
            pending = [k for k, ok in zip(pending, good, strict=True) if not ok]
            if not pending:
                break
            for k in pending:
                current[k] = current[k].spawn(1)[0]
        else:
            raise RuntimeError(f"could not draw a trajectory inside the support for sets {pending}")
    return PSFSet(
        psfs=psfs, trajectories=trajectories, exposures=tuple(float(e) for e in exposures)
    )


def centre_of_mass(psf: np.ndarray) -> tuple[float, float]:
    """(row, column) centre of mass of a 2-D PSF."""
    psf = np.asarray(psf, dtype=np.float64)
    rows, cols = np.indices(psf.shape)
    total = psf.sum()
    return float((rows * psf).sum() / total), float((cols * psf).sum() / total)


# ---------------------------------------------------------------------------------------------------
# Kernel validation and files

KERNEL_SUFFIXES = (".npy", ".png", ".txt", ".csv", ".mat")
# Kernel files larger than this on a side are refused from their header, before their data is read
# (a compressed .mat could otherwise unpack to any size); real shake kernels are under ~300 pixels.
MAX_KERNEL_FILE_SIDE = 4096
_MAT_NAMES = ("psf", "kernel", "k", "f", "h", "blur")


def check_psf(psf, name: str = "psf", image_shape: tuple[int, int] | None = None) -> np.ndarray:
    """Validate a 2-D kernel and return it as float32 normalised to sum 1.

    Raises ValueError naming `name` if it is not 2-D, is empty, has NaN/inf or negative values, sums to
    zero, or is larger than `image_shape` (H, W) when given. Negative values within float rounding of
    zero (above -1e-6 times the maximum, as text or FFT round trips leave) are set to zero.
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
            kernel = kernel[..., :3].mean(axis=2)
    elif suffix in (".txt", ".csv"):
        kernel = _read_table(path)
    else:
        kernel = _read_mat(path, key)
    return check_psf(kernel, name=f"kernel in {path}")


def write_psf(
    path: str | os.PathLike, psf, *, bits: int = 16, mat_version: str = "5", key: str = "psf"
) -> None:
    """Write a kernel (normalised to sum 1 first) in the format of the file's suffix.

    .npy float32; .png scaled so the maximum is white, `bits` 8 or 16 (a PNG keeps the shape only up to
    quantisation: read_psf renormalises); .txt whitespace- and .csv comma-separated, 9 significant digits
    (exact for float32); .mat float64 variable `key`, `mat_version` "5" (scipy.io) or "7.3" (h5py, an
    HDF5 file with MATLAB's 512-byte header).
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
