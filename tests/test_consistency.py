import dataclasses

import numpy as np
import pytest
import torch

from pydeblur.consistency import data_consistency
from pydeblur.degrade import degrade, valid_offset
from pydeblur.metrics import psnr
from pydeblur.model import CONFIGS, DeblurNet, ModelConfig
from pydeblur.noise import MIN_SIGMA
from pydeblur.restore import deblur
from pydeblur.tiling import run_tiled


def smooth_image(size=64, seed=0):
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 8, size // 8, generator=generator)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic").clamp(0, 1)


def blurred_example(sigma=0.01, seed=0):
    """(sharp [1, 3, 64, 64], blurred, psf [1, 1, 9, 9]): a box blur of a smooth image, Gaussian noise."""
    psf = torch.zeros(1, 1, 9, 9)
    psf[..., 2:7, 1:8] = 1.0
    psf /= psf.sum()
    padded = smooth_image(72, seed)
    o, p = valid_offset(9, 9)
    sharp = padded[..., o : o + 64, p : p + 64]
    blurred = degrade(padded, psf, photons=None)
    noise = sigma * torch.randn(blurred.shape, generator=torch.Generator().manual_seed(seed + 1))
    return sharp, blurred + noise, psf


def test_a_low_frequency_error_is_taken_back_from_the_data():
    sharp, blurred, psf = blurred_example()
    estimate = sharp + 0.1  # a brightness error: the blur keeps the mean, so the data knows it
    # Weaker strengths trust the data where the box blur is near zero too (noise: 27 dB at 100);
    # stronger ones keep part of the offset (26 dB at 1e4).
    corrected = data_consistency(estimate, blurred, psf, strength=1e3, sigma=torch.tensor([0.01]))
    assert psnr(corrected, sharp) > psnr(estimate, sharp) + 10


def test_a_large_strength_keeps_the_estimate():
    sharp, blurred, psf = blurred_example()
    estimate = sharp + 0.05 * torch.randn(sharp.shape, generator=torch.Generator().manual_seed(3))
    corrected = data_consistency(estimate, blurred, psf, strength=1e12)
    torch.testing.assert_close(corrected, estimate, atol=1e-4, rtol=0)


def test_the_noise_is_estimated_when_not_given():
    sharp, blurred, psf = blurred_example(sigma=0.02)
    estimate = sharp + 0.1
    given = data_consistency(estimate, blurred, psf, 1e4, sigma=torch.tensor([0.02]))
    estimated = data_consistency(estimate, blurred, psf, 1e4)
    assert abs(float(psnr(given, sharp)) - float(psnr(estimated, sharp))) < 1.0


def test_zero_noise_is_raised_to_the_floor_and_stays_finite():
    sharp, blurred, psf = blurred_example(sigma=0.0)
    out = data_consistency(sharp, blurred, psf, 1e4, sigma=torch.zeros(1))
    floor = data_consistency(sharp, blurred, psf, 1e4, sigma=torch.full((1,), MIN_SIGMA))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, floor)


def test_dtype_and_shape_are_kept_and_gradients_flow():
    sharp, blurred, psf = blurred_example()
    estimate = sharp.clone().requires_grad_()
    out = data_consistency(estimate, blurred, psf, 1e4)
    assert out.shape == sharp.shape and out.dtype == torch.float32
    out.sum().backward()
    assert estimate.grad is not None and torch.isfinite(estimate.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(strength=0.0), "strength must be positive"),
        (dict(strength=float("nan")), "strength must be positive"),
        (dict(estimate=torch.rand(1, 3, 64, 60)), "one shape"),
        (dict(psf=torch.ones(9, 9) / 81), r"psf must be \[B, 1, kh, kw\]"),
    ],
)
def test_bad_arguments(kwargs, match):
    sharp, blurred, psf = blurred_example()
    args = dict(estimate=sharp, blurred=blurred, psf=psf, strength=1e4) | kwargs
    with pytest.raises(ValueError, match=match):
        data_consistency(**args)


def test_the_network_applies_it_last_when_configured():
    torch.manual_seed(0)
    plain = DeblurNet("tiny").eval()
    config = dataclasses.replace(plain.config, data_consistency=2e4)
    corrected = DeblurNet(config).eval()
    corrected.load_state_dict(plain.state_dict())
    sharp, blurred, psf = blurred_example()
    with torch.no_grad():
        expected = data_consistency(plain(blurred, psf), blurred, psf, 2e4)
        torch.testing.assert_close(corrected(blurred, psf), expected)


def test_config_validates_the_strength():
    with pytest.raises(ValueError, match="data_consistency must be finite and >= 0"):
        ModelConfig(data_consistency=-1.0)


def consistent_tiny_net() -> DeblurNet:
    torch.manual_seed(0)
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], snr_db=(9.0, 13.0, 17.0, 21.0)))
    net.config = dataclasses.replace(net.config, data_consistency=2e4)
    return net.eval()


def test_deblur_applies_it_once_on_the_whole_image():
    """One tile: deblur is the module's forward. Tiled: the tiles run the network alone (with its own
    overlap) and the step runs once on the assembled image, channel by channel."""
    net = consistent_tiny_net()
    sharp, blurred, psf = blurred_example()
    image = blurred.clamp(0, 1)
    with torch.no_grad():
        expected = net(image, psf).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    whole = deblur(image[0].permute(1, 2, 0).numpy(), psf[0, 0], model=net)
    np.testing.assert_allclose(whole, expected, atol=1e-5)
    assert net.receptive_radius() == DeblurNet("tiny").receptive_radius()  # no wider tiles for it

    plain = DeblurNet(dataclasses.replace(net.config, data_consistency=0.0)).eval()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        tiles = run_tiled(lambda part: plain(part, psf), image, tile=48, overlap=16)
        once = data_consistency(tiles, image, psf, 2e4).clamp(0, 1)[0].permute(1, 2, 0).numpy()
    tiled = deblur(image[0].permute(1, 2, 0).numpy(), psf[0, 0], model=net, tile=48, overlap=16)
    np.testing.assert_allclose(tiled, once, atol=1e-5, rtol=0)


def border_and_inner_error(image, sharp, band=8):
    """Mean squared error in the `band`-pixel frame and inside it."""
    error = (image - sharp).pow(2).mean(dim=(0, 1))
    inner = error[band:-band, band:-band]
    return float((error.sum() - inner.sum()) / (error.numel() - inner.numel())), float(inner.mean())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_boundary_adjustment_keeps_a_right_estimate_right_at_the_borders(seed):
    """The blurred image holds light from outside the frame (a valid blur), which the smooth fill of
    y on the canvas does not explain, so without the adjustment the step pulls even a right estimate
    off at the borders; with it the canvas outside is the estimate blurred (neutral there)."""
    sharp, blurred, psf = blurred_example(sigma=0.002, seed=seed)
    sigma = torch.tensor([0.002])
    smooth = data_consistency(sharp, blurred, psf, 2e4, sigma)
    adjusted = data_consistency(sharp, blurred, psf, 2e4, sigma, adjust_boundary=True)
    smooth_border, _ = border_and_inner_error(smooth, sharp)
    adjusted_border, _ = border_and_inner_error(adjusted, sharp)
    assert adjusted_border < 0.8 * smooth_border, (adjusted_border, smooth_border)
    assert psnr(adjusted, sharp) > psnr(smooth, sharp) + 1.0


def test_the_network_passes_its_boundary_adjustment_and_old_weights_load_without_it(tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.torch import save_file

    from pydeblur.weights_io import load_model, save_weights

    torch.manual_seed(0)
    config = dataclasses.replace(CONFIGS["tiny"], data_consistency=2e4, boundary_adjustment=True)
    net = DeblurNet(config).eval()
    sharp, blurred, psf = blurred_example()
    with torch.no_grad():
        expected = data_consistency(net.network(blurred, psf), blurred, psf, 2e4, None, None, True)
        torch.testing.assert_close(net(blurred, psf), expected)

    path = save_weights(net, tmp_path / "adjusted.safetensors", {"note": "tests"})
    assert load_model(path).config.boundary_adjustment is True
    with safe_open(str(path), "pt") as handle:  # a file written before the field existed
        metadata, tensors = handle.metadata(), {k: handle.get_tensor(k) for k in handle.keys()}
    old = json.loads(metadata["config"])
    del old["boundary_adjustment"]
    save_file(tensors, str(tmp_path / "old.safetensors"), {**metadata, "config": json.dumps(old)})
    assert load_model(tmp_path / "old.safetensors").config.boundary_adjustment is False
