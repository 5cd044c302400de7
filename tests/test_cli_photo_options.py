"""`pydeblur deblur`'s options for a real photo: --noise, --strength, --gamma, --clip-level, --verbose."""

import dataclasses

import numpy as np
import pytest
import torch

from pydeblur.cli import main
from pydeblur.io import read_image, write_image
from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.weights_io import save_weights


@pytest.fixture(scope="module")
def refining(tmp_path_factory):
    """Tiny random weights with a data-consistency step, so the noise level and the mask matter."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIGS["tiny"], data_consistency=1e4)
    path = tmp_path_factory.mktemp("weights") / "refining.safetensors"
    return save_weights(DeblurNet(config), path, {"note": "tests"})


def deblurred(photo, psf, weights, out, *options):
    args = ["deblur", str(photo), "--psf", str(psf), "-o", str(out), "--model", str(weights)]
    assert main([*args, "--device", "cpu", *options]) == 0
    return read_image(out)[0]


def test_noise_level_reaches_the_model_and_auto_is_the_default(files, refining, tmp_path):
    _, photos, psf, _ = files
    photo = photos / "a.png"
    low = deblurred(photo, psf, refining, tmp_path / "low.png", "--noise", "0.001")
    high = deblurred(photo, psf, refining, tmp_path / "high.png", "--noise", "0.2")
    auto = deblurred(photo, psf, refining, tmp_path / "auto.png", "--noise", "auto")
    default = deblurred(photo, psf, refining, tmp_path / "default.png")
    assert np.abs(low - high).max() > 0.05
    assert np.array_equal(auto, default)


def test_strength_trades_sharpness_for_noise(files, refining, tmp_path):
    _, photos, psf, _ = files
    photo = photos / "a.png"
    one = deblurred(photo, psf, refining, tmp_path / "one.png", "--noise", "0.02")
    four = deblurred(
        photo, psf, refining, tmp_path / "four.png", "--noise", "0.02", "--strength", "4"
    )
    assert np.abs(one - four).max() > 0.02


def test_gamma_auto_is_srgb_for_integer_files_and_linear_for_float_tiffs(files, refining, tmp_path):
    _, photos, psf, _ = files
    photo = photos / "a.png"
    srgb = deblurred(photo, psf, refining, tmp_path / "srgb.png", "--gamma", "srgb")
    linear = deblurred(photo, psf, refining, tmp_path / "linear.png", "--gamma", "linear")
    auto = deblurred(photo, psf, refining, tmp_path / "auto.png")
    assert np.array_equal(auto, srgb) and not np.array_equal(srgb, linear)
    floats = tmp_path / "float.tif"
    write_image(floats, read_image(photo)[0], np.float32)
    auto = deblurred(floats, psf, refining, tmp_path / "float_auto.tif")
    linear = deblurred(floats, psf, refining, tmp_path / "float_linear.tif", "--gamma", "linear")
    assert np.array_equal(auto, linear)


def test_clip_level_masks_only_clipped_photos(files, refining, tmp_path):
    _, photos, psf, _ = files
    image = read_image(photos / "a.png")[0].copy()
    unclipped = tmp_path / "unclipped.png"
    write_image(unclipped, image * 0.9)
    masked = deblurred(unclipped, psf, refining, tmp_path / "m.png")
    unmasked = deblurred(unclipped, psf, refining, tmp_path / "u.png", "--clip-level", "none")
    assert np.array_equal(masked, unmasked)  # nothing at or above 0.98: the mask changes nothing
    image[30:60, 40:80] = 1.0
    clipped = tmp_path / "clipped.png"
    write_image(clipped, image)
    masked = deblurred(clipped, psf, refining, tmp_path / "cm.png")
    unmasked = deblurred(clipped, psf, refining, tmp_path / "cu.png", "--clip-level", "none")
    assert not np.array_equal(masked, unmasked)


def test_verbose_prints_the_noise_level_it_uses(files, refining, tmp_path, capsys, monkeypatch):
    import pydeblur.noise

    _, photos, psf, _ = files
    quiet = deblurred(photos / "a.png", psf, refining, tmp_path / "q.png")
    capsys.readouterr()
    calls, original = [], pydeblur.noise.estimate_noise_sigma
    monkeypatch.setattr(
        pydeblur.noise, "estimate_noise_sigma", lambda *a: calls.append(1) or original(*a)
    )
    loud = deblurred(photos / "a.png", psf, refining, tmp_path / "v.png", "--verbose")
    assert "noise sigma" in capsys.readouterr().err
    assert len(calls) == 1  # estimated once, for the message and the deblurring
    assert np.array_equal(loud, quiet)  # the sigma said is the one the deblurrer estimates itself
    deblurred(photos / "a.png", psf, refining, tmp_path / "w.png", "--verbose", "--noise", "0.01")
    assert "noise sigma 0.0100 (given" in capsys.readouterr().err


@pytest.mark.parametrize(
    "option, value, message",
    [
        ("--noise", "loud", "must be auto or a number in [0, 1]"),
        ("--noise", "2", "must be auto or a number in [0, 1]"),
        ("--strength", "0", "must be a positive number"),
        ("--clip-level", "1.5", "must be none or a number in (0, 1]"),
        ("--gamma", "sRGB", "invalid choice"),
    ],
)
def test_bad_values_are_refused_with_the_option_named(
    files, tmp_path, capsys, option, value, message
):
    _, photos, psf, weights = files
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "deblur",
                str(photos / "a.png"),
                "--psf",
                str(psf),
                "-o",
                str(tmp_path / "x.png"),
                option,
                value,
            ]
        )
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert option in error and message in error
    assert not (tmp_path / "x.png").exists()
