"""sRGB decoding (`gamma="srgb"`) and clipped highlights (`clip_level=`) in deblur, and pydeblur.colour."""

import numpy as np
import pytest
import torch

from pydeblur.colour import linear_to_srgb, srgb_to_linear
from pydeblur.consistency import data_consistency
from pydeblur.model import DeblurNet
from pydeblur.restore import deblur, unclipped


class Passthrough(torch.nn.Module):
    """A "model" that returns its input: deblur's conversions alone."""

    def forward(self, blurred, psf):
        return blurred


DELTA = np.ones((1, 1))


@pytest.mark.parametrize("kind", ["numpy", "torch"])
def test_srgb_round_trip_and_known_values(kind):
    levels = np.arange(65536) / 65535
    values = torch.from_numpy(levels) if kind == "torch" else levels
    back = linear_to_srgb(srgb_to_linear(values))
    assert np.abs(np.asarray(back) - levels).max() < 1e-9
    # the standard's points: 0.5 encoded is 0.214 linear, 18 % grey (linear) is 0.461 encoded
    assert float(srgb_to_linear(np.array(0.5))) == pytest.approx(0.21404, abs=1e-5)
    assert float(linear_to_srgb(np.array(0.18))) == pytest.approx(0.46135, abs=1e-5)
    # odd symmetry beyond [0, 1]: overshoots survive
    assert float(linear_to_srgb(srgb_to_linear(np.array(-0.2)))) == pytest.approx(-0.2)
    assert float(linear_to_srgb(srgb_to_linear(np.array(1.3)))) == pytest.approx(1.3)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_gamma_round_trip_through_deblur_is_exact_to_one_level(dtype):
    top = np.iinfo(dtype).max
    image = np.linspace(0, top, 64 * 48 * 3).reshape(48, 64, 3).astype(dtype)
    out = deblur(image, DELTA, model=Passthrough(), device="cpu", gamma="srgb")
    assert out.dtype == dtype
    assert np.abs(out.astype(np.int64) - image).max() <= 1


def test_gamma_srgb_deblurs_in_linear_light():
    """A photo blurred in linear light and then sRGB-encoded is deblurred best after decoding."""
    rng = np.random.default_rng(0)
    sharp = np.kron(rng.random((12, 12, 3)), np.ones((8, 8, 1)))  # blocks: strong edges
    psf = np.full((5, 5), 1 / 25)
    from scipy.ndimage import convolve

    blurred = np.stack([convolve(sharp[..., c], psf, mode="wrap") for c in range(3)], axis=2)
    encoded = linear_to_srgb(blurred).astype(np.float32)
    truth = linear_to_srgb(sharp)
    net = DeblurNet("default")  # untrained: its Wiener mix alone
    errors = {
        gamma: np.abs(deblur(encoded, psf, model=net, device="cpu", gamma=gamma) - truth).mean()
        for gamma in ("linear", "srgb")
    }
    assert errors["srgb"] < errors["linear"]


def test_clipped_mask_covers_the_clipped_pixels_and_their_neighbours():
    rgb = torch.zeros(1, 3, 9, 9)
    rgb[0, 1, 4, 4] = 1.0  # green clipped at one pixel
    rgb[0, 0, 0, 0] = 0.97  # red under the level
    mask = unclipped(rgb, 0.98)
    assert mask[0, 1, 3:6, 3:6].sum() == 0 and mask[0, 1].sum() == 81 - 9
    assert mask[0, 0].all() and mask[0, 2].all()


def test_untrusted_data_pull_nowhere():
    """Data consistency with the image's pixels untrusted barely moves the estimate inside (only the
    periodic canvas around the image still holds data); with them trusted it moves."""
    torch.manual_seed(0)
    estimate, blurred = torch.rand(1, 1, 48, 48), torch.rand(1, 1, 48, 48)
    psf = torch.full((1, 1, 5, 5), 1 / 25)
    sigma = torch.tensor([0.01])
    moved = data_consistency(estimate, blurred, psf, 2e4, sigma)
    kept = data_consistency(estimate, blurred, psf, 2e4, sigma, trusted=torch.zeros_like(blurred))
    inner = (..., slice(12, -12), slice(12, -12))
    assert (kept - estimate)[inner].abs().mean() < 0.05 * (moved - estimate)[inner].abs().mean()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": "sRGB"}, "gamma must be one of linear, srgb"),
        ({"clip_level": 0}, "clip_level must be None or a number in"),
        ({"clip_level": 1.5}, "clip_level must be None or a number in"),
    ],
)
def test_bad_arguments_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deblur(np.zeros((8, 8), np.float32), DELTA, model=Passthrough(), device="cpu", **kwargs)


def test_clip_mask_reduces_ringing_around_a_blown_highlight():
    """A lamp brighter than the sensor's maximum, blurred, then clipped: with the mask (the data there
    refilled from the first estimate and kept out of the data step) the result around it is closer to
    the sharp scene (clipped at 1) than without."""
    from scipy.ndimage import convolve

    from pydeblur.kernels import motion

    rng = np.random.default_rng(0)
    light = 0.3 + 0.1 * rng.random((96, 96))
    light[40:56, 40:56] = 1.6  # the lamp
    psf = motion(11, 30)
    blurred = np.clip(convolve(light, psf, mode="reflect"), 0, 1).astype(np.float32)
    truth = np.clip(light, 0, 1)
    plain = deblur(blurred, psf, device="cpu")
    masked = deblur(blurred, psf, device="cpu", clip_level=0.98)
    around = (slice(24, 72), slice(24, 72))
    error = {
        name: np.abs(out - truth)[around].mean()
        for name, out in (("plain", plain), ("masked", masked))
    }
    assert error["masked"] < error["plain"]
