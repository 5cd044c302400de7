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

Kernel files and the validation of any kernel are `pydeblur.kernel_io`'s.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

PSF_SIZE = 34
TRAJECTORY_LENGTH = 64.0
ANXIETY = 0.005
SAMPLES = 2000
EXPOSURES = (1 / 8, 1 / 4, 1 / 2, 1.0)


@dataclass(frozen=True)
class TrajectoryParams:
    """Parameters of createTrajectory (defaults: the paper's dataset code).

    >>> TrajectoryParams(size=16, length=20.0)
    TrajectoryParams(size=16, length=20.0, anxiety=0.005, samples=2000)
    """

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

    >>> x = random_trajectories(3, seed=0, params=TrajectoryParams(samples=100))
    >>> x.shape, x.dtype, np.round(np.abs(np.diff(x, axis=1)).sum(axis=1), 6)
    ((3, 100), dtype('complex128'), array([64., 64., 64.]))
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

    >>> exposure_weights(5, [0.3, 1.0])
    array([[1. , 0.5, 0. , 0. , 0. ],
           [1. , 1. , 1. , 1. , 1. ]])
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
    """Shift trajectories [n, samples] so their (weighted) mean is (size // 2) * (1 + 1j).

    >>> centre_trajectories(np.array([[0, 2 + 2j]]), size=5)
    array([[1.+1.j, 3.+3.j]])
    """
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

    >>> x = np.array([[2 + 2j, 2.5 + 2j]])  # two samples: at the centre, then half a pixel right
    >>> splat_psfs(x, 5, exposure_weights(2, [0.5, 1.0]))[0, :, 2, 2:4]
    array([[0.5 , 0.  ],
           [0.75, 0.25]])
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
    trajectories complex128 [n, samples] (0-based pixel coordinates, column + 1j * row).

    >>> s = make_psfs(2, seed=0, params=TrajectoryParams(samples=200))
    >>> s.psfs.shape, s.trajectories.shape, s.exposures
    ((2, 4, 34, 34), (2, 200), (0.125, 0.25, 0.5, 1.0))
    """

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
    """n sets of motion-blur PSFs, one random trajectory per set, one PSF per exposure fraction:
    a `PSFSet` of psfs float32 [n, len(exposures), size, size] and trajectories [n, samples].

    The PSFs of a set are prefixes of one accumulator (each longer than the last), normalised to sum 1.
    Set k depends only on (seed, k). A trajectory so wide that one of its shorter exposures falls
    entirely outside the support (about 1.5% of them at the defaults) gives an all-zero PSF, which
    cannot be normalised (the original code divides by zero there): such a trajectory is redrawn from
    a fresh seed spawned from its own (seed, k), so the result stays reproducible. Kernels that lose
    only part of their mass at the border are kept, truncated, as in the original code.

    >>> psfs = make_psfs(1, seed=0).psfs[0]  # [E, size, size], one per exposure in EXPOSURES
    >>> psfs.shape, psfs.sum(axis=(1, 2)).round(4), np.round(centre_of_mass(psfs[-1]), 6)
    ((4, 34, 34), array([1., 1., 1., 1.], dtype=float32), array([17., 17.]))
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
    """(row, column) centre of mass of a 2-D PSF [kh, kw].

    >>> centre_of_mass(np.array([[0.0, 1.0], [0.0, 3.0]]))
    (0.75, 1.0)
    """
    psf = np.asarray(psf, dtype=np.float64)
    rows, cols = np.indices(psf.shape)
    total = psf.sum()
    return float((rows * psf).sum() / total), float((cols * psf).sum() / total)


# ---------------------------------------------------------------------------------------------------
# Kernel validation and files
