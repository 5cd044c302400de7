"""pydeblur.tiling: tile layout, blending weights, overlap and tile sizes, the tiled run."""

import dataclasses
import subprocess
import sys

import pytest
import torch

from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.tiling import (
    BLEND_RAMP,
    MAX_TILE,
    MIN_TILE,
    auto_tile,
    blend_weights,
    check_tile,
    default_overlap,
    run_tiled,
    tile_layout,
)
from tests.helpers import REPO


@pytest.mark.parametrize("length,tile,overlap", [(287, 200, 96), (351, 200, 60), (4000, 1270, 240)])
def test_tile_layout_covers_with_the_overlap_and_weights_sum_to_one(length, tile, overlap):
    starts, span = tile_layout(length, tile, overlap)
    assert span <= tile and starts[0] == 0 and starts[-1] + span == length
    assert all(b - a <= span - overlap for a, b in zip(starts, starts[1:], strict=False))
    total = torch.zeros(length)
    discard = (overlap - min(BLEND_RAMP, overlap // 3)) // 2  # spoiled by a shared tile border
    for start, weight in zip(starts, blend_weights(length, starts, span, overlap), strict=True):
        assert len(weight) == span and weight.min() >= 0
        if start > 0:
            assert weight[:discard].max() == 0 and weight[discard:].max() > 0
        if start + span < length:
            assert weight[span - discard :].max() == 0
        total[start : start + span] += weight
    assert torch.allclose(total, torch.ones(length), atol=1e-6)


def test_default_overlap_covers_receptive_field_and_kernel():
    net = DeblurNet(CONFIGS["default"])
    # 12 convolutions of 3x3 (radius 12), the context branch's 63 and a 34-pixel kernel: reach
    # 12 + 63 + 68 = 143; overlap: two reaches and the 32-pixel ramp, rounded up to 8
    assert net.receptive_radius() == 12 + net.context.reach == 75
    assert default_overlap(net.receptive_radius(), (34, 34)) == 320
    tailed = DeblurNet(dataclasses.replace(CONFIGS["default"], bilateral_tail=True))
    assert tailed.receptive_radius() == 75 + 3  # the 7x7 bilateral tail


def test_auto_tile_fits_the_budget_within_its_bounds():
    bytes_per_pixel = DeblurNet(CONFIGS["default"]).bytes_per_pixel()
    tile = auto_tile(bytes_per_pixel, (34, 34), 2 * 1024**3)
    assert tile % 8 == 0 and (tile + 68) ** 2 * bytes_per_pixel <= 2 * 1024**3
    assert ((tile + 8 + 68) ** 2) * bytes_per_pixel > 2 * 1024**3 * 0.97
    assert auto_tile(bytes_per_pixel, (34, 34), 1) == MIN_TILE
    assert auto_tile(1, (3, 3), 1 << 40) == MAX_TILE


def test_check_tile_refuses_tiles_that_are_mostly_overlap():
    check_tile(64, 32)
    with pytest.raises(ValueError, match="twice the overlap"):
        check_tile(63, 32)
    with pytest.raises(ValueError, match="positive integers"):
        check_tile("64", 8)


@pytest.mark.parametrize("shape", [(1, 3, 37, 200), (1, 3, 130, 130), (1, 1, 20, 20)])
def test_run_tiled_is_exact_for_a_pointwise_function(shape):
    image = torch.rand(shape)
    calls = []

    def run(part):
        calls.append(part.shape)
        return part * 3 - 1

    out = run_tiled(run, image, tile=64, overlap=24)
    torch.testing.assert_close(out, image * 3 - 1, atol=1e-6, rtol=0)
    assert (len(calls) == 1) == (max(shape[-2:]) <= 64)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_tune_allocator_takes_effect_on_glibc():
    code = "from pydeblur.tiling import tune_allocator; assert tune_allocator()"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
