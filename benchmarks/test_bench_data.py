"""Data pipeline speed: PSF generation rate, blur (FFT vs conv2d), loader samples/s.

pytest benchmarks/test_bench_data.py --benchmark-only
"""

import itertools

import pytest
import torch
import torch.nn.functional as F

from pydeblur.datasets import BlurredCrops, make_loader, split_photos
from pydeblur.degrade import blur_valid
from pydeblur.psf import make_psfs
from tests.helpers import cpu_and_cuda, needs_data


@pytest.mark.parametrize("n", [1000])
def test_psf_sets_vectorised(benchmark, n):
    """n sets of 4 PSFs in one call (the time loop runs once over [n] arrays)."""
    result = benchmark.pedantic(make_psfs, args=(n,), kwargs={"seed": 0}, rounds=2, iterations=1)
    assert result.psfs.shape == (n, 4, 34, 34)
    benchmark.extra_info["psf_sets_per_s"] = n / benchmark.stats.stats.mean


def test_psf_sets_one_by_one(benchmark):
    """The same, one set per call (what a dataset item does): the vectorisation's peer."""
    n = 50

    def one_by_one():
        return [make_psfs(1, seed=[0, k]) for k in range(n)]

    benchmark.pedantic(one_by_one, rounds=2, iterations=1)
    benchmark.extra_info["psf_sets_per_s"] = n / benchmark.stats.stats.mean


def _blur_inputs(device):
    g = torch.Generator().manual_seed(0)
    padded = torch.rand(8, 3, 256 + 33, 256 + 33, generator=g).to(device)
    psf = torch.from_numpy(make_psfs(8, seed=0).psfs[:, 3:4]).to(device)  # [8, 1, 34, 34]
    return padded, psf


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_blur_fft(benchmark, device):
    padded, psf = _blur_inputs(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run():
        out = blur_valid(padded, psf)
        sync()
        return out

    assert benchmark(run).shape == (8, 3, 256, 256)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_blur_conv2d_peer(benchmark, device):
    """The peer: grouped conv2d with the flipped per-image kernels (same result)."""
    padded, psf = _blur_inputs(device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    weight = psf.flip(-2, -1).repeat_interleave(3, dim=0)

    def run():
        out = F.conv2d(padded.reshape(1, 24, 289, 289), weight, groups=24).reshape(8, 3, 256, 256)
        sync()
        return out

    out = benchmark.pedantic(run, rounds=3, iterations=1)
    torch.testing.assert_close(out, blur_valid(padded, psf), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("crop_size", [256, 96])
@pytest.mark.parametrize("workers", [0, 2])
def test_loader_samples_per_second(benchmark, crop_size, workers):
    """Training loader (augment, batch 8) over the shared photos: samples/s, photos decoded once."""
    split = split_photos(needs_data("photos"))
    data = BlurredCrops(split["train"], crops_per_photo=64, crop_size=crop_size, augment=True)
    loader = make_loader(data, batch_size=8, shuffle=True, workers=workers, seed=0)
    batches = iter(loader)
    next(batches)  # start the workers
    n_batches = 12

    def run():
        for batch in itertools.islice(batches, n_batches):
            assert batch["blurred"].shape == (8, 3, crop_size, crop_size)

    benchmark.pedantic(run, rounds=2, iterations=1)
    benchmark.extra_info["samples_per_s"] = 8 * n_batches / benchmark.stats.stats.mean
