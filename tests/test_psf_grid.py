"""A kernel per region (`pydeblur.psf_grid`, `pydeblur deblur --psf-grid`): the folder's naming and its
refusals, agreement with `deblur` for a uniform grid, a gain over one kernel for a varying blur, the
command end to end and its --psf / --psf-grid exclusivity."""

import dataclasses

import numpy as np
import pytest
import torch

from pydeblur.cli import main
from pydeblur.cli.demo_cmd import make_example
from pydeblur.degrade import blur_valid, valid_offset
from pydeblur.io import read_image, write_image
from pydeblur.kernel_io import read_psf, write_psf
from pydeblur.kernels import motion
from pydeblur.model import CONFIGS, DeblurNet
from pydeblur.psf_grid import PsfGrid, cell_windows, deblur_grid, read_psf_grid, write_psf_grid
from pydeblur.restore import Deblurrer

BORDER = 16  # the image border, where any two canvas sizes differ (tests/test_restore.py)
BOX = np.ones((3, 3))
LINE = np.ones((1, 3))


def tiny_net(data_consistency=0.0, snr_db=(9.0, 13.0, 17.0, 21.0)) -> DeblurNet:
    """A tiny DeblurNet with random weights everywhere, its Wiener bank up to 21 dB (as
    tests/test_restore.py's: the strongly regularised filters are local, so tiles agree)."""
    torch.manual_seed(0)
    config = dataclasses.replace(CONFIGS["tiny"], snr_db=snr_db, data_consistency=data_consistency)
    net = DeblurNet(config)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.normal_(0, 0.05)
    return net.eval()


@pytest.fixture(scope="module")
def example():
    """(sharp [1, 3, H, W], blurred [1, 3, H, W], psf [kh, kw]): the shipped photo, linearly blurred."""
    return make_example()


@pytest.fixture(scope="module")
def blurred(example):
    return example[1][0].permute(1, 2, 0).clamp(0, 1).numpy()


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


# --- the folder ---------------------------------------------------------------------------------


def test_a_grid_folder_is_read_row_by_row_in_any_kernel_format(tmp_path):
    kernels = [
        [motion(5, 0), motion(5, 45), motion(5, 90)],
        [np.ones((3, 3)), np.ones((5, 5)), np.ones((1, 1))],
    ]
    suffixes = [[".npy", ".png", ".txt"], [".csv", ".mat", ".npy"]]
    for r, row in enumerate(kernels):
        for c, kernel in enumerate(row):
            write_psf(tmp_path / f"r{r}_c{c}{suffixes[r][c]}", kernel)
    grid = read_psf_grid(tmp_path)
    assert grid.shape == (2, 3) and grid.kernel_shape == (7, 7)  # motion(5, 90) is 7x1
    assert grid.names[1][1] == str(tmp_path / "r1_c1.mat") and grid.source == str(tmp_path)
    for r, row in enumerate(kernels):
        for c, kernel in enumerate(row):
            expected = read_psf(tmp_path / f"r{r}_c{c}{suffixes[r][c]}")
            assert np.array_equal(grid.kernels[r][c], expected)
            assert np.allclose(grid.kernels[r][c], kernel / kernel.sum(), atol=2e-5)


def test_pictures_hidden_files_other_suffixes_and_subfolders_are_ignored(tmp_path, capsys):
    # `pydeblur psf` writes r0_c0.png beside r0_c0.npy, and r0_c1-picture.png beside r0_c1.png
    assert main(["psf", "motion:7,0", "-o", str(tmp_path / "r0_c0.npy")]) == 0
    assert main(["psf", "motion:7,90", "-o", str(tmp_path / "r0_c1.png")]) == 0
    assert {"r0_c0.png", "r0_c1-picture.png"} <= {p.name for p in tmp_path.iterdir()}
    (tmp_path / "README.md").write_text("kernels measured on 2026-12-01\n")
    (tmp_path / ".r5_c5.npy").write_bytes(b"hidden")
    (tmp_path / "old").mkdir()
    np.save(tmp_path / "old" / "kernel.npy", np.ones((3, 3)))
    grid = read_psf_grid(tmp_path)
    assert grid.shape == (1, 2)
    assert np.array_equal(grid.kernels[0][0], read_psf(tmp_path / "r0_c0.npy"))
    assert grid.kernels[0][1].shape == motion(7, 90).shape


def _refusal_folders(root):
    def make(name, files):
        folder = root / name
        folder.mkdir()
        for file_name in files:
            if file_name.endswith(".md"):
                (folder / file_name).write_text("notes\n")
            else:
                write_psf(folder / file_name, BOX)
        return folder

    negative = make("negative", ["r0_c0.npy"])
    np.save(negative / "r0_c1.npy", -np.ones((3, 3)))
    return {
        "empty": (make("empty", []), "no kernel files named r{ROW}_c{COL}"),
        "only notes": (make("notes", ["README.md"]), "no kernel files named"),
        "odd name": (
            make("odd", ["r0_c0.npy", "kernel.npy"]),
            "kernel.npy not named as a grid cell",
        ),
        "mixed naming": (make("mixed", ["r0_c0.npy", "0_1.npy"]), "0_1.npy not named as a grid"),
        "two files for a cell": (
            make("twice", ["r0_c0.npy", "r0_c0.txt"]),
            "cell r0_c0 has 2 kernel files (r0_c0.npy, r0_c0.txt); keep one",
        ),
        "missing cell": (
            make("missing", ["r0_c0.npy", "r0_c1.npy", "r1_c1.npy"]),
            "the 2x2 kernel grid lacks r1_c0",
        ),
        "counted from 1": (make("from1", ["r1_c1.npy"]), "lacks r0_c0, r0_c1, r1_c0"),
        "a bad kernel": (negative, "r0_c1.npy has negative values"),
        "no such folder": (root / "nope", "no such kernel grid folder"),
        "a file": (make("a file", ["r0_c0.npy"]) / "r0_c0.npy", "is a folder of kernel files"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "only notes",
        "odd name",
        "mixed naming",
        "two files for a cell",
        "missing cell",
        "counted from 1",
        "a bad kernel",
        "no such folder",
        "a file",
    ],
)
def test_a_bad_folder_is_refused_on_one_line_naming_it(tmp_path, case):
    folder, message = _refusal_folders(tmp_path)[case]
    with pytest.raises((ValueError, OSError)) as error:
        read_psf_grid(folder)
    text = _one_line(error)
    assert message in text and str(folder) in text


def test_rows_of_kernels_must_be_rectangular_and_each_a_kernel():
    with pytest.raises(ValueError, match="different numbers of kernels"):
        PsfGrid.from_kernels([[BOX, BOX], [BOX]])
    with pytest.raises(ValueError, match="at least one row"):
        PsfGrid.from_kernels([])
    with pytest.raises(ValueError, match="cell r0_c1 is all zeros"):
        PsfGrid.from_kernels([[BOX, np.zeros((3, 3))]])


def test_a_kernel_larger_than_its_cell_and_cells_under_the_overlap_are_refused(tmp_path):
    deblurrer = Deblurrer(tiny_net(), "cpu", overlap=16)
    image = np.full((40, 60, 3), 0.5, np.float32)
    write_psf_grid(tmp_path, [[BOX, np.ones((9, 35))]])
    with pytest.raises(ValueError) as error:
        deblur_grid(image, tmp_path, deblurrer)
    assert _one_line(error) == (
        f"{tmp_path / 'r0_c1.npy'}: the 9x35 kernel is larger than its cell (40x30 pixels of a 1x2 "
        "grid over the 40x60 image); use fewer cells"
    )
    wide = Deblurrer(tiny_net(), "cpu", overlap=32)
    with pytest.raises(ValueError) as error:
        deblur_grid(image, [[BOX, BOX]], wide)
    assert _one_line(error).startswith("psf grid: cells of 40x30 pixels (a 1x2 grid over the 40x60")
    assert "narrower than the 32-pixel overlap" in str(error.value)
    # a cell as wide as the overlap will do; along an axis of one cell, the overlap does not apply
    enough = Deblurrer(tiny_net(), "cpu", overlap=30)
    assert deblur_grid(image, [[BOX, BOX]], enough).shape == image.shape


def test_cell_windows_cover_every_pixel_once_and_fade_at_the_cell_edges():
    for length, count, margin in ((100, 1, 10), (101, 3, 12), (1000, 4, 164), (64, 2, 0)):
        total = torch.zeros(length)
        windows = cell_windows(length, count, margin)
        for start, stop, weight in windows:
            assert weight.shape == (stop - start,) and (weight >= 0).all()
            total[start:stop] += weight
        assert torch.allclose(total, torch.ones(length))
    # the outer cells' windows stop at the image; inner ones reach `margin` past both edges
    assert [(a, b) for a, b, _ in cell_windows(99, 3, 10)] == [(0, 43), (23, 76), (56, 99)]


# --- against deblur -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "refining, shape", [(False, (2, 2)), (True, (1, 2))], ids=["network, 2x2", "refining, 1x2"]
)
def test_a_uniform_grid_agrees_with_deblur_away_from_the_image_border(
    example, blurred, refining, shape
):
    """Each cell is a tile with its own canvas, so a grid of one kernel everywhere differs from the
    whole image only as tiles do: tests/test_restore.py's tolerance of 2e-3 for this bank (measured:
    1.2e-3 at most, 4e-5 on average, with or without the data-consistency step)."""
    deblurrer = Deblurrer(tiny_net(1e4 if refining else 0.0), "cpu", overlap=96)
    psf = example[2].numpy()
    whole = deblurrer(blurred, psf)
    grid = deblur_grid(blurred, [[psf] * shape[1]] * shape[0], deblurrer)
    inner = (slice(BORDER, -BORDER), slice(BORDER, -BORDER))
    assert grid.shape == whole.shape and grid.dtype == whole.dtype
    assert np.abs(grid - whole)[inner].max() < 2e-3


def test_a_one_cell_grid_is_deblur_exactly(example, blurred):
    deblurrer = Deblurrer(tiny_net(1e4), "cpu")
    image = np.round(blurred * 255).astype(np.uint8)
    options = {"strength": 2.0, "gamma": "srgb", "clip_level": 0.9}
    expected = deblurrer(image, example[2], **options)  # noise estimated: once, on the whole image
    assert np.array_equal(deblur_grid(image, [[example[2]]], deblurrer, **options), expected)


def test_kinds_dtypes_alpha_and_batches_come_back_as_deblur_gives_them(blurred):
    deblurrer = Deblurrer(tiny_net(), "cpu", overlap=64)
    grid = [[BOX, LINE]]
    rgba = np.dstack([np.round(blurred * 65535), np.full(blurred.shape[:2], 7)]).astype(np.uint16)
    out = deblur_grid(rgba, grid, deblurrer)
    assert out.shape == rgba.shape and out.dtype == np.uint16 and (out[..., 3] == 7).all()
    grey = torch.from_numpy(blurred.mean(axis=2))
    batch = torch.stack([grey, grey.flip(1)])[:, None].double()  # [2, 1, H, W] float64
    out = deblur_grid(batch, grid, deblurrer)
    assert out.shape == batch.shape and out.dtype == torch.float64
    second = deblur_grid(batch[1], grid, deblurrer)  # [1, H, W]
    assert second.shape == batch[1].shape and torch.equal(out[1], second)


def test_a_1x2_grid_beats_one_kernel_on_a_blur_that_changes_across_the_image(example):
    """Left half blurred by a horizontal line, right half by a vertical one, a 16-px transition
    between them, noise 0.005; the network is exactly one Wiener filter at 21 dB (the "mix" head
    over a one-filter bank), so the kernel is what matters. Measured: blurred 25.99 dB, one kernel
    (the average of the two) 25.56, the left kernel 19.02, the right one 24.69, the grid 28.50."""
    sharp = example[0][0].double().numpy()
    left, right = np.zeros((13, 13)), np.zeros((13, 13))
    left[6, :] = motion(11, 0)[0]
    right[:, 6] = motion(11, 90)[:, 0]
    halves = [blur_valid(sharp[None], kernel)[0] for kernel in (left, right)]
    height, width = halves[0].shape[-2:]
    step = np.clip((np.arange(width) - (width / 2 - 8)) / 16, 0, 1)
    varying = (1 - step) * halves[0] + step * halves[1]
    noise = np.random.default_rng(0).normal(0, 0.005, varying.shape)
    image = np.clip(varying + noise, 0, 1).transpose(1, 2, 0).astype(np.float32)
    top, first = valid_offset(13, 13)
    reference = sharp[:, top : top + height, first : first + width].transpose(1, 2, 0)

    def psnr(estimate):
        error = (estimate - reference)[BORDER:-BORDER, BORDER:-BORDER]
        return 10 * np.log10(1 / np.mean(error**2))

    torch.manual_seed(0)
    net = DeblurNet(dataclasses.replace(CONFIGS["tiny"], snr_db=(21.0,))).eval()
    assert net.config.head == "mix" and not net.conv_out.weight.any()  # exactly the Wiener filter
    deblurrer = Deblurrer(net, "cpu")
    grid = psnr(deblur_grid(image, [[left, right]], deblurrer))
    average = psnr(deblurrer(image, (left + right) / 2))
    assert grid > psnr(image) + 1.5 and grid > average + 2
    assert grid > psnr(deblurrer(image, left)) + 2 and grid > psnr(deblurrer(image, right)) + 2


# --- the command --------------------------------------------------------------------------------


def test_the_command_deblurs_with_a_grid_as_the_api_does(files, tmp_path, capsys):
    _, photos, _, weights = files
    folder = tmp_path / "grid"
    write_psf_grid(folder, [[BOX, LINE]])
    out = tmp_path / "sharp.png"
    args = ["deblur", str(photos / "a.png"), "--psf-grid", str(folder), "-o", str(out)]
    assert main([*args, "--model", str(weights), "--device", "cpu"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    image = read_image(photos / "a.png")[0]
    api = deblur_grid(image, folder, Deblurrer(weights, "cpu"), gamma="srgb", clip_level=0.98)
    result = read_image(out)[0]
    assert result.shape == image.shape and np.abs(result - api).max() <= 0.5 / 255 + 1e-6
    single = read_image(_deblur_one(photos / "a.png", BOX, weights, tmp_path))[0]
    assert np.abs(result - single)[:, 80:].max() > 1e-3  # the right cell used its own kernel


def _deblur_one(photo, kernel, weights, tmp_path):
    np.save(tmp_path / "box.npy", kernel)
    out = tmp_path / "single.png"
    args = ["deblur", str(photo), "--psf", str(tmp_path / "box.npy"), "-o", str(out)]
    assert main([*args, "--model", str(weights), "--device", "cpu"]) == 0
    return out


def test_the_grid_works_with_every_other_option(files, tmp_path, capsys):
    _, photos, _, weights = files
    folder = tmp_path / "grid"
    write_psf_grid(folder, [[BOX, LINE]], ".txt")
    floats = tmp_path / "in" / "float.tif"
    floats.parent.mkdir()
    write_image(floats, read_image(photos / "a.png")[0], np.float32)
    options = ["--noise", "0.01", "--strength", "2", "--gamma", "linear", "--clip-level", "none"]
    options += ["--bit-depth", "16", "--verbose", "--tile", "512", "--max-pixels", "0"]
    inputs = [str(photos / name) for name in ("a.png", "b.tif", "d.png")] + [str(floats.parent)]
    args = ["deblur", *inputs, "--psf-grid", str(folder), "-o"]
    out = tmp_path / "out"
    assert main([*args, str(out), "--model", str(weights), "--device", "cpu", *options]) == 0
    captured = capsys.readouterr()
    assert "deblurred 4 of 4 images" in captured.out
    assert captured.err.count("noise sigma 0.0100 (given") == 4
    for name in ("a.png", "b.tif", "d.png", "float.tif"):
        result = read_image(out / name)[0]
        assert read_image(out / name)[1] == np.uint16, name
        assert result.shape[:2] == (96, 128), name


def test_a_grid_too_fine_for_the_photo_is_one_line_naming_photo_and_folder(files, tmp_path, capsys):
    _, photos, _, weights = files
    folder = tmp_path / "grid"
    write_psf_grid(folder, [[BOX, BOX], [BOX, BOX]])  # rows of 48 px, under the tiny net's 56
    args = [
        "deblur",
        str(photos / "a.png"),
        "--psf-grid",
        str(folder),
        "-o",
        str(tmp_path / "x.png"),
    ]
    assert main([*args, "--model", str(weights), "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(photos / "a.png") in error and str(folder) in error
    assert "narrower than the 56-pixel overlap" in error and not (tmp_path / "x.png").exists()


def test_a_bad_grid_folder_is_refused_before_any_work(files, tmp_path, capsys):
    _, photos, _, weights = files
    folder = tmp_path / "grid"
    write_psf_grid(folder, [[BOX, BOX]])
    (folder / "r0_c1.npy").unlink()
    (folder / "r1_c1.npy").write_bytes((folder / "r0_c0.npy").read_bytes())
    out = tmp_path / "out"
    args = ["deblur", str(photos), "--psf-grid", str(folder), "-o", str(out), "--model"]
    assert main([*args, str(weights), "--device", "cpu"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("pydeblur deblur: error: ") and "\n" not in error
    assert f"{folder}: the 2x2 kernel grid lacks r0_c1, r1_c0" in error and not out.exists()


@pytest.mark.parametrize(
    "kernels, message",
    [
        (["--psf", "motion:5,0", "--psf-grid", "grid"], "argument --psf-grid: not allowed with"),
        ([], "one of the arguments --psf --psf-grid is required"),
    ],
    ids=["both", "neither"],
)
def test_exactly_one_of_psf_and_psf_grid(files, tmp_path, capsys, kernels, message):
    _, photos, _, _ = files
    with pytest.raises(SystemExit) as exit_info:
        main(["deblur", str(photos / "a.png"), *kernels, "-o", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("pydeblur deblur: error: ") and message in error
