"""wiener_bank against its peers: B = 8 images of 3x256x256, S = 15 filters, float32.

pytest benchmarks/test_bench_wiener_bank.py --benchmark-only --benchmark-group-by=group
Peers: the same maths in plain PyTorch (batched, and image by image), NumPy FFT, scikit-image's
wiener looped over images, channels and SNRs; on CUDA plain PyTorch and CuPy (when installed).
"""

import numpy as np
import pytest
import torch

from pydeblur.noise import PAPER_SNR_DB, snr_to_nsr
from pydeblur.ops import wiener_bank
from pydeblur.physics import psf2otf
from tests.helpers import cpu_and_cuda

B, C, H, W, KSIZE = 8, 3, 256, 256, 34


def make_inputs(device):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(B, C, H, W, generator=g)
    psf = torch.rand(KSIZE, KSIZE, generator=g)
    psf /= psf.sum()
    nsr = snr_to_nsr(PAPER_SNR_DB).float()
    return y.to(device), psf.to(device), nsr.to(device)


def torch_batched(y, psf, nsr):
    """The obvious plain-PyTorch version: rfft2, broadcast complex ops, one irfft2 over everything."""
    K = psf2otf(psf, (H, W))[..., : W // 2 + 1]
    filters = K.conj() / (K.abs() ** 2 + nsr[:, None, None, None])  # [S, 1, H, W/2+1]
    return torch.fft.irfft2(filters * torch.fft.rfft2(y)[:, None], s=(H, W))


def torch_per_image(y, psf, nsr):
    """The same ops image by image (stays in cache)."""
    return torch.stack([torch_batched(y[b : b + 1], psf, nsr)[0] for b in range(y.shape[0])])


def numpy_per_image(y, psf, nsr):
    K = psf2otf(torch.from_numpy(psf), (H, W)).numpy()[..., : W // 2 + 1].astype(np.complex64)
    filters = K.conj() / (np.abs(K) ** 2 + nsr[:, None, None, None])
    return np.stack([np.fft.irfft2(filters * np.fft.rfft2(image)[None], s=(H, W)) for image in y])


def skimage_loop(y, psf, nsr):
    from skimage.restoration import wiener

    reg = np.ones((1, 1), dtype=np.float32)
    return np.stack(
        [
            [[wiener(plane, psf, balance=n, reg=reg, clip=False) for plane in image] for n in nsr]
            for image in y
        ]
    )


TORCH_FORWARD = {
    "pydeblur": lambda y, psf, nsr: wiener_bank(y, psf, nsr=nsr),
    "torch_batched": torch_batched,
    "torch_per_image": torch_per_image,
}


def synchronize(device):
    if device == "cuda":
        torch.cuda.synchronize()


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("impl", list(TORCH_FORWARD))
def test_forward(benchmark, device, impl):
    benchmark.group = f"wiener_bank forward {device}"
    y, psf, nsr = make_inputs(device)
    fn = TORCH_FORWARD[impl]
    torch.testing.assert_close(fn(y, psf, nsr), torch_batched(y, psf, nsr), rtol=0, atol=5e-3)

    def run():
        out = fn(y, psf, nsr)
        synchronize(device)
        return out

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


@pytest.mark.parametrize("impl", ["numpy_per_image", "skimage_loop"])
def test_forward_numpy_peers(benchmark, impl):
    benchmark.group = "wiener_bank forward cpu"
    y, psf, nsr = (t.numpy() for t in make_inputs("cpu"))
    fn = {"numpy_per_image": numpy_per_image, "skimage_loop": skimage_loop}[impl]
    reference = torch_batched(*make_inputs("cpu")).numpy()
    np.testing.assert_allclose(fn(y[:1], psf, nsr), reference[:1], rtol=0, atol=5e-3)
    benchmark.pedantic(fn, args=(y, psf, nsr), rounds=2 if impl == "skimage_loop" else 5)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("impl", list(TORCH_FORWARD))
def test_forward_backward(benchmark, device, impl):
    """Gradients with respect to y and a learnable nsr."""
    benchmark.group = f"wiener_bank forward+backward {device}"
    y, psf, nsr = make_inputs(device)
    grad = torch.rand(B, len(nsr), C, H, W, device=device)
    fn = TORCH_FORWARD[impl]

    def run():
        y_leaf = y.detach().requires_grad_()
        nsr_leaf = nsr.detach().requires_grad_()
        fn(y_leaf, psf, nsr_leaf).backward(grad)
        synchronize(device)
        return y_leaf.grad, nsr_leaf.grad

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)


@pytest.mark.cuda
def test_forward_cupy(benchmark):
    cp = pytest.importorskip("cupy")
    benchmark.group = "wiener_bank forward cuda"
    y, psf, nsr = (cp.from_dlpack(t) for t in make_inputs("cuda"))

    def run():
        K = cp.fft.rfft2(
            cp.roll(cp.pad(psf, ((0, H - KSIZE), (0, W - KSIZE))), (-(KSIZE // 2),) * 2, (0, 1))
        )
        filters = K.conj() / (cp.abs(K) ** 2 + nsr[:, None, None, None])
        out = cp.fft.irfft2(filters * cp.fft.rfft2(y)[:, None], s=(H, W))
        cp.cuda.get_current_stream().synchronize()
        return out

    benchmark.pedantic(run, rounds=5, warmup_rounds=1)
