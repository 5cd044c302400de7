"""Boundary handling: the periodic extension and its crop, and deconvolution of a non-periodic photo."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pydeblur.boundary import crop, fast_fft_size, pad_periodic, padding_for
from pydeblur.features import wiener_features
from pydeblur.io import read_image
from tests.helpers import needs_data


def test_fast_fft_size():
    assert [fast_fft_size(n) for n in (1, 7, 16, 17, 97, 331)] == [1, 8, 16, 18, 100, 360]
    with pytest.raises(ValueError):
        fast_fft_size(0)


def test_padding_has_the_margin_and_a_fast_size():
    padding = padding_for(256, 200, (34, 30))
    assert padding.top == padding.left == 34
    assert padding.bottom >= 34 and padding.right >= 34
    assert fast_fft_size(256 + padding.top + padding.bottom) == 256 + padding.top + padding.bottom


@pytest.mark.parametrize("shape", [(1, 3, 40, 56), (2, 1, 17, 9)])
def test_crop_inverts_pad_and_the_canvas_wraps_smoothly(shape):
    torch.manual_seed(0)
    image = (
        torch.rand(shape, dtype=torch.float64).cumsum(-1).cumsum(-2)
    )  # a strong ramp: far from periodic
    image = image / image.max()
    canvas, padding = pad_periodic(image, (7, 7))
    assert torch.equal(crop(canvas, padding), image)
    # Continuity across every seam, the periodic wrap included: the jump between opposite edges of
    # the image is spread over the gap, so no step is much larger than jump / gap or than inside.
    for dim, gap in ((-1, padding.left + padding.right), (-2, padding.top + padding.bottom)):
        inside = image.diff(dim=dim).abs().max()
        jump = (image.select(dim, -1) - image.select(dim, 0)).abs().max()
        wrapped = torch.cat([canvas, canvas.narrow(dim, 0, 1)], dim=dim).diff(dim=dim).abs().max()
        assert wrapped <= 3 * max(inside, jump / gap), (float(wrapped), float(inside), float(jump))
        assert wrapped < jump / 3


def test_pad_rejects_bad_input():
    with pytest.raises(ValueError, match="image"):
        pad_periodic(torch.rand(3, 8, 8), (3, 3))
    with pytest.raises(TypeError, match="image"):
        pad_periodic(torch.zeros(1, 3, 8, 8, dtype=torch.int64), (3, 3))


def motion_psf(size=25, steps=60, seed=1):
    """A random-walk camera-shake PSF [size, size], asymmetric, summing to 1."""
    rng = np.random.default_rng(seed)
    psf = np.zeros((size, size))
    position, velocity = np.array([size / 2, size / 2]), np.array([1.0, 0.3])
    for _ in range(steps):
        velocity += rng.normal(0, 0.4, 2)
        velocity /= np.linalg.norm(velocity)
        position = np.clip(position + 0.3 * velocity, 0, size - 1)
        psf[int(round(position[0])), int(round(position[1]))] += 1
    return torch.tensor(psf / psf.sum(), dtype=torch.float32)


def border_and_interior_psnr(restored, sharp, border=16):
    mask = torch.ones(sharp.shape[-2:], dtype=torch.bool)
    mask[border:-border, border:-border] = False
    error = (restored.clamp(0, 1) - sharp) ** 2
    return (
        10 * torch.log10(1 / error[..., mask].mean()),
        10 * torch.log10(1 / error[..., ~mask].mean()),
    )


def test_non_periodic_photo_restores_without_border_ringing():
    photo, _ = read_image(needs_data("photos", "mate_Garden.jpg"))
    photo = torch.as_tensor(np.asarray(photo))
    photo = photo.permute(2, 0, 1)[None] if photo.shape[-1] == 3 else photo[None]
    psf = motion_psf()
    size, k = 256, psf.shape[-1]
    scene = photo[:, :, 500 : 500 + size + k - 1, 700 : 700 + size + k - 1].float()
    # Linear (not circular) convolution, valid part: the borders see scene content outside the frame.
    blurred = F.conv2d(scene.transpose(0, 1), psf.flip(-1, -2)[None, None]).transpose(0, 1)
    sharp = scene[..., k // 2 : k // 2 + size, k // 2 : k // 2 + size]
    blurred = blurred + 0.005 * torch.randn(
        blurred.shape, generator=torch.Generator().manual_seed(0)
    )
    nsr = torch.tensor([1e-3])
    restored = wiener_features(blurred, psf[None, None], nsr)[:, 3:6]
    border, interior = border_and_interior_psnr(restored, sharp)
    assert interior > 27
    assert border > interior - 1.5, (float(border), float(interior))
    # Without the extension (circular deconvolution of the raw frame) the borders ring: the test can fail.
    from pydeblur.ops import wiener_bank

    circular = wiener_bank(blurred, psf[None, None], nsr=nsr)[:, 0]
    ringing_border, _ = border_and_interior_psnr(circular, sharp)
    assert ringing_border < interior - 6
