"""Fixtures shared by the command-line tests."""

import cv2
import numpy as np
import pytest
import torch

from pydeblur.cli.demo_cmd import make_example
from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.weights_io import save_weights


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A folder of small blurred photos (8-bit RGB, 16-bit RGB, 8-bit grey, RGBA), their kernel, and
    tiny random weights."""
    root = tmp_path_factory.mktemp("cli")
    _, blurred, psf = make_example()
    rgb = blurred[0].permute(1, 2, 0).clamp(0, 1).numpy()[:96, :128]
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    photos = root / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.round(bgr * 255).astype(np.uint8))
    cv2.imwrite(str(photos / "b.tif"), np.round(bgr * 65535).astype(np.uint16))
    cv2.imwrite(str(photos / "c.jpg"), np.round(rgb.mean(axis=2) * 255).astype(np.uint8))
    alpha = np.full(rgb.shape[:2] + (1,), 200, np.uint8)
    cv2.imwrite(str(photos / "d.png"), np.dstack([np.round(bgr * 255).astype(np.uint8), alpha]))
    np.save(root / "psf.npy", psf.numpy())
    torch.manual_seed(0)
    weights = save_weights(DeblurNet(CONFIGS["tiny"]), root / "tiny.safetensors", {"note": "tests"})
    return root, photos, root / "psf.npy", weights
