"""The `pydeblur deblur` and `pydeblur demo` commands: files, folders, torchrun shards, bad input."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from pydeblur.cli import main
from pydeblur.cli.demo_cmd import make_example
from pydeblur.weights_io import WEIGHTS_DIR
from tests.helpers import REPO, deblur_args

needs_default = pytest.mark.skipif(
    not (WEIGHTS_DIR / "default.safetensors").exists(),
    reason="the trained default weights are not shipped yet (pydeblur/weights/default.safetensors)",
)


def test_one_file_keeps_size_and_bit_depth(files, tmp_path, capsys):
    _, photos, psf, weights = files
    out = tmp_path / "sharp.tif"
    assert main(deblur_args([photos / "b.tif"], psf, out, weights)) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == (96, 128, 3)
    assert f"wrote {out}" in capsys.readouterr().out


def test_a_folder_goes_to_a_folder_with_the_same_names_and_layouts(files, tmp_path, capsys):
    _, photos, psf, weights = files
    out = tmp_path / "out"
    assert main(deblur_args([photos], psf, out, weights, "--tile", "512")) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg", "d.png"]
    for name in ("a.png", "b.tif", "c.jpg", "d.png"):
        source = cv2.imread(str(photos / name), cv2.IMREAD_UNCHANGED)
        result = cv2.imread(str(out / name), cv2.IMREAD_UNCHANGED)
        assert result.shape == source.shape and result.dtype == source.dtype, name
    rgba = cv2.imread(str(out / "d.png"), cv2.IMREAD_UNCHANGED)
    assert (rgba[..., 3] == 200).all()
    assert "deblurred 4 of 4 images" in capsys.readouterr().out


def test_a_tile_smaller_than_twice_the_overlap_is_refused_before_any_work(files, tmp_path, capsys):
    _, photos, psf, weights = files
    assert main(deblur_args([photos], psf, tmp_path / "o", weights, "--tile", "96")) == 1
    assert "twice the overlap" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_two_inputs_with_one_name_are_refused(files, tmp_path, capsys):
    root, photos, psf, weights = files
    other = root / "other"
    other.mkdir(exist_ok=True)
    (other / "a.png").write_bytes((photos / "a.png").read_bytes())
    code = main(deblur_args([photos / "a.png", other / "a.png"], psf, tmp_path / "o", weights))
    assert code == 1 and "would both be written to" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _bad_inputs(root, photos, psf, weights):
    garbage = root / "garbage.png"
    garbage.write_bytes(b"this is not a PNG")
    negative = root / "negative.npy"
    np.save(negative, -np.ones((5, 5)))
    words = root / "words.txt"
    words.write_text("a blur kernel\n")
    small = root / "small.png"
    cv2.imwrite(str(small), np.zeros((20, 20, 3), np.uint8))
    foreign = root / "foreign.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(3)}, str(foreign))
    not_weights = root / "not_weights.safetensors"
    not_weights.write_bytes(b"\x00" * 64)
    good = photos / "a.png"
    return {
        "missing file": ([root / "nope.png"], psf, weights, "no such file or folder"),
        "unreadable file": ([garbage], psf, weights, "cannot read"),
        "negative kernel": ([good], negative, weights, "negative values"),
        "kernel not numbers": ([good], words, weights, "not a table of numbers"),
        "missing kernel": ([good], root / "nope.npy", weights, "no such kernel file"),
        "image smaller than kernel": ([small], psf, weights, "larger than the image"),
        "foreign safetensors": ([good], psf, foreign, "not a pydeblur DeblurNet weights file"),
        "not a safetensors file": ([good], psf, not_weights, "not a pydeblur weights file"),
        "missing model": ([good], psf, root / "nope.safetensors", "not found"),
    }


BAD = [
    "missing file",
    "unreadable file",
    "negative kernel",
    "kernel not numbers",
    "missing kernel",
    "image smaller than kernel",
    "foreign safetensors",
    "not a safetensors file",
    "missing model",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_writes_nothing(case, files, tmp_path, capsys):
    root, photos, psf, weights = files
    inputs, kernel, model, message = _bad_inputs(root, photos, psf, weights)[case]
    out = tmp_path / "out.png"
    assert main(deblur_args(inputs, kernel, out, model)) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pydeblur deblur: error:"), captured.err
    assert message in lines[0]
    assert list(tmp_path.iterdir()) == []  # no output, not even a temporary file


def test_exit_code_and_no_traceback_from_the_real_command(files, tmp_path):
    root, photos, psf, weights = files
    inputs, kernel, model, _ = _bad_inputs(root, photos, psf, weights)["image smaller than kernel"]
    command = [
        sys.executable,
        "-m",
        "pydeblur",
        *deblur_args(inputs, kernel, tmp_path / "o.png", model),
    ]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr


def test_a_bad_file_in_a_folder_does_not_stop_the_others(files, tmp_path, capsys):
    root, photos, psf, weights = files
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.png").write_bytes((photos / "a.png").read_bytes())
    (mixed / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "out"
    assert main(deblur_args([mixed], psf, out, weights)) == 1
    captured = capsys.readouterr()
    assert [p.name for p in out.iterdir()] == ["a.png"]
    assert "broken.png" in captured.err and "Traceback" not in captured.err
    assert "deblurred 1 of 2 images" in captured.out and "1 failed" in captured.out


@pytest.mark.slow
def test_torchrun_shares_the_files_between_two_gloo_ranks(files, tmp_path):
    _, photos, psf, weights = files
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "pydeblur", *deblur_args([photos], psf, out, weights)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "b.tif", "c.jpg", "d.png"]
    # rank 0 sums what every rank did: a file done twice would count twice
    assert "deblurred 4 of 4 images" in done.stdout and "by 2 processes" in done.stdout, done.stdout


def test_demo_with_given_weights_writes_the_side_by_side_png(files, tmp_path, capsys):
    *_, weights = files
    out = tmp_path / "demo.png"
    assert main(["demo", "-o", str(out), "--model", str(weights), "--device", "cpu"]) == 0
    image = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    sharp, _, _ = make_example()
    assert image.shape[0] > sharp.shape[-2] and image.shape[1] > 3 * sharp.shape[-1]
    printed = capsys.readouterr().out
    assert printed.count(" dB") == 3 and "blurred" in printed and "Wiener" in printed


def test_an_hqs_weights_file_runs_the_demo_and_deblurs_files(files, tmp_path, capsys):
    from pydeblur.hqs import HQSConfig, HQSNet
    from pydeblur.hqs_io import save_hqs

    _, photos, psf, _ = files
    weights = save_hqs(
        HQSNet(HQSConfig(stages=1, channels=4, layers=2)), tmp_path / "h.safetensors", {}
    )
    assert main(["demo", "-o", str(tmp_path / "demo.png"), "--model", str(weights)]) == 0
    assert capsys.readouterr().out.count(" dB") == 3
    out = tmp_path / "sharp.tif"
    assert main(deblur_args([photos / "b.tif"], psf, out, weights, "--noise", "0.01")) == 0
    assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == (96, 128, 3)


@needs_default
def test_demo_with_no_arguments_beats_the_wiener_baseline(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["demo"]) == 0
    assert (tmp_path / "pydeblur_demo.png").exists()
    scores = [
        float(line.split()[-2]) for line in capsys.readouterr().out.splitlines() if "dB" in line
    ]
    blurred, wiener, network = scores
    assert network > wiener > blurred


@needs_default
def test_a_grey_photo_deblurred_with_default_gets_a_note_naming_the_robust_model(
    files, tmp_path, capsys
):
    _, photos, psf, _ = files
    assert main(deblur_args([photos / "c.jpg"], psf, tmp_path / "grey.png", "default")) == 0
    assert f"note: {photos / 'c.jpg'} is grey; --model robust" in capsys.readouterr().err
    assert main(deblur_args([photos / "a.png"], psf, tmp_path / "colour.png", "default")) == 0
    assert "note:" not in capsys.readouterr().err
    assert main(deblur_args([photos / "c.jpg"], psf, tmp_path / "robust.png", "robust")) == 0
    assert "note:" not in capsys.readouterr().err


@needs_default
def test_a_folder_run_counts_its_grey_photos_in_one_note(files, tmp_path, capsys):
    _, photos, psf, _ = files
    assert main(deblur_args([photos], psf, tmp_path / "out", "default")) == 0
    assert "note: 1 of 4 images are grey; --model robust" in capsys.readouterr().err
