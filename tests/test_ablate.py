"""Ablations: every row is a valid recipe, and the command trains, keeps and scores rows."""

import json

import pytest
import torch

from pydeblur.model import DeblurNet
from tests.helpers import needs_data
from training import ablate


@pytest.mark.parametrize("name", list(ablate.ROWS))
def test_every_row_is_a_valid_recipe_that_changes_only_its_own_values(name, tmp_path):
    opts = ablate.row_options(name, tmp_path, None, None)
    base = ablate.row_options("base", tmp_path, None, None)
    assert opts.out == str(tmp_path / name)
    DeblurNet(opts.model_config())  # the model builds
    changed = {k for k in vars(opts) if getattr(opts, k) != getattr(base, k)} - {"out"}
    assert changed == set(ablate.ROWS[name][1])


def test_unknown_rows_and_bad_seeds_are_refused(tmp_path):
    for argv in (["--rows", "base,no-such-row"], ["--seeds", "0,x"], ["--seeds", "-1"]):
        with pytest.raises(SystemExit):
            ablate.parse_args(argv)
    assert ablate.parse_args(["--seeds", "1,0,1"]).seeds == [0, 1]
    with pytest.raises(ValueError, match="no-such-row"):
        ablate.row_options("no-such-row", tmp_path, None, None)


def test_rows_train_once_and_are_scored_against_the_base(tmp_path, monkeypatch):
    photos = needs_data("photos")
    needs_data("levin")
    from pydeblur.datasets import BlurredCrops, save_test_set

    photo = sorted(p for p in photos.iterdir() if p.suffix.lower() in (".jpg", ".png"))[0]
    test_set = tmp_path / "test_set.safetensors"
    save_test_set(BlurredCrops([photo], crops_per_photo=1, crop_size=64, psf_size=15), test_set)
    tiny = {"config": "tiny", "batch_size": 2, "crop": 48, "epochs": 1, "steps_per_epoch": 2}
    tiny |= {"photo_scales": (1.0, 0.5), "val_crops": 4, "val_crop": 48}
    monkeypatch.setattr(ablate, "ABLATION_RECIPE", {**ablate.ABLATION_RECIPE, **tiny})
    torch.manual_seed(0)
    out = tmp_path / "ablation"
    argv = ["--rows", "base,bilateral-tail", "--out", str(out), "--paper-limit", "4"]
    argv += ["--test-set", str(test_set), "--timing-repeats", "1", "--data", str(photos)]
    assert ablate.main([*argv, "--seeds", "0,1"]) == 0

    report = json.loads((out / "ablation.json").read_text())
    assert list(report["rows"]) == ["base", "bilateral-tail"]
    assert (out / "base-s1" / "last.pt").exists() and (out / "bilateral-tail-s1").is_dir()
    for row in report["rows"].values():
        assert [r["seed"] for r in row["seeds"]] == [0, 1]
        for name in ("paper", "levin"):
            psnrs = [r[name]["psnr"] for r in row["seeds"]]
            assert row["scores"][name]["psnr"] == pytest.approx(sum(psnrs) / 2)
            assert row["scores"][name]["spread"] == pytest.approx(max(psnrs) - min(psnrs))
        assert all(r["steps"] == 2 and r["time_s"] > 0 for r in row["seeds"])
        assert row["parameters"] > 0
    assert (out / "base" / "photos_x0.5").is_symlink()  # one shared cache of scaled photos
    lines = (out / "ablation.md").read_text().splitlines()
    base_line, tail_line = lines[2], lines[3]
    base, tail = (report["rows"][n]["scores"] for n in ("base", "bilateral-tail"))
    delta = tail["levin"]["psnr"] - base["levin"]["psnr"]
    assert base_line.startswith("| base |") and f"{delta:+.2f}" in tail_line
    assert f"{tail['paper']['spread']:.2f} / {tail['levin']['spread']:.2f}" in tail_line

    stamp = (out / "base" / "last.pt").stat().st_mtime_ns
    assert ablate.main([*argv, "--score-only", "--rows", "base"]) == 0
    assert (out / "base" / "last.pt").stat().st_mtime_ns == stamp  # finished rows are kept
    report = json.loads((out / "ablation.json").read_text())
    assert list(report["rows"]) == ["base"] and len(report["rows"]["base"]["seeds"]) == 1
