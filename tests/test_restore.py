"""pydeblur.deblur end to end: array kinds and dtypes, tiling, boundaries, bad input."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from pydeblur.cli.demo_cmd import make_example
from pydeblur.hqs import HQSConfig, HQSNet
from pydeblur.metrics import psnr
from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.restore import bfloat16_supported, deblur
from pydeblur.weights_io import WEIGHTS_DIR, save_weights
from tests.helpers import REPO

DEFAULT_WEIGHTS = WEIGHTS_DIR / "default.safetensors"
needs_default = pytest.mark.skipif(
    not DEFAULT_WEIGHTS.exists(),
    reason=f"the trained default weights are not shipped yet ({DEFAULT_WEIGHTS} is absent)",
)


def tiny_net(snr_db=(9.0, 13.0, 17.0, 21.0), seed=0) -> DeblurNet:
    """A tiny DeblurNet with random weights everywhere (the trunk matters, not only the Wiener mix).

    SNRs up to 21 dB: strongly regularised Wiener filters, whose output is local; the near-inverse
    filters of higher SNRs amplify noise at frequencies that differ with the FFT size, so tiles of any
    size would differ there, which is a property of those filters and not of the tiling.
    """
    torch.manual_seed(seed)
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], snr_db=snr_db))
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.05)
    return net.eval()


def wiener_net(snr_db: float) -> DeblurNet:
    """A DeblurNet that is exactly one Wiener filter with the network's boundary handling: the "mix"
    head over a one-filter bank, with its last convolution at zero as initialised, outputs that filter."""
    torch.manual_seed(0)
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], snr_db=(snr_db,)))
    assert net.config.head == "mix" and not net.conv_out.weight.any()
    return net.eval()


@pytest.fixture(scope="module")
def example():
    """(sharp [1, 3, H, W], blurred [1, 3, H, W], psf [kh, kw]): the shipped photo, linearly blurred."""
    return make_example()


@pytest.fixture(scope="module")
def net():
    return tiny_net()


@pytest.fixture(scope="module")
def base(example):
    """The blurred photo as HxWx3 float64 on the 8-bit grid, so 8-bit, 16-bit and float versions hold
    exactly the same values (k / 255 = 257 k / 65535)."""
    rgb = example[1][0].permute(1, 2, 0).clamp(0, 1).double().numpy()
    return np.round(rgb * 255) / 255


@pytest.fixture(scope="module")
def reference(base, example, net):
    """deblur of the float RGB image: what every other kind must reproduce, as float RGB."""
    return deblur(base.astype(np.float32), example[2], model=net).astype(np.float64)


def grey_of(base):
    return np.round(base.mean(axis=2) * 255) / 255


# Each case: (make the input from `base`, turn the output back into float HxW(x3) in [0, 1], tolerance).
U8, U16 = 255.0, 65535.0
CASES = {
    "uint8 RGB": (lambda b: (b * U8).round().astype(np.uint8), lambda o: o / U8, 0.5 / U8),
    "uint16 RGB": (lambda b: (b * U16).round().astype(np.uint16), lambda o: o / U16, 0.5 / U16),
    "float32 RGB": (lambda b: b.astype(np.float32), lambda o: o, 1e-6),
    "float64 RGB": (lambda b: b, lambda o: o, 1e-6),
    "torch float32 CHW": (
        lambda b: torch.from_numpy(b).permute(2, 0, 1).float(),
        lambda o: o.permute(1, 2, 0).double().numpy(),
        1e-6,
    ),
    "torch uint8 CHW": (
        lambda b: torch.from_numpy((b * U8).round().astype(np.uint8)).permute(2, 0, 1),
        lambda o: o.permute(1, 2, 0).double().numpy() / U8,
        0.5 / U8,
    ),
    "torch float64 BCHW": (
        lambda b: torch.from_numpy(b).permute(2, 0, 1)[None].expand(2, -1, -1, -1).clone(),
        lambda o: o[1].permute(1, 2, 0).numpy(),
        1e-6,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_round_trip_keeps_kind_dtype_shape_and_values(case, base, reference, example, net):
    make, back, tolerance = CASES[case]
    image = make(base)
    out = deblur(image, example[2], model=net)
    assert type(out) is type(image)
    assert out.dtype == image.dtype and tuple(out.shape) == tuple(image.shape)
    values = back(out)
    assert values.min() >= 0 and values.max() <= 1
    worst = float(np.abs(values - np.clip(reference, 0, 1)).max())
    assert worst <= tolerance + 1e-5, f"{case}: differs from the float RGB result by {worst:.3g}"


@pytest.mark.parametrize("kind", ["numpy float16", "torch float16", "torch bfloat16"])
def test_half_precision_is_computed_in_float32_and_returned_in_its_type(kind, base, example, net):
    image = torch.from_numpy(base).permute(2, 0, 1)
    image = image.bfloat16() if kind == "torch bfloat16" else image.half()
    if kind == "numpy float16":
        image = image.permute(1, 2, 0).numpy()
        expected = deblur(image.astype(np.float32), example[2], model=net).astype(np.float16)
        assert np.array_equal(deblur(image, example[2], model=net), expected)
    else:
        expected = deblur(image.float(), example[2], model=net).to(image.dtype)
        assert torch.equal(deblur(image, example[2], model=net), expected)


@pytest.mark.parametrize("layout", ["HxW", "HxWx1", "torch HW", "torch 1HW"])
def test_grey_in_grey_out(layout, base, example, net):
    grey = grey_of(base)
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    expected = deblur(rgb, example[2], model=net).mean(axis=2)
    image, scale = {
        "HxW": ((grey * U8).round().astype(np.uint8), U8),
        "HxWx1": ((grey[..., None] * U16).round().astype(np.uint16), U16),
        "torch HW": (torch.from_numpy(grey).float(), 1.0),
        "torch 1HW": (torch.from_numpy(grey).float()[None], 1.0),
    }[layout]
    out = deblur(image, example[2], model=net)
    assert type(out) is type(image) and out.dtype == image.dtype and out.shape == image.shape
    values = np.asarray(out, dtype=np.float64).reshape(grey.shape)
    assert np.abs(values / scale - np.clip(expected, 0, 1)).max() <= 0.5 / scale + 1e-5


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_is_passed_through_untouched(dtype, base, reference, example, net):
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(0)
    alpha = rng.integers(0, top, size=base.shape[:2], endpoint=True).astype(dtype)
    rgba = np.dstack([(base * top).round().astype(dtype), alpha])
    out = deblur(rgba, example[2], model=net)
    assert out.shape == rgba.shape and out.dtype == dtype
    assert np.array_equal(out[..., 3], alpha)
    assert np.abs(out[..., :3] / top - np.clip(reference, 0, 1)).max() <= 0.5 / top + 1e-6


def test_torch_input_keeps_its_device_and_is_not_modified(base, example, net):
    image = torch.from_numpy(base).permute(2, 0, 1).float()
    before = image.clone()
    out = deblur(image, example[2].double(), model=net)
    assert out.device == image.device and torch.equal(image, before)


def test_a_module_in_training_runs_in_eval_mode_and_is_handed_back_training(base, example):
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], dropout=0.5)).train()
    first = deblur(base.astype(np.float32), example[2], model=net)
    assert net.training
    assert np.array_equal(first, deblur(base.astype(np.float32), example[2], model=net))


def test_model_from_a_weights_file_matches_the_module(tmp_path, base, reference, example, net):
    path = save_weights(net, tmp_path / "tiny.safetensors", {"note": "random weights for tests"})
    out = deblur(base.astype(np.float32), example[2], model=str(path))
    assert np.abs(out - np.clip(reference, 0, 1)).max() < 1e-6


# ------------------------------------------------------------------------------------------------------
# Tiling


BORDER = 16


def _interior_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b)[BORDER:-BORDER, BORDER:-BORDER].max())


def test_tiled_agrees_with_untiled_away_from_the_border(base, reference, example, net):
    image = base.astype(np.float32)
    tiled = deblur(image, example[2], model=net, tile=200, overlap=96)  # 2 x 3 tiles
    assert _interior_difference(tiled, np.clip(reference, 0, 1)) < 2e-3
    # the test can see seams: tiles that share no context disagree with the whole image much more
    seams = deblur(image, example[2], model=net, tile=120, overlap=0)
    assert _interior_difference(seams, np.clip(reference, 0, 1)) > 2e-2


def test_a_network_told_the_noise_is_told_that_of_the_whole_image_in_every_tile(base, example):
    torch.manual_seed(0)
    told = tiny_net()
    told_config = dataclasses.replace(told.config, noise_conditioning=True)
    net = DeblurNet(told_config)
    net.load_state_dict(told.state_dict(), strict=False)
    with torch.no_grad():
        for parameter in net.conditioning.parameters():
            parameter.normal_(0, 0.5)
    net.eval()
    image = base.astype(np.float32)
    whole = deblur(image, example[2], model=net)
    tiled = deblur(image, example[2], model=net, tile=200, overlap=96)
    assert _interior_difference(tiled, whole) < 2e-3
    # given a noise level, the network is told it
    assert np.abs(deblur(image, example[2], model=net, noise_sigma=0.05) - whole).max() > 1e-3


def hqs_net(seed=0) -> HQSNet:
    """A 2-stage HQSNet whose CNNs and slopes are random (they start at zero)."""
    torch.manual_seed(seed)
    net = HQSNet(HQSConfig(stages=2, channels=8, layers=3))
    with torch.no_grad():
        for stage in net.stages:
            stage.cnn.convs[-1].weight.normal_(0, 0.01)
            stage.weight_slope.fill_(0.5)
    return net.eval()


def test_an_hqs_model_runs_from_its_file_at_the_whole_images_noise_and_strength(tmp_path, example):
    from pydeblur.hqs_io import save_hqs
    from pydeblur.noise import estimate_noise_sigma

    net = hqs_net()
    path = save_hqs(net, tmp_path / "hqs.safetensors", {})
    blurred, psf = example[1][:, :, :96, :128].contiguous(), example[2]
    kernel = torch.as_tensor(psf / psf.sum(), dtype=torch.float32)[None, None]
    image = blurred[0].permute(1, 2, 0).numpy()

    def direct(sigma, strength=1.0):
        with torch.no_grad():
            out = net(blurred, kernel, torch.tensor([sigma]), strength=strength)
        return out[0].permute(1, 2, 0).clamp(0, 1).numpy()

    estimated = float(estimate_noise_sigma(blurred))
    out = deblur(image, psf, model=str(path))
    assert np.abs(out - direct(estimated)).max() < 1e-5
    given = deblur(image, psf, model=str(path), noise_sigma=0.02, strength=2.0)
    assert np.abs(given - direct(0.02, 2.0)).max() < 1e-5
    assert np.abs(given - out).max() > 1e-2  # the noise level and strength reach every stage


def test_a_tiled_hqs_model_is_told_the_whole_images_noise_and_agrees_away_from_the_border(
    base, example
):
    from pydeblur.restore import Deblurrer

    net = hqs_net()
    image = base.astype(np.float32)
    # at a noisy photo's level: near the 8-bit floor this untrained model's solves are near-inverse
    # filters whose reach exceeds any overlap (a trained one's tiles, 200 and 96, are within 0.0012
    # of its whole image there)
    whole = deblur(image, example[2], model=net, noise_sigma=0.03)
    deblurrer = Deblurrer(net, tile=200, overlap=96)
    assert deblurrer.plan(example[2].shape, image.shape[:2]) == (200, 96)
    tiled = deblurrer(image, example[2], noise_sigma=0.03)
    assert _interior_difference(tiled, whole) < 3e-3
    seams = deblur(image, example[2], model=net, noise_sigma=0.03, tile=120, overlap=0)
    assert _interior_difference(seams, whole) > 0.1
    # 2 x (the reach: 2 stages x (3 convolutions + 2 of the 5x5 filters) + 2 x 31) + the ramp, 32
    assert Deblurrer(net).plan((31, 31))[1] == 176
    with pytest.raises(ValueError, match="an HQSNet of 1 image channel"):
        Deblurrer(HQSNet(HQSConfig(stages=1, image_channels=1)))


@pytest.mark.skipif(
    not bfloat16_supported(torch.device("cpu")), reason="this CPU has no native bfloat16"
)
def test_an_hqs_model_in_bfloat16_runs_its_cnns_in_bfloat16_and_stays_near_float32(example):
    from pydeblur.restore import Deblurrer

    net = hqs_net()
    image = example[1][0].clamp(0, 1)
    dtypes = set()
    hook = net.stages[0].cnn.convs[0].register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    try:
        low = Deblurrer(net, precision="bfloat16")(image, example[2], 0.01)
    finally:
        hook.remove()
    high = Deblurrer(net)(image, example[2], 0.01)
    assert dtypes == {torch.bfloat16} and low.dtype == torch.float32
    assert abs(float(psnr(low[None], example[0])) - float(psnr(high[None], example[0]))) < 0.05


def test_tile_size_from_a_memory_budget(base, reference, example, net):
    image = base.astype(np.float32)
    small = deblur(image, example[2], model=net, overlap=96, max_memory=40 * 1024**2)
    assert _interior_difference(small, np.clip(reference, 0, 1)) < 2e-3


# ------------------------------------------------------------------------------------------------------
# Boundaries: a photo blurred by linear convolution is not periodic


def border_and_interior_psnr(restored: torch.Tensor, sharp: torch.Tensor, strip: int = 20):
    """PSNR of the outer `strip` pixels and of the rest, both [1, 3, H, W] in [0, 1]."""
    error = (restored.clamp(0, 1).double() - sharp.double()).square().mean(dim=1)[0]
    mask = torch.ones_like(error, dtype=torch.bool)
    mask[strip:-strip, strip:-strip] = False
    return (10 * torch.log10(1 / error[mask].mean())).item(), (
        10 * torch.log10(1 / error[~mask].mean())
    ).item()


def test_no_ringing_bands_at_the_borders(example):
    from pydeblur.ops import wiener_bank

    sharp, blurred, psf = example
    net = wiener_net(snr_db=17.0)
    restored = deblur(blurred[0], psf, model=net)[None]
    border, interior = border_and_interior_psnr(restored, sharp)
    assert interior > float(psnr(blurred.clamp(0, 1), sharp)) + 2  # it does deblur
    assert border > interior - 2.5, (border, interior)
    # Without the boundary padding, the same filter rings at the borders: the measure sees it.
    circular = wiener_bank(blurred, psf[None, None], nsr=net.nsr)[:, 0]
    ringing, _ = border_and_interior_psnr(circular, sharp)
    assert ringing < interior - 5, (ringing, interior)


@needs_default
def test_default_model_deblurs_without_border_ringing(example):
    sharp, blurred, psf = example
    restored = deblur(blurred[0], psf)[None]
    border, interior = border_and_interior_psnr(restored, sharp)
    assert float(psnr(restored, sharp)) > float(psnr(blurred.clamp(0, 1), sharp)) + 3
    assert border > interior - 2.5, (border, interior)


# ------------------------------------------------------------------------------------------------------
# Bad input: errors that name the problem


@pytest.mark.parametrize(
    "image,psf,error,match",
    [
        (np.zeros((40, 40, 3)), -np.ones((5, 5)), ValueError, "psf has negative values"),
        (np.zeros((40, 40, 3)), np.ones((5, 5, 2)), ValueError, "psf must be a 2-D kernel"),
        (np.zeros((20, 30, 3)), np.ones((25, 25)), ValueError, "larger than the image"),
        (np.zeros((40, 40, 3)), np.full((5, 5), np.nan), ValueError, "psf contains NaN"),
        (np.zeros((40, 40, 3)), "no-such-kernel.npy", FileNotFoundError, "no such kernel file"),
        (np.zeros((40, 40, 5)), np.ones((5, 5)), ValueError, "image must be HxW"),
        (np.zeros((40, 40, 3), np.int32), np.ones((5, 5)), TypeError, "sample type int32"),
        (np.full((40, 40, 3), 200.0), np.ones((5, 5)), ValueError, r"\[0, 1\]"),
        ([[0.5]], np.ones((1, 1)), TypeError, "image must be a NumPy array or a torch tensor"),
    ],
)
def test_bad_input_is_refused_with_a_clear_error(image, psf, error, match, net):
    with pytest.raises(error, match=match):
        deblur(image, psf, model=net)


def test_tile_too_small_for_the_overlap(base, example, net):
    with pytest.raises(ValueError, match="twice the overlap"):
        deblur(base, example[2], model=net, tile=100, overlap=96)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(base, example, net):
    with pytest.raises(RuntimeError, match="no CUDA GPU"):
        deblur(base, example[2], model=net, device="cuda")


@pytest.mark.cuda
def test_cuda_matches_cpu(base, reference, example, net):
    out = deblur(base.astype(np.float32), example[2], model=net, device="cuda")
    # cuDNN convolutions run in TF32 by default (torch.backends.cudnn.allow_tf32): on an H200 the
    # largest difference from the CPU was 2.9e-4 (benchmarks/results/2026-11-26-NVIDIA-H200.md),
    # under a quarter of an 8-bit level, so that is the bound checked.
    assert np.abs(out - np.clip(reference, 0, 1)).max() < 1e-3


def test_import_pydeblur_is_light_and_deblur_is_exported():
    code = (
        "import sys, pydeblur; assert 'torch' not in sys.modules, 'torch imported eagerly'; "
        "from pydeblur import deblur; assert callable(deblur) and 'torch' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_one_kernel_validation_and_one_device_and_model_resolution_per_call(monkeypatch, example):
    import pydeblur.kernel_io
    import pydeblur.restore
    from pydeblur.ops import _checks

    calls = {"check_psf": 0, "resolve_device": 0, "resolve_model": 0, "value_checks": 0}

    def counting(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            calls[name] += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(module, name, wrapper)

    counting(pydeblur.kernel_io, "check_psf")
    counting(pydeblur.restore, "resolve_device")
    counting(pydeblur.restore, "resolve_model")
    run = _checks.ValueChecks.run

    def counted_run(self):
        calls["value_checks"] += self.enabled
        return run(self)

    monkeypatch.setattr(_checks.ValueChecks, "run", counted_run)
    _, blurred, psf = example
    image = blurred[0].permute(1, 2, 0).clamp(0, 1).numpy()
    deblur(image, psf.numpy(), model=DeblurNet(CONFIGS["tiny"]), device="cpu", tile=160, overlap=64)
    assert calls == {"check_psf": 1, "resolve_device": 1, "resolve_model": 1, "value_checks": 0}


# ------------------------------------------------------------------------------------------------------
# Precision: the network's convolutions in bfloat16 where the device has it

needs_bfloat16 = pytest.mark.skipif(
    not bfloat16_supported(torch.device("cpu")),
    reason="this CPU has no native bfloat16 convolutions (AVX512-BF16 or AMX)",
)


@pytest.mark.parametrize("precision", ["float16", "bf16", None])
def test_an_unknown_precision_is_refused(precision, net):
    from pydeblur.restore import Deblurrer

    with pytest.raises(ValueError, match="precision must be one of float32, bfloat16"):
        Deblurrer(net, "cpu", precision=precision)


def test_bfloat16_without_native_support_is_refused(monkeypatch, net):
    import pydeblur.restore

    monkeypatch.setattr(pydeblur.restore, "bfloat16_supported", lambda device: False)
    with pytest.raises(ValueError, match="needs native bfloat16 convolutions"):
        pydeblur.restore.Deblurrer(net, "cpu", precision="bfloat16")


@needs_bfloat16
@needs_default
@pytest.mark.parametrize("tile", [None, 128])
def test_bfloat16_runs_the_convolutions_in_bfloat16_and_stays_near_float32(tile, example):
    from pydeblur.restore import Deblurrer

    sharp, blurred, psf = example
    image = blurred[0].clamp(0, 1)
    overlap = None if tile is None else 48  # the same tiles for both: only the precision differs
    full = Deblurrer("default", "cpu", tile=tile, overlap=overlap)
    fast = Deblurrer("default", "cpu", tile=tile, overlap=overlap, precision="bfloat16")
    dtypes = set()
    hook = fast.model.conv_in.register_forward_hook(lambda m, i, o: dtypes.add(o.dtype))
    try:
        low = fast(image, psf, 0.01)
    finally:
        hook.remove()
    high = full(image, psf, 0.01)
    assert dtypes == {torch.bfloat16}
    assert low.dtype == high.dtype == torch.float32
    assert float((low - high).abs().max()) < 0.02
    assert abs(float(psnr(low[None], sharp)) - float(psnr(high[None], sharp))) < 0.05
