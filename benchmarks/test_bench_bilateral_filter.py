"""bilateral_filter against kornia.filters.bilateral_blur (CPU and CUDA, forward and forward+backward)
and cv2.bilateralFilter (CPU, forward), on the paper's setting: B=8, 3x256x256 float32, window 7,
sigma_color 40/255, sigma_space 10.

    pytest benchmarks/test_bench_bilateral_filter.py --benchmark-only --benchmark-group-by=func

cv2.bilateralFilter is not the same function: it uses a circular window (the pixels within d/2 of
the centre), the L1 colour distance through a 256-entry (8-bit) or interpolated (float) lookup
table of exp, and BORDER_REFLECT_101 (the same border as ours). It is timed per image on the same
images, as the usual CPU reference for speed.

Peak memory (test_peak_memory): each implementation runs forward+backward once in a fresh
subprocess; the figure is the growth of the process's peak resident set (VmHWM in /proc/self/status,
Linux) over the run, after the input has been created and every library imported and warmed up on a
tiny image. (ru_maxrss would not do: Linux carries it over from the forking pytest process.)
"""

import subprocess
import sys
import textwrap
import time

import cv2
import numpy as np
import pytest
import torch

from pydeblur.ops import bilateral_filter
from tests.helpers import REPO, cpu_and_cuda
from tests.references import kornia_bilateral

SHAPE = (8, 3, 256, 256)
KERNEL_SIZE, SIGMA_COLOR, SIGMA_SPACE = 7, 40 / 255, 10.0


def ours(x):
    return bilateral_filter(x, KERNEL_SIZE, SIGMA_COLOR, SIGMA_SPACE)


IMPLEMENTATIONS = {"pydeblur": ours, "kornia": kornia_bilateral}


def images(device: str) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    return torch.rand(SHAPE, generator=generator).to(device)


def synchronised(fn, device):
    def run():
        result = fn()
        if device == "cuda":
            torch.cuda.synchronize()
        return result

    return run


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_forward(benchmark, name, device):
    x = images(device)
    benchmark.group = f"bilateral forward {device}"
    with torch.no_grad():
        benchmark(synchronised(lambda: IMPLEMENTATIONS[name](x), device))


def test_forward_opencv(benchmark):
    x = images("cpu")
    batch = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in x]
    benchmark.group = "bilateral forward cpu"
    benchmark(
        lambda: [
            cv2.bilateralFilter(image, KERNEL_SIZE, SIGMA_COLOR, SIGMA_SPACE) for image in batch
        ]
    )


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_forward_backward(benchmark, name, device):
    x = images(device).requires_grad_()
    weights = torch.randn_like(x)

    def step():
        x.grad = None
        (IMPLEMENTATIONS[name](x) * weights).sum().backward()

    benchmark.group = f"bilateral forward+backward {device}"
    benchmark(synchronised(step, device))


PEAK_MEMORY_SCRIPT = textwrap.dedent(
    """
    import sys, torch, kornia
    sys.path.insert(0, {repo!r})
    from benchmarks.test_bench_bilateral_filter import IMPLEMENTATIONS, images
    filt = IMPLEMENTATIONS[{name!r}]
    warm = torch.rand(1, 3, 16, 16, requires_grad=True)
    filt(warm).sum().backward()
    x = images("cpu").requires_grad_()
    def peak_kib():
        lines = open("/proc/self/status").read().splitlines()
        return int(next(line for line in lines if line.startswith("VmHWM:")).split()[1])
    before = peak_kib()
    filt(x).sum().backward()
    print((peak_kib() - before) / 1024)
    """
)


def peak_memory_mib(name: str) -> float:
    script = PEAK_MEMORY_SCRIPT.format(repo=str(REPO), name=name)
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return float(result.stdout.strip().splitlines()[-1])


def test_peak_memory(benchmark):
    """Peak resident-memory growth of one forward+backward (MiB), in benchmark.extra_info."""
    peaks = benchmark.pedantic(
        lambda: {name: peak_memory_mib(name) for name in IMPLEMENTATIONS}, rounds=1, iterations=1
    )
    benchmark.extra_info.update({f"peak_mib_{name}": peak for name, peak in peaks.items()})
    print(f"\npeak memory growth, forward+backward, MiB: {peaks}")
    assert peaks["pydeblur"] < peaks["kornia"]


def cpu_time_ms(fn, rounds: int = 5) -> float:
    """Least process time (all threads) of fn over rounds, in ms: less disturbed by other jobs."""
    fn()
    times = []
    for _ in range(rounds):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return round(min(times) * 1e3, 1)


def print_cpu_times() -> None:
    """CPU-time comparison on one image with one thread and on the batch with the default threads."""
    for batch, threads in ((1, 1), (SHAPE[0], torch.get_num_threads())):
        torch.set_num_threads(threads)
        x = images("cpu")[:batch]
        leaf = x.clone().requires_grad_()
        row = {}
        for name, filt in IMPLEMENTATIONS.items():
            with torch.no_grad():
                row[f"{name} fwd"] = cpu_time_ms(lambda filt=filt, x=x: filt(x))
            row[f"{name} fwd+bwd"] = cpu_time_ms(
                lambda filt=filt, leaf=leaf: filt(leaf).sum().backward(),
                3 if name == "kornia" else 5,
            )
        batch_np = [np.ascontiguousarray(image.permute(1, 2, 0).numpy()) for image in x]
        row["opencv fwd"] = cpu_time_ms(
            lambda batch_np=batch_np: [
                cv2.bilateralFilter(i, KERNEL_SIZE, SIGMA_COLOR, SIGMA_SPACE) for i in batch_np
            ]
        )
        print(f"B={batch}, {threads} thread(s), CPU ms: {row}")


if __name__ == "__main__":
    print_cpu_times()
