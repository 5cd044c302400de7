"""Training and evaluation data: blurred, noisy crops made on the fly from a folder of sharp photos.

The protocol of docs/design.md: photos split by source photo into train/val/test; random crops; one
camera-shake trajectory per crop sampled into one PSF per exposure fraction (4 by default); blur by
valid linear convolution (`pydeblur.degrade`) and Poisson-Gaussian photon noise. Every item is a pure
function of (seed, index), so it is the same in every epoch and with any number of workers. The fixed
test set is materialised once with `save_test_set` so every evaluation sees the same images.

Nothing here knows where the data live: callers pass the folder (training/ defaults to
../shared/data/photos).

One module of about 450 lines, longer than the ~350 of the others, for one job (the data of the
protocol): the split, the crops, the saved test set and the loader share the item format and the
crop numbering (`EpochSampler`'s windows follow the trajectory blocks of `BlurredCrops`).
"""

import json
import math
import os
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from pydeblur.atomic import atomic_path, write_text
from pydeblur.degrade import blur_valid, valid_offset
from pydeblur.io import IMAGE_SUFFIXES, read_image, to_integer
from pydeblur.noise import GAUSS, PHOTONS, add_photon_noise
from pydeblur.psf import EXPOSURES, TrajectoryParams, make_psfs

SPLITS = ("train", "val", "test")
PSF_BLOCK = 128  # crops whose trajectories are made together

# Independent random streams of a crop, all spawned from (seed, crop[, exposure]).
_STREAM_CROP, _STREAM_TRAJECTORY, _STREAM_NOISE_LEVEL, _STREAM_NOISE, _STREAM_CHANNELS = (
    0,
    1,
    2,
    3,
    4,
)
LUMA = (0.299, 0.587, 0.114)  # Rec. 601, the weights of MATLAB's rgb2gray


# ---------------------------------------------------------------------------------------------------
# Split by source photo


def list_photos(folder: str | os.PathLike) -> list[str]:
    """The image files (`pydeblur.io.IMAGE_SUFFIXES`) directly in `folder`, sorted by name; hidden
    files (a name starting with ".") are skipped, as `pydeblur deblur` skips them in its folders."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no such photo folder: {folder}")
    photos = sorted(
        str(p)
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".") and p.is_file()
    )
    if not photos:
        raise ValueError(f"no photos ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return photos


def split_photos(
    folder: str | os.PathLike, seed: int = 0, fractions: Sequence[float] = (0.8, 0.1, 0.1)
) -> dict[str, list[str]]:
    """Split the photos of `folder` into {"train", "val", "test"} lists of paths, by source photo.

    The photos are shuffled with `seed`; val and test get round(fraction * n) photos each (at least
    one each when there are three photos or more), train the rest. Each list is sorted.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1):
        raise ValueError(f"fractions must be 3 non-negative numbers summing to 1, got {fractions}")
    photos = list_photos(folder)
    n = len(photos)
    order = np.random.default_rng(seed).permutation(n)
    sizes = [round(f * n) for f in fractions[1:]]
    if n >= 3:
        sizes = [max(1, s) if f > 0 else 0 for s, f in zip(sizes, fractions[1:], strict=True)]
    n_val, n_test = sizes
    if n_val + n_test > n:
        raise ValueError(f"{n} photos cannot be split with fractions {fractions}")
    test = order[:n_test]
    val = order[n_test : n_test + n_val]
    train = order[n_test + n_val :]
    return {
        name: sorted(photos[i] for i in part)
        for name, part in zip(SPLITS, (train, val, test), strict=True)
    }


def write_manifest(split: dict[str, list[str]], path: str | os.PathLike) -> None:
    """Write a split as JSON; paths are stored relative to the manifest's folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    base = path.parent.resolve()
    relative = {
        name: [os.path.relpath(Path(p).resolve(), base) for p in paths]
        for name, paths in split.items()
    }
    write_text(path, json.dumps(relative, indent=1) + "\n")


def read_manifest(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a split written by `write_manifest`, as absolute paths."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such manifest: {path} (run `python -m training.prepare_data`)")
    base = path.parent.resolve()
    data = json.loads(path.read_text())
    return {name: [str((base / p).resolve()) for p in paths] for name, paths in data.items()}


# ---------------------------------------------------------------------------------------------------
# Blurred crops made on the fly


def _seed_int(*entropy: int) -> int:
    """A 63-bit integer seed from a tuple of non-negative integers."""
    return int(
        np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0] >> np.uint64(1)
    )


def _positive_int(value, name: str) -> int:
    if int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value}")
    return int(value)


def _range(value, name: str) -> tuple[float, float]:
    low, high = (value, value) if np.isscalar(value) else tuple(value)
    if not (0 <= low <= high and math.isfinite(high)):
        raise ValueError(
            f"{name} must be a number or a (low, high) range of non-negative numbers, got {value!r}"
        )
    return float(low), float(high)


class BlurredCrops(Dataset):
    """Random crops of photos blurred by camera-shake PSFs, with photon noise.

    len = len(photo_paths) * crops_per_photo * len(exposures). Item i is crop c = i // E at exposure
    e = i % E (E = len(exposures)); crop c comes from photo c // crops_per_photo. Each crop has one
    trajectory, shared by its E exposures. An item is a dict:
        sharp    float32 [3, crop_size, crop_size] in [0, 1]
        blurred  float32 [3, crop_size, crop_size] (noise can leave [0, 1]: values are not clipped)
        psf      float32 [1, psf_size, psf_size], sum 1, centre element (psf_size // 2, psf_size // 2)
        exposure, photons, gauss: floats (the degradation's T, lambda and sigma)
    and blurred = degrade(sharp extended by the real photo around it, psf, photons, exposure, gauss).

    photons (lambda) and gauss (sigma, photon units) are numbers or (low, high) ranges drawn per item:
    photons log-uniformly, gauss uniformly. augment: one of the 8 flips/90-degree rotations per crop,
    applied to the sharp crop and the PSF before blurring. Deterministic in (seed, i). Photos are
    decoded on first use and kept (as 8-bit) in each worker process.

    Noise across the colour channels: by default independent. grey: the fraction of items made grey
    (sharp and blurred the `LUMA` of the crop in all three channels, one noise draw shared by them, as
    a monochrome photo or Levin's benchmark is); correlated: the fraction of colour items whose noise
    is correlated across channels (real photos' is: demosaicing and JPEG's chroma subsampling), with
    a correlation c drawn from U(0, 1) per item: the noise n = m + d, m its mean over the channels,
    becomes sqrt(1 + 2c) m + sqrt(1 - c) d (the same variance, correlation c between channels). The shipped model, trained without either, loses 4.7
    dB on Kodak at sigma 0.01 when the same noise is added to every channel (docs/training.md).

    crop_candidates: each crop is the most detailed (`detail`) of this many random positions in its
    photo (1: a uniform position). Photos with large smooth areas (sky, bokeh) otherwise teach a
    prior that smooths textured photos (docs/training.md, "Detail-biased crops").
    """

    def __init__(
        self,
        photo_paths: Sequence[str | os.PathLike],
        crops_per_photo: int,
        crop_size: int = 256,
        psf_size: int = 34,
        exposures: Sequence[float] = EXPOSURES,
        photons=PHOTONS,
        gauss=GAUSS,
        augment: bool = False,
        seed: int = 0,
        trajectory: TrajectoryParams | None = None,
        grey: float = 0.0,
        correlated: float = 0.0,
        crop_candidates: int = 1,
    ):
        if not (0 <= grey <= 1 and 0 <= correlated <= 1 and grey + correlated <= 1):
            raise ValueError(
                f"grey and correlated must be fractions in [0, 1] summing to at most 1, got "
                f"{grey!r} and {correlated!r}"
            )
        self.grey, self.correlated = float(grey), float(correlated)
        self.photo_paths = [str(p) for p in photo_paths]
        if not self.photo_paths:
            raise ValueError("photo_paths is empty")
        self.crops_per_photo = _positive_int(crops_per_photo, "crops_per_photo")
        self.crop_size = _positive_int(crop_size, "crop_size")
        self.crop_candidates = _positive_int(crop_candidates, "crop_candidates")
        self.exposures = tuple(float(e) for e in exposures)
        base = trajectory or TrajectoryParams()
        self.trajectory = TrajectoryParams(psf_size, base.length, base.anxiety, base.samples)
        self.photons = _range(photons, "photons")
        if self.photons[0] <= 0:
            raise ValueError(f"photons must be positive, got {photons!r}")
        self.gauss = _range(gauss, "gauss")
        self.augment = bool(augment)
        self.seed = int(seed)
        self._photos: dict[str, np.ndarray] = {}
        self._psfs: OrderedDict[int, np.ndarray] = OrderedDict()
        make_psfs(1, 0, self.exposures, self.trajectory)  # validates exposures and sizes now

    @property
    def n_crops(self) -> int:
        return len(self.photo_paths) * self.crops_per_photo

    def __len__(self) -> int:
        return self.n_crops * len(self.exposures)

    def __getstate__(self):
        state = self.__dict__.copy()  # workers start with empty caches
        state["_photos"], state["_psfs"] = {}, OrderedDict()
        return state

    def _photo(self, path: str) -> np.ndarray:
        """The photo as uint8/uint16 [H, W, 3], decoded once per process."""
        photo = self._photos.get(path)
        if photo is None:
            image, source_dtype = read_image(path)
            if image.ndim == 3 and image.shape[2] == 2:  # grey + alpha: the grey
                image = image[..., 0]
            if image.ndim == 2:
                image = np.repeat(image[..., None], 3, axis=2)
            if source_dtype not in (np.uint8, np.uint16):  # float data: onto the 16-bit grid
                source_dtype = np.uint16
            photo = to_integer(np.clip(image[..., :3], 0, 1), source_dtype)
            self._photos[path] = photo
        return photo

    def _crop_psfs(self, crop: int) -> np.ndarray:
        """The E PSFs of one crop's trajectory, float32 [E, k, k].

        Trajectories are made in blocks of PSF_BLOCK crops by one vectorised `make_psfs` call (crop c
        is set c % PSF_BLOCK of block c // PSF_BLOCK), so a worker pays a few ms per crop instead of
        a whole sequential time loop per crop; the last few blocks used are kept.
        """
        block, k = divmod(crop, PSF_BLOCK)
        psfs = self._psfs.get(block)
        if psfs is None:
            n = min(PSF_BLOCK, self.n_crops - block * PSF_BLOCK)
            seed = np.random.SeedSequence([self.seed, _STREAM_TRAJECTORY, block])
            psfs = make_psfs(n, seed, self.exposures, self.trajectory).psfs
            self._psfs[block] = psfs
            if len(self._psfs) > 16:
                self._psfs.popitem(last=False)
        else:
            self._psfs.move_to_end(block)
        return psfs[k]

    def _padded_crop(self, crop: int) -> tuple[np.ndarray, int]:
        """The sharp crop extended by psf_size - 1 pixels of the real photo: float32 [3, h', w'],
        and the augmentation index (0..7)."""
        path = self.photo_paths[crop // self.crops_per_photo]
        photo = self._photo(path)
        side = self.crop_size + self.trajectory.size - 1
        height, width = photo.shape[:2]
        if height < side or width < side:
            raise ValueError(
                f"{path} is {width}x{height}, smaller than a {self.crop_size} crop plus the "
                f"{self.trajectory.size}-pixel PSF margin ({side}x{side})"
            )
        rng = np.random.default_rng([self.seed, crop, _STREAM_CROP])
        top = int(rng.integers(0, height - side + 1))
        left = int(rng.integers(0, width - side + 1))
        transform = int(rng.integers(0, 8)) if self.augment else 0
        if self.crop_candidates > 1:  # drawn after the first, which stays what it was without them
            others = rng.integers(
                0, [height - side + 1, width - side + 1], (self.crop_candidates - 1, 2)
            )
            inset, size = valid_offset(self.trajectory.size, self.trajectory.size), self.crop_size

            def sharp_detail(at: tuple[int, int]) -> float:
                row, col = at[0] + inset[0], at[1] + inset[1]
                return detail(photo[row : row + size, col : col + size])

            top, left = max([(top, left), *((int(t), int(c)) for t, c in others)], key=sharp_detail)
        patch = photo[top : top + side, left : left + side].transpose(2, 0, 1)
        scale = np.float32(np.iinfo(photo.dtype).max)
        return patch.astype(np.float32) / scale, transform

    def _noise_levels(self, crop: int, e: int) -> tuple[float, float]:
        rng = np.random.default_rng([self.seed, crop, _STREAM_NOISE_LEVEL, e])
        low, high = self.photons
        photons = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
        gauss = float(rng.uniform(*self.gauss)) if self.gauss[1] > self.gauss[0] else self.gauss[0]
        return photons, gauss

    def _channel_noise(self, crop: int, e: int) -> tuple[bool, float]:
        """(grey, the noise's correlation across channels) of one item."""
        if not (self.grey or self.correlated):
            return False, 0.0
        rng = np.random.default_rng([self.seed, crop, _STREAM_CHANNELS, e])
        draw, correlation = rng.uniform(size=2)
        if draw < self.grey:
            return True, 1.0
        return False, float(correlation) if draw < self.grey + self.correlated else 0.0

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index %= len(self)
        crop, e = divmod(index, len(self.exposures))
        padded, transform = self._padded_crop(crop)
        psf = self._crop_psfs(crop)[e]
        padded = _transform(padded, transform)
        psf = _transform(psf, transform)
        photons, gauss = self._noise_levels(crop, e)
        grey, correlation = self._channel_noise(crop, e)
        if grey:
            luma = np.tensordot(np.asarray(LUMA, np.float32), padded, axes=(0, 0))
            padded = np.repeat(luma[None], 3, axis=0)
        exposure = self.exposures[e]
        generator = torch.Generator().manual_seed(_seed_int(self.seed, crop, _STREAM_NOISE, e))
        # The Poisson sampler's draws depend on every rate bit by bit: blur with NumPy arrays
        # (single-threaded, the same in every process) in float64, rounded to float32.
        clean = blur_valid(padded[None].astype(np.float64), psf.astype(np.float64))
        clean = torch.from_numpy(clean.astype(np.float32))
        if grey:
            blurred = add_photon_noise(clean[:, :1], photons, exposure, gauss, generator)[0]
            blurred = blurred.expand(3, -1, -1)
        else:
            blurred = add_photon_noise(clean, photons, exposure, gauss, generator)[0]
            if correlation:
                noise = blurred - clean[0]
                shared = noise.mean(dim=0, keepdim=True)
                shared, rest = shared * math.sqrt(1 + 2 * correlation), noise - shared
                blurred = clean[0] + shared + math.sqrt(1 - correlation) * rest
        padded_t = torch.from_numpy(np.ascontiguousarray(padded))
        psf_t = torch.from_numpy(np.ascontiguousarray(psf))
        top, left = valid_offset(*psf.shape)
        size = self.crop_size
        sharp = padded_t[:, top : top + size, left : left + size]
        return {
            "sharp": sharp.contiguous(),
            "blurred": blurred.contiguous(),
            "psf": psf_t[None].contiguous(),
            "exposure": exposure,
            "photons": photons,
            "gauss": gauss,
        }


def detail(patch: np.ndarray) -> float:
    """How detailed an image patch [H, W, C] (any dtype) is: the mean absolute difference between
    neighbouring pixels of its first channel, along both axes, on the patch's own value scale.

    >>> flat, stripes = np.zeros((8, 8, 3)), np.indices((8, 8, 3))[1] % 2
    >>> detail(flat), detail(stripes)
    (0.0, 0.5)
    """
    plane = patch[..., 0].astype(np.float32)
    return float(np.abs(np.diff(plane, axis=0)).mean() + np.abs(np.diff(plane, axis=1)).mean()) / 2


def _transform(array: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 symmetries of the square on the last two axes: rot90 by transform % 4, then a
    left-right flip when transform >= 4."""
    out = np.rot90(array, transform % 4, axes=(-2, -1))
    return out[..., ::-1] if transform >= 4 else out


# ---------------------------------------------------------------------------------------------------
# The fixed test set

_TENSOR_KEYS = ("blurred", "psf", "exposure", "photons", "gauss")


class SavedTestSet(Dataset):
    """Materialised items (from `load_test_set`): the same dicts as `BlurredCrops`."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self.tensors = tensors
        self.per_crop = len(tensors["blurred"]) // len(tensors["sharp"])

    def __len__(self) -> int:
        return len(self.tensors["blurred"])

    def __getitem__(self, index: int) -> dict:
        t = self.tensors
        sharp = t["sharp"][index // self.per_crop]
        if sharp.dtype == torch.uint8:
            sharp = sharp.to(torch.float32) / 255  # exactly what pydeblur.io.read_image gives
        return {
            "sharp": sharp,
            "blurred": t["blurred"][index],
            "psf": t["psf"][index],
            "exposure": float(t["exposure"][index]),
            "photons": float(t["photons"][index]),
            "gauss": float(t["gauss"][index]),
        }


def save_test_set(
    dataset: Dataset, path: str | os.PathLike, items_per_crop: int | None = None
) -> None:
    """Materialise every item of `dataset` to a safetensors file, losslessly.

    Items come in groups of `items_per_crop` (default: the dataset's number of exposures, else 1)
    sharing one sharp crop, which is stored once: as uint8 when that is exact (crops of 8-bit photos),
    else float32. blurred and psf are stored as float32, the scalars as float64.
    """
    from safetensors.torch import save_file

    per_crop = items_per_crop or len(getattr(dataset, "exposures", (0,)))
    n = len(dataset)
    if n == 0 or n % per_crop:
        raise ValueError(
            f"dataset has {n} items, not a positive multiple of {per_crop} items per crop"
        )
    items = [dataset[i] for i in range(n)]
    sharp = torch.stack([items[i]["sharp"] for i in range(0, n, per_crop)])
    for i, item in enumerate(items):
        if not torch.equal(item["sharp"], sharp[i // per_crop]):
            raise ValueError(f"items {i - i % per_crop}..{i} do not share one sharp crop")
    as_bytes = torch.round(sharp * 255).to(torch.uint8)
    if torch.equal(as_bytes.to(torch.float32) / 255, sharp):
        sharp = as_bytes
    tensors = {"sharp": sharp.contiguous()}
    for key in _TENSOR_KEYS:
        values = [item[key] for item in items]
        if isinstance(values[0], torch.Tensor):
            tensors[key] = torch.stack(values).to(torch.float32).contiguous()
        else:
            tensors[key] = torch.tensor(values, dtype=torch.float64)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata={"format": "pydeblur-test-set-1"})


def load_test_set(path: str | os.PathLike) -> SavedTestSet:
    """Load a file written by `save_test_set`."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such test set: {path} (run `python -m training.prepare_data`)")
    tensors = load_file(str(path))
    missing = {"sharp", *_TENSOR_KEYS} - set(tensors)
    if missing:
        raise ValueError(
            f"{path} is not a pydeblur test set (missing {', '.join(sorted(missing))})"
        )
    return SavedTestSet(tensors)


# ---------------------------------------------------------------------------------------------------
# Loading


class EpochSampler(Sampler):
    """Epoch e draws `count` items from a window of consecutive items, shuffled by (seed, e).

    For a practically endless dataset (every index a new crop), where an epoch is a window, not a
    pass: epoch e starts where epoch e - 1 ended, and no item is seen twice until the dataset wraps
    (index modulo n_items). Windows of consecutive crops share the trajectory blocks of
    `BlurredCrops` (PSF_BLOCK crops made by one vectorised call), which makes loading about 3x cheaper
    than indices scattered over the dataset. With world > 1 it is a distributed sampler: rank r takes
    items r, r + world, ... of the shuffled window (like DistributedSampler, whose per-epoch pass over
    the whole dataset does not fit here). Call `set_epoch` before each epoch.

    >>> sampler = EpochSampler(n_items=10, count=4, seed=0)
    >>> sampler.set_epoch(1)
    >>> sorted(sampler), len(sampler)
    ([4, 5, 6, 7], 4)
    """

    def __init__(self, n_items: int, count: int, seed: int, rank: int = 0, world: int = 1):
        if count % world:
            raise ValueError(f"count ({count}) must be a multiple of the world size ({world})")
        self.n_items, self.count, self.seed = n_items, count, seed
        self.rank, self.world, self.epoch = rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the window of epoch `epoch` next."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.count // self.world

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        window = (
            self.epoch * self.count + torch.randperm(self.count, generator=generator)
        ) % self.n_items
        return iter(window[self.rank :: self.world].tolist())


def make_loader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = False,
    workers: int = 0,
    seed: int | None = None,
    distributed: bool = False,
    drop_last: bool = False,
    sampler: Sampler | None = None,
    pin_memory: bool | None = None,
) -> DataLoader:
    """A DataLoader with pinned memory and persistent workers; batches of dict items hold tensors
    [batch_size, ...] (e.g. blurred [B, 3, H, W], psf [B, 1, kh, kw]) and float64 [B] scalars.

    The order: `sampler` when given (e.g. an `EpochSampler`; then shuffle and distributed must stay
    off), else a DistributedSampler over the initialised process group when `distributed` (call
    `loader.sampler.set_epoch(epoch)` each epoch to reshuffle, as with any DDP loader), else shuffled
    or in order. `seed` seeds the shuffle and the workers' base seed; None: both from the global torch
    RNG (as a DataLoader without a generator: each pass over the loader then draws from it). pin_memory
    None: when CUDA is available. Workers persist between passes (they keep their decoded photos).
    """
    if sampler is not None and (shuffle or distributed):
        raise ValueError("a loader with its own sampler can neither shuffle nor be distributed")
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    if distributed:
        sampler = DistributedSampler(dataset, shuffle=shuffle, seed=seed or 0, drop_last=drop_last)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle if sampler is None else False,
        sampler=sampler,
        num_workers=workers,
        pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
        persistent_workers=workers > 0,
        drop_last=drop_last,
        generator=generator,
    )
