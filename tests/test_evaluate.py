"""The evaluation: Levin's shift-search scoring, the benchmark readers, and the command end to end."""

import json

import pytest
import torch

from pydeblur.degrade import valid_offset
from tests.helpers import needs_data
from training import eval_sets, levin_scoring


def test_levin_items_and_the_blurred_baseline():
    folder = needs_data("levin")
    items = eval_sets.levin_items(folder)
    assert len(items) == 32
    assert len({item["name"] for item in items}) == 32
    assert {item["group"] for item in items[:8]} == {f"k{j}" for j in range(1, 9)}
    for item in items:
        assert item["blurred"].shape == item["sharp"].shape == (1, 255, 255)
        assert item["psf"].sum().item() == pytest.approx(1.0, abs=1e-5)
    # The blurred inputs score about 23.2 dB with integer shifts, a little more with quarters.
    blurred = torch.stack([item["blurred"] for item in items])
    sharp = torch.stack([item["sharp"] for item in items])
    integer = levin_scoring.shifted_psnr(blurred, sharp, step=1).mean().item()
    assert integer == pytest.approx(23.2, abs=0.1)
    assert levin_scoring.shifted_psnr(blurred, sharp).mean().item() > integer
    # The set's noise level is fixed (the Haar reading, 0.74 of 255 on average), whatever the
    # library's estimator reads: FDN's row and levin-synthetic were defined with it.
    sigma = torch.tensor([item["noise_var"] ** 0.5 for item in items]).mean().item()
    assert sigma * 255 == pytest.approx(0.741, abs=0.001)


def test_levin_synthetic_items_blur_the_sharp_images_exactly():
    folder = needs_data("levin")
    captured = eval_sets.levin_items(folder, limit=4)
    synthetic = eval_sets.levin_synthetic_items(folder, limit=4)
    again = eval_sets.levin_synthetic_items(folder, limit=4)
    reseeded = eval_sets.levin_synthetic_items(folder, limit=4, seed=1)
    for real, item, same, other in zip(captured, synthetic, again, reseeded, strict=True):
        assert item["name"] == real["name"] and torch.equal(item["psf"], real["psf"])
        torch.testing.assert_close(item["sharp"], real["sharp"], rtol=0, atol=0)
        torch.testing.assert_close(item["blurred"], same["blurred"], rtol=0, atol=0)
        # Two seeds differ by two draws of the noise: variance 2 x the captured image's estimate.
        difference = (item["blurred"] - other["blurred"]).var().item()
        assert difference == pytest.approx(2 * real["noise_var"], rel=0.1)
        # Away from the reflected border the blur is the kernel's convolution of the sharp image.
        kernel = real["psf"][0]
        kh, kw = kernel.shape
        direct = torch.nn.functional.conv2d(real["sharp"][None], kernel.flip(-2, -1)[None, None])
        top, left = valid_offset(kh, kw)
        inner = item["blurred"][0, top : top + direct.shape[-2], left : left + direct.shape[-1]]
        noise = inner - direct[0, 0]
        assert noise.std().item() == pytest.approx(real["noise_var"] ** 0.5, rel=0.1)
        assert abs(noise.mean().item()) < 1e-3


def test_kodak_items_are_seeded_and_noisy_as_asked():
    needs_data("kodak")
    first = eval_sets.kodak_items(crop=64, limit=3)
    again = eval_sets.kodak_items(crop=64, limit=3)
    assert len(first) == 6
    assert [item["group"] for item in first] == ["sigma 0.01"] * 3 + ["sigma 0.03"] * 3
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a["blurred"], b["blurred"], rtol=0, atol=0)
        assert a["blurred"].shape == a["sharp"].shape == (3, 64, 64)
    # Noise-free blur of the same crop: the difference is the noise, of the asked sigma.
    item = first[4]
    noise_free = eval_sets.kodak_items(crop=64, limit=3, sigmas=(0.0,))[1]
    residual = item["blurred"] - noise_free["blurred"]
    assert residual.std().item() == pytest.approx(0.03, rel=0.05)


def test_evaluate_end_to_end_with_a_tiny_model(tmp_path):
    photos = needs_data("photos")
    needs_data("levin")
    needs_data("kodak")
    from pydeblur.datasets import BlurredCrops, save_test_set
    from pydeblur.model import DeblurNet
    from pydeblur.weights_io import save_weights
    from training.evaluate import main

    photo = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    test_set = tmp_path / "test_set.safetensors"
    save_test_set(BlurredCrops([photo], crops_per_photo=1, crop_size=64, psf_size=15), test_set)
    torch.manual_seed(0)
    weights = save_weights(
        DeblurNet("tiny"), tmp_path / "tiny.safetensors", {"name": "tiny-random"}
    )

    out = tmp_path / "out"
    args = ["--sets", "paper,levin,kodak", "--limit", "2", "--kodak-crop", "64", "--no-calibration"]
    args += ["--timing-repeats", "1"]
    args += ["--test-set", str(test_set), "--model", str(weights), "--out", str(out)]
    assert main(args) == 0

    results = json.loads((out / "results.json").read_text())
    assert set(results["sets"]) == {"paper", "levin", "kodak"}
    paper = results["sets"]["paper"]
    assert paper["n_images"] == 4
    assert paper["groups"] == ["1/8", "1/4", "1/2", "1"]
    assert "Model: tiny-random" in paper["methods"]
    for row in paper["methods"].values():
        assert set(row["groups"]) == set(paper["groups"])
        assert row["time_s"] > 0 or row is paper["methods"]["Blurred input"]
        assert 5 < row["psnr"] < 60
    assert results["sets"]["levin"]["n_images"] == 2
    assert results["sets"]["kodak"]["n_images"] == 4
    text = (out / "results.md").read_text()
    assert "Model: tiny-random" in text and "Table 1" in text
    for name in ("paper", "levin", "kodak"):
        assert (out / "figures" / f"{name}.png").stat().st_size > 10_000


def test_calibration_picks_the_best_of_its_grids(monkeypatch):
    needs_data("kodak")
    from training import eval_methods

    items = eval_sets.kodak_items(crop=48, limit=2, sigmas=(0.03,))
    monkeypatch.setattr(eval_methods, "RL_ITERATION_GRID", (2, 40))
    monkeypatch.setattr(eval_methods, "TV_WEIGHT_GRID", (0.001, 0.3))
    tuned = eval_methods.calibrate(items, torch.device("cpu"), log=lambda line: None)
    # At sigma 0.03, 40 RL iterations amplify the noise and a tiny TV weight barely regularises.
    assert tuned["rl_iterations"] == 2 and tuned["tv_weight"] == 0.3
    assert tuned["rl_psnr"][2] > tuned["rl_psnr"][40]
    assert len(tuned["calibration_images"]) == 2


def test_limits_per_set():
    from training.evaluate import parse_limits

    assert parse_limits(None) == {}
    assert parse_limits("3") == {"paper": 3, "levin": 3, "kodak": 3, "levin-synthetic": 3}
    assert parse_limits("paper=64,kodak=24") == {"paper": 64, "kodak": 24}
    with pytest.raises(ValueError, match="unknown set"):
        parse_limits("mnist=3")
    with pytest.raises(ValueError, match="positive"):
        parse_limits("paper=0")


def test_the_fdn_peer_row_takes_the_noise_not_the_sharp_image(tmp_path):
    from training.eval_methods import FDN_ROW, peer_methods, run_method

    assert peer_methods(tmp_path) == []  # no weights there: no peer rows
    peers = peer_methods(needs_data("peers"))
    assert [m.name for m in peers] == [FDN_ROW] and peers[0].noise
    items = eval_sets.levin_items(needs_data("levin"), limit=1)
    seen = []
    original = peers[0].run
    peers[0].run = lambda y, k, third: seen.append(third) or original(y, k, third)
    scores, _ = run_method(peers[0], items, torch.device("cpu"), keep=set())
    assert torch.equal(seen[0], torch.tensor([items[0]["noise_var"] ** 0.5], dtype=torch.float64))
    assert scores["psnr"][0] > scores["psnr_integer"][0] > 25  # deblurred; quarters beat integers
