"""The classical baselines on one 3x256x256 image with a 19x19 Levin kernel, batch 1, float32.

pytest benchmarks/test_bench_baselines.py --benchmark-only --benchmark-group-by=group
Peers: scikit-image's richardson_lucy (zero-padded linear convolution, channel by channel) beside our
circular, batched Richardson-Lucy at the same iteration count; the other rows are the per-image costs
the evaluation reports (with the boundary padding the network uses).
"""

import numpy as np
import pytest
import torch

from pydeblur import baselines
from tests.helpers import cpu_and_cuda

ITERATIONS = 10


def make_inputs(device):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 256, 256, generator=g)
    psf = torch.rand(1, 1, 19, 19, generator=g)
    return y.to(device), (psf / psf.sum()).to(device)


def synchronized(fn, device):
    def run():
        out = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return out

    return run


@pytest.mark.benchmark(group="richardson-lucy")
@pytest.mark.parametrize("device", cpu_and_cuda())
def test_richardson_lucy_pydeblur(benchmark, device):
    y, psf = make_inputs(device)
    benchmark(synchronized(lambda: baselines.richardson_lucy_circular(y, psf, ITERATIONS), device))


@pytest.mark.benchmark(group="richardson-lucy")
def test_richardson_lucy_skimage(benchmark):
    from skimage.restoration import richardson_lucy

    y, psf = make_inputs("cpu")
    image, kernel = y[0].numpy(), psf[0, 0].numpy()
    benchmark(lambda: np.stack([richardson_lucy(c, kernel, ITERATIONS, clip=False) for c in image]))


@pytest.mark.benchmark(group="baselines per image")
@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    "method",
    [
        ("paper_baseline", lambda y, k: baselines.paper_baseline(y, k, 0.01)),
        ("wiener", lambda y, k: baselines.wiener(y, k, 0.01)),
        ("richardson_lucy", lambda y, k: baselines.richardson_lucy(y, k, ITERATIONS)),
        ("admm_tv", lambda y, k: baselines.admm_tv(y, k)),
    ],
    ids=lambda m: m[0],
)
def test_baseline(benchmark, device, method):
    y, psf = make_inputs(device)
    with torch.inference_mode():
        benchmark(synchronized(lambda: method[1](y, psf), device))
