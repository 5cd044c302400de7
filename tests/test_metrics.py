"""pydeblur.metrics: PSNR on batches and on one array."""

import numpy as np
import pytest
import torch

from pydeblur.metrics import image_psnr, psnr


def test_image_psnr_is_psnr_of_the_centre_grey_or_colour():
    rng = np.random.default_rng(0)
    sharp = rng.random((30, 40, 3))
    noisy = np.clip(sharp + rng.normal(0, 0.05, sharp.shape), 0, 1)
    noisy[:4] = 0  # a ruined border row band, left out by border=4
    centre = [torch.from_numpy(a[4:-4, 4:-4].copy()).permute(2, 0, 1)[None] for a in (noisy, sharp)]
    assert image_psnr(noisy, sharp, border=4) == pytest.approx(float(psnr(*centre)[0]))
    assert image_psnr(noisy, sharp) < image_psnr(noisy, sharp, border=4) - 3
    assert image_psnr(noisy[..., 0], sharp[..., 0], 4) == pytest.approx(
        float(psnr(centre[0][:, :1], centre[1][:, :1])[0])
    )


def test_psnr_refuses_different_shapes():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 5))
