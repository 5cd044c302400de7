"""Tests of pydeblur.ops.wiener_bank: references, no shift, gradients, errors, dtypes, devices."""

import numpy as np
import pytest
import torch
from scipy.signal import convolve2d

from pydeblur.noise import PAPER_SNR_DB
from pydeblur.ops import skip_value_checks, wiener_bank
from pydeblur.physics import psf2otf
from tests.helpers import cpu_and_cuda


def random_psf(kh, kw, *batch, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    psf = torch.rand(*batch, kh, kw, generator=g, dtype=dtype) + 0.05
    return psf / psf.sum(dim=(-2, -1), keepdim=True)


def random_image(*shape, seed=1, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def numpy_wiener_bank(y, psf, nsr):
    """float64 reference with full complex FFTs: y [B,C,H,W], psf [Pb,Pc,kh,kw], nsr [S]."""
    y, psf, nsr = (np.asarray(a, dtype=np.float64) for a in (y, psf, nsr))
    H, W = y.shape[-2:]
    kh, kw = psf.shape[-2:]
    padded = np.zeros((*psf.shape[:2], H, W))
    padded[..., :kh, :kw] = psf
    K = np.fft.fft2(np.roll(padded, (-(kh // 2), -(kw // 2)), axis=(-2, -1)))
    Y = np.fft.fft2(y)
    filters = np.conj(K)[:, None] / (np.abs(K)[:, None] ** 2 + nsr[None, :, None, None, None])
    return np.fft.ifft2(filters * Y[:, None]).real


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("psf_batch", [(), (2, 1), (2, 3)])
@pytest.mark.parametrize(("H", "W", "kh", "kw"), [(32, 40, 5, 4), (31, 27, 6, 7), (16, 16, 16, 16)])
def test_matches_numpy_reference(device, psf_batch, H, W, kh, kw):
    y = random_image(2, 3, H, W)
    psf = random_psf(kh, kw, *psf_batch)
    nsr = torch.tensor([1e-3, 0.02, 0.5], dtype=torch.float64)
    out = wiener_bank(y.to(device), psf.to(device), nsr=nsr.to(device))
    psf4 = psf.reshape(-1 if psf_batch else 1, psf_batch[1] if psf_batch else 1, kh, kw)
    expected = numpy_wiener_bank(y, psf4, nsr)
    assert out.shape == (2, 3, 3, H, W)
    np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=0, atol=1e-10)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_float32_matches_numpy_reference(device):
    y = random_image(1, 3, 64, 48)
    psf = random_psf(9, 8)
    out = wiener_bank(y.float().to(device), psf.float().to(device), snr_db=[9.0, 25.0])
    expected = numpy_wiener_bank(y, psf[None, None], 10 ** (-np.array([9.0, 25.0]) / 10))
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.cpu().numpy(), expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("kh", "kw"), [(7, 7), (6, 8)])
def test_matches_skimage_per_snr(device, kh, kw):
    from skimage.restoration import wiener

    y = random_image(1, 2, 40, 33)
    psf = random_psf(kh, kw)
    snr_db = [9.0, 21.0, 45.0]
    out = wiener_bank(y.to(device), psf.to(device), snr_db=snr_db).cpu().numpy()
    for s, snr in enumerate(snr_db):
        for c in range(2):
            expected = wiener(
                y[0, c].numpy(),
                psf.numpy(),
                balance=10 ** (-snr / 10),
                reg=np.ones((1, 1)),
                is_real=True,
                clip=False,
            )
            np.testing.assert_allclose(out[0, s, c], expected, rtol=0, atol=1e-10)


def circular_convolve(x, psf):
    """True circular convolution, PSF centre (kh // 2, kw // 2): sum_uv psf[u, v] x[i - u + kh // 2]."""
    kh, kw = psf.shape
    out = torch.zeros_like(x)
    for u in range(kh):
        for v in range(kw):
            out += psf[u, v] * torch.roll(x, (u - kh // 2, v - kw // 2), dims=(-2, -1))
    return out


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("kh", "kw"), [(5, 5), (4, 4), (7, 4), (6, 9)])
def test_deblurs_circular_blur_without_shift(device, kh, kw):
    x = random_image(1, 3, 32, 36)
    psf = random_psf(kh, kw, seed=kh * 10 + kw)
    blurred = circular_convolve(x, psf)
    restored = wiener_bank(blurred.to(device), psf.to(device), nsr=[1e-12])[:, 0].cpu()
    torch.testing.assert_close(restored, x, rtol=0, atol=1e-6)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("kh", "kw"), [(5, 3), (4, 6)])
def test_deblurs_linear_blur_without_shift(device, kh, kw):
    # An image surrounded by zeros: its linear blur stays inside the frame, so linear = circular.
    x = torch.zeros(24, 30, dtype=torch.float64)
    x[8:16, 9:20] = random_image(8, 11)
    psf = random_psf(kh, kw, seed=3)
    full = convolve2d(x.numpy(), psf.numpy(), mode="full")  # true convolution, output index i + u
    blurred = torch.from_numpy(full[kh // 2 : kh // 2 + 24, kw // 2 : kw // 2 + 30].copy())
    restored = wiener_bank(blurred[None, None].to(device), psf.to(device), nsr=[1e-12])[0, 0, 0]
    restored = restored.cpu()
    torch.testing.assert_close(restored, x, rtol=0, atol=1e-6)
    shifted_error = (restored - torch.roll(x, 1, dims=0)).abs().max()
    assert shifted_error > 0.1


def test_psf2otf_centres_the_psf():
    psf = torch.zeros(5, 4, dtype=torch.float64)
    psf[2, 2] = 1.0  # the centre element (kh // 2, kw // 2): an identity blur
    otf = psf2otf(psf, (8, 8))
    torch.testing.assert_close(otf, torch.ones(8, 8, dtype=torch.complex128))


def test_default_is_the_papers_fifteen_snrs():
    y = random_image(1, 1, 16, 16)
    psf = random_psf(3, 3)
    assert PAPER_SNR_DB == tuple(float(v) for v in range(9, 66, 4)) and len(PAPER_SNR_DB) == 15
    expected = wiener_bank(y, psf, nsr=[10 ** (-s / 10) for s in PAPER_SNR_DB])
    torch.testing.assert_close(wiener_bank(y, psf), expected)


def gradcheck_inputs(device, psf_batch, W):
    y = random_image(2, 3, 10, W).to(device).requires_grad_()
    psf = random_psf(3, 4, *psf_batch).to(device).requires_grad_()
    nsr = torch.tensor([0.05, 0.3], dtype=torch.float64, device=device, requires_grad=True)
    return y, psf, nsr


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("psf_batch", [(), (2, 1), (2, 3)])
@pytest.mark.parametrize("W", [11, 12])
def test_gradcheck(device, psf_batch, W):
    y, psf, nsr = gradcheck_inputs(device, psf_batch, W)
    assert torch.autograd.gradcheck(lambda a, b, c: wiener_bank(a, b, nsr=c), (y, psf, nsr))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_gradcheck_each_input_alone(device):
    y, psf, nsr = gradcheck_inputs(device, (2, 1), 12)
    for i in range(3):
        inputs = [t.detach().requires_grad_(j == i) for j, t in enumerate((y, psf, nsr))]
        assert torch.autograd.gradcheck(lambda a, b, c: wiener_bank(a, b, nsr=c), inputs)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_learnable_snr_db(device):
    snr_db = torch.tensor([10.0, 30.0], dtype=torch.float64, device=device, requires_grad=True)
    y = random_image(1, 3, 12, 12).to(device)
    psf = random_psf(3, 3).to(device)
    assert torch.autograd.gradcheck(lambda s: wiener_bank(y, psf, snr_db=s), (snr_db,))


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_runs_in_inference_mode_on_parallel_planes(device):
    # Enough planes for at::parallel_for to use worker threads, which must see inference mode too.
    y = random_image(4, 3, 64, 64, dtype=torch.float32).to(device)
    psf = random_psf(5, 5, dtype=torch.float32).to(device)
    expected = wiener_bank(y, psf)
    with torch.inference_mode():
        torch.testing.assert_close(wiener_bank(y, psf), expected)


@pytest.mark.parametrize("device", cpu_and_cuda())
def test_opcheck(device):
    y, psf, nsr = gradcheck_inputs(device, (2, 1), 12)
    torch.library.opcheck(torch.ops.pydeblur.wiener_bank.default, (y, psf, nsr))
    grad = torch.rand(2, 2, 3, 10, 12, dtype=torch.float64, device=device)
    for mask in ([True, True, True], [True, False, False], [False, True, True]):
        torch.library.opcheck(
            torch.ops.pydeblur._wiener_bank_backward.default,
            (grad, y.detach(), psf.detach(), nsr.detach(), mask),
        )


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_computed_in_float32(device, dtype):
    y = random_image(1, 3, 32, 32, dtype=torch.float32).to(device)
    psf = random_psf(5, 5, dtype=torch.float32).to(device)
    out = wiener_bank(y.to(dtype), psf.to(dtype), snr_db=[15.0, 30.0])
    assert out.dtype == dtype
    expected = wiener_bank(y.to(dtype).float(), psf.to(dtype).float(), snr_db=[15.0, 30.0])
    torch.testing.assert_close(out, expected.to(dtype))


BAD_INPUTS = [
    (dict(y=torch.rand(3, 8, 8)), ValueError, "y must be"),
    (dict(y=torch.ones(1, 1, 8, 8, dtype=torch.int32)), TypeError, "y must be a floating"),
    (dict(psf=torch.ones(3, 3, dtype=torch.int64)), TypeError, "psf must be a floating"),
    (dict(psf=torch.ones(1, 3, 3)), ValueError, "psf must be"),
    (dict(psf=torch.ones(9, 3)), ValueError, "larger than the image"),
    (dict(psf=torch.ones(3, 1, 3, 3)), ValueError, "psf batch size"),
    (dict(psf=torch.ones(2, 2, 3, 3)), ValueError, "psf must have 1 or 3 channels"),
    (dict(psf=-torch.ones(3, 3)), ValueError, "psf has negative"),
    (dict(psf=torch.zeros(3, 3)), ValueError, "psf sums to 0"),
    (dict(psf=torch.full((3, 3), float("nan"))), ValueError, "psf contains NaN"),
    (
        dict(y=torch.rand(2, 3, 8, 8).index_fill(2, torch.tensor([4]), float("inf"))),
        ValueError,
        "y contains NaN or infinite",
    ),
    # Several faults at once: the error is the first check's, in the order the checks are listed.
    (dict(psf=torch.full((3, 3), float("nan")), nsr=[-1.0]), ValueError, "psf contains NaN"),
    (dict(nsr=[0.1, 0.0]), ValueError, "nsr must be positive"),
    (dict(nsr=[-1.0]), ValueError, "nsr must be positive"),
    (dict(nsr=[]), ValueError, "nsr is empty"),
    (dict(nsr=torch.tensor([1, 2])), TypeError, "nsr must be a floating"),
    (dict(snr_db=[float("inf")]), ValueError, "snr_db contains NaN"),
    (dict(snr_db=[10.0], nsr=[0.1]), ValueError, "not both"),
    (dict(y="image"), TypeError, "y must be a torch.Tensor"),
    (dict(psf=torch.ones(3, 3, device="meta")), ValueError, "one device"),
    (dict(nsr=torch.ones(2, device="meta")), ValueError, "one device"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_INPUTS)
def test_bad_input_names_the_argument(kwargs, error, match):
    args = dict(y=torch.rand(2, 3, 8, 8), psf=torch.ones(3, 3) / 9) | kwargs
    with pytest.raises(error, match=match):
        wiener_bank(**args)


def test_skip_value_checks_skips_only_value_checks():
    y, psf = torch.rand(1, 1, 8, 8), -torch.ones(3, 3)
    with skip_value_checks():
        wiener_bank(y, psf, nsr=[0.1])  # a negative PSF is not looked for
        with pytest.raises(ValueError, match="larger than the image"):
            wiener_bank(y, torch.ones(9, 9), nsr=[0.1])


def test_value_checks_read_the_device_once(monkeypatch):
    """All of a call's value checks come back in one transfer: one GPU synchronisation per call."""
    reads = []
    real_stack = torch.stack

    def counting_stack(tensors, *args, **kwargs):
        out = real_stack(tensors, *args, **kwargs)
        if out.dtype == torch.bool:
            reads.append(len(tensors))
        return out

    monkeypatch.setattr(torch, "stack", counting_stack)
    wiener_bank(torch.rand(2, 3, 16, 16), torch.ones(3, 3) / 9)
    assert (
        len(reads) == 1 and reads[0] >= 6
    )  # y, psf (finite, sign, sum), snr_db, nsr (finite, sign)


def _direct_inputs(device, **changes):
    inputs = dict(y=torch.rand(2, 3, 8, 8), psf=torch.ones(1, 1, 3, 3) / 9, nsr=torch.ones(2) / 10)
    return {name: t.to(device) for name, t in (inputs | changes).items()}


# Direct calls of the compiled operators skip the Python wrapper: C++ checks what its kernels index
# memory by, and raises ValueError (TORCH_CHECK_VALUE), not RuntimeError.
DIRECT_BAD_INPUTS = [
    (dict(y=torch.rand(3, 8, 8)), r"y must be \[B, C, H, W\]"),
    (dict(psf=torch.ones(3, 3)), r"psf must be \[Pb, Pc, kh, kw\]"),
    (dict(nsr=torch.ones(1, 2)), r"nsr must be \[S\]"),
    (dict(nsr=torch.ones(0)), r"nsr must be \[S\] with S >= 1"),
    (dict(y=torch.ones(2, 3, 8, 8, dtype=torch.int32)), "y must be float32 or float64"),
    (dict(psf=torch.ones(1, 1, 3, 3, dtype=torch.float64)), "one dtype"),
    (dict(psf=torch.ones(3, 1, 3, 3)), "psf batch size 3 must be 1 or that of y"),
    (dict(psf=torch.ones(1, 2, 3, 3)), "psf channels 2 must be 1 or those of y"),
    (dict(psf=torch.ones(1, 1, 9, 3)), "larger than the image"),
    (dict(psf=torch.ones(1, 1, 0, 3)), "psf is empty"),
]


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(("changes", "match"), DIRECT_BAD_INPUTS)
def test_direct_op_call_raises_value_error_on_bad_shapes(device, changes, match):
    inputs = _direct_inputs(device, **changes)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur.wiener_bank(**inputs)
    grad = torch.zeros(2, 2, 3, 8, 8, device=device)
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur._wiener_bank_backward(grad, **inputs, output_mask=[True] * 3)


@pytest.mark.parametrize("device", cpu_and_cuda())
@pytest.mark.parametrize(
    ("grad", "match"),
    [
        (torch.zeros(2, 2, 3, 8), r"grad must be \[B, S, C, H, W\]"),
        (torch.zeros(2, 1, 3, 8, 8), r"grad must be \[B, S, C, H, W\]"),
        (torch.zeros(2, 2, 3, 8, 8, dtype=torch.float64), "grad must have the dtype of y"),
    ],
)
def test_direct_backward_call_checks_grad(device, grad, match):
    with pytest.raises(ValueError, match=match):
        torch.ops.pydeblur._wiener_bank_backward(
            grad.to(device), **_direct_inputs(device), output_mask=[True] * 3
        )


@pytest.mark.cuda
def test_direct_op_call_checks_devices():
    inputs = _direct_inputs("cuda")
    with pytest.raises(ValueError, match="one device"):
        torch.ops.pydeblur.wiener_bank(inputs["y"], inputs["psf"].cpu(), inputs["nsr"])
    grad = torch.zeros(2, 2, 3, 8, 8)
    with pytest.raises(ValueError, match="grad is on cpu"):
        torch.ops.pydeblur._wiener_bank_backward(grad, **inputs, output_mask=[True] * 3)


@pytest.mark.cuda
def test_cpu_and_cuda_agree():
    y = random_image(2, 3, 64, 50, dtype=torch.float32)
    psf = random_psf(9, 6, 2, 1, dtype=torch.float32)
    nsr = torch.tensor([1e-3, 0.01, 0.1])
    grad = torch.rand(2, 3, 3, 64, 50)
    results = []
    for device in ("cpu", "cuda"):
        # detach: on the CPU .to() returns the tensor itself; the CUDA copies must be leaves too.
        inputs = [t.detach().to(device).requires_grad_() for t in (y, psf, nsr)]
        out = wiener_bank(inputs[0], inputs[1], nsr=inputs[2])
        out.backward(grad.to(device))
        results.append([out.detach().cpu()] + [t.grad.cpu() for t in inputs])
    for cpu, cuda in zip(*results, strict=True):
        torch.testing.assert_close(cuda, cpu, rtol=1e-4, atol=1e-4)


def torch_wiener_bank(y, psf4, nsr):
    """numpy_wiener_bank's maths in float64 torch.fft on y's device, for sizes too big for NumPy."""
    K = psf2otf(psf4.double(), tuple(y.shape[-2:]))[:, None]  # [Pb, 1, Pc, H, W]
    filters = K.conj() / (K.abs() ** 2 + nsr.double()[:, None, None, None])
    return torch.fft.ifft2(filters * torch.fft.fft2(y.double())[:, None]).real


@pytest.mark.cuda
@pytest.mark.parametrize(
    ("shape", "psf_batch"),
    [((8, 3, 256, 256), 1), ((2, 3, 324, 300), 2)],  # the benchmark's batch; a padded photo crop
)
def test_cuda_matches_float64_reference_at_full_size(shape, psf_batch):
    """One batched cuFFT C2R over all B S C planes, from spectra scaled by 1 / (H W) before it: at
    the benchmark's size (a power of two: the scaling is exact) and at an odd one."""
    g = torch.Generator().manual_seed(0)
    y = torch.rand(*shape, generator=g)
    psf = torch.rand(psf_batch, 1, 34, 34, generator=g)
    psf /= psf.sum(dim=(-2, -1), keepdim=True)
    nsr = 10 ** (-torch.tensor(PAPER_SNR_DB) / 10)
    y, psf, nsr = y.cuda(), psf.cuda(), nsr.cuda()
    out = wiener_bank(y, psf, nsr=nsr)
    expected = torch_wiener_bank(y, psf, nsr)
    # float32 FFTs: 1.5e-6 and 2.9e-6 of the largest value on the CPU kernels (MKL)
    scale = expected.abs().max().item()
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=2e-5 * scale)


def _cuda_kernel_names(call):
    """The names of the CUDA kernels `call` launches (after a first call has made its FFT plans)."""
    from torch.profiler import ProfilerActivity, profile

    call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        call()
        torch.cuda.synchronize()
    return [e.name for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA]


@pytest.mark.cuda
def test_cuda_launches_only_its_kernels_and_cuffts():
    """docs/wiener_bank.md's accounting: the forward is the PSF padding kernel, cuFFT's R2C of the
    PSF and of y, the filter kernel and one batched C2R, with no ATen kernel (ATen's irfft2 would
    add a copy of all the spectra and a scaling pass; ATen's psf2otf a fill, a copy and a roll);
    the backward for dL/dy alone likewise. An ATen kernel here also means the direct cuFFT call
    fell back to ATen's (libcufft not found)."""
    y = random_image(2, 3, 64, 48, dtype=torch.float32).cuda()
    psf = random_psf(5, 5, 1, 1, dtype=torch.float32).cuda()
    nsr = torch.tensor([1e-3, 0.01, 0.1], device="cuda")
    grad = torch.rand(2, 3, 3, 64, 48, device="cuda")
    calls = {
        "forward": lambda: torch.ops.pydeblur.wiener_bank(y, psf, nsr),
        "backward": lambda: torch.ops.pydeblur._wiener_bank_backward(
            grad, y, psf, nsr, [True, False, False]
        ),
    }
    for name, call in calls.items():
        kernels = _cuda_kernel_names(call)
        if not kernels:
            pytest.skip("the profiler recorded no CUDA kernels on this machine (CUPTI)")
        print(name, len(kernels), "kernels:", *kernels, sep="\n  ")
        ours = [k for k in kernels if "pydeblur" in k]
        assert len(ours) == 2, f"{name}: {kernels}"
        assert not [k for k in kernels if "at::native" in k], f"{name}: {kernels}"


@pytest.mark.cuda
def test_cuda_graph_capture_and_replay():
    """The CUDA fast path has no host synchronisation and no stream-unsafe allocation: once a first
    call has made the cuFFT plans, the forward (the public function, its value checks skipped: they
    read the device) and the backward capture in one CUDA graph, and replays on new inputs match
    eager calls."""
    y = random_image(2, 3, 40, 36, dtype=torch.float32).cuda()
    psf = random_psf(5, 4, 2, 1, dtype=torch.float32).cuda()
    nsr = torch.tensor([1e-3, 0.01, 0.1], device="cuda")
    grad = torch.rand(2, 3, 3, 40, 36, device="cuda")
    mask = [True, True, True]

    def run():
        out = wiener_bank(y, psf, nsr=nsr)
        return out, torch.ops.pydeblur._wiener_bank_backward(grad, y, psf, nsr, mask)

    with skip_value_checks():
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(2):
                run()
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = run()
        for seed in (5, 6):
            y.copy_(random_image(2, 3, 40, 36, seed=seed, dtype=torch.float32))
            psf.copy_(random_psf(5, 4, 2, 1, seed=seed, dtype=torch.float32))
            nsr.copy_(torch.tensor([2e-3, 0.02, 0.3]) * seed)
            grad.copy_(torch.rand(2, 3, 3, 40, 36, generator=torch.Generator().manual_seed(seed)))
            graph.replay()
            eager = run()
            torch.testing.assert_close(captured[0], eager[0], rtol=1e-6, atol=1e-6)
            for replayed, expected in zip(captured[1], eager[1], strict=True):
                torch.testing.assert_close(replayed, expected, rtol=1e-6, atol=1e-6)
