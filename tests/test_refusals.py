"""What `pydeblur deblur` and the readers refuse, and how: never a user's file lost or half-written,
one line naming the file for every failure (issue #20's probe, one regression test per finding)."""

import os
import shutil
import stat
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import pytest
import torch

import pydeblur.restore
from pydeblur.atomic import PARTIAL_SUFFIX
from pydeblur.cli import main
from pydeblur.io import read_image, write_image
from pydeblur.kernel_io import read_psf
from pydeblur.restore import deblur
from tests.helpers import deblur_args


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels, with a tiny (wrong) image stream."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


def _dead_pid() -> int:
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    return int(done.stdout)


# 1. an output that is its input


@pytest.mark.parametrize("link", ["same name", "symlink", "hard link"])
def test_an_output_that_is_its_input_is_refused_and_the_input_kept(files, tmp_path, capsys, link):
    _, photos, psf, weights = files
    photo = tmp_path / "p.png"
    shutil.copy(photos / "a.png", photo)
    output = photo
    if link == "symlink":
        output = tmp_path / "link.png"
        output.symlink_to(photo)
    elif link == "hard link":
        output = tmp_path / "hard.png"
        os.link(photo, output)
    before = photo.read_bytes()
    assert main(deblur_args([photo], psf, output, weights)) == 1
    (line,) = _error_lines(capsys)
    assert "is the input" in line and "--overwrite" in line
    assert photo.read_bytes() == before


def test_overwrite_replaces_the_input_and_keeps_its_mode(files, tmp_path):
    _, photos, psf, weights = files
    photo = tmp_path / "p.png"
    shutil.copy(photos / "a.png", photo)
    photo.chmod(0o640)
    before = photo.read_bytes()
    assert main(deblur_args([photo], psf, photo, weights, "--overwrite")) == 0
    assert photo.read_bytes() != before and read_image(photo)[0].shape == (96, 128, 3)
    assert stat.S_IMODE(photo.stat().st_mode) == 0o640


def test_a_folder_into_itself_is_refused(files, tmp_path, capsys):
    _, photos, psf, weights = files
    folder = tmp_path / "in"
    shutil.copytree(photos, folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(deblur_args([folder], psf, folder, weights)) == 1
    assert "is the input" in _error_lines(capsys)[0]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# 2. and 11. oversized images: refused from the header, the rest of the folder processed


def test_an_oversized_image_fails_alone_and_the_summary_is_printed(files, tmp_path, capsys):
    _, photos, psf, weights = files
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "a.png", folder / "a.png")
    (folder / "huge.png").write_bytes(_png_header(100_000, 100_000))
    shutil.copy(photos / "a.png", folder / "z.png")
    out = tmp_path / "out"
    assert main(deblur_args([folder], psf, out, weights)) == 1
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "huge.png" in errors[0] and "over the limit" in errors[0]
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "z.png"]
    assert "deblurred 2 of 3 images" in captured.out and "1 failed" in captured.out


def test_without_our_limit_opencv_refusal_names_the_file(tmp_path):
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(ValueError, match="huge.png") as caught:
        read_image(huge, max_pixels=None)
    assert "\n" not in str(caught.value)


def test_max_pixels_is_checked_from_the_header_before_decoding(
    files, tmp_path, capsys, monkeypatch
):
    _, photos, psf, weights = files

    def no_decoding(*args):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    out = tmp_path / "o.png"
    assert main(deblur_args([photos / "a.png"], psf, out, weights, "--max-pixels", "10000")) == 1
    (line,) = _error_lines(capsys)
    assert "a.png" in line and "128x96" in line  # width x height
    assert "--max-pixels" in line and not out.exists()


def test_a_negative_max_pixels_is_refused(files, tmp_path, capsys):
    _, photos, psf, weights = files
    assert (
        main(
            deblur_args([photos / "a.png"], psf, tmp_path / "o.png", weights, "--max-pixels", "-1")
        )
        == 1
    )
    assert "--max-pixels" in _error_lines(capsys)[0]


# 3. modes


def test_written_files_honour_the_umask_and_a_replaced_file_keeps_its_mode(tmp_path):
    image = np.full((8, 8, 3), 0.5, np.float32)
    old = os.umask(0o022)
    try:
        write_image(tmp_path / "new.png", image)
        assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o644
        os.umask(0o077)
        write_image(tmp_path / "private.png", image)
        assert stat.S_IMODE((tmp_path / "private.png").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    (tmp_path / "new.png").chmod(0o664)
    write_image(tmp_path / "new.png", image * 0.5)
    assert stat.S_IMODE((tmp_path / "new.png").stat().st_mode) == 0o664


# 4. truncated and corrupt files


def _jpeg(tmp_path, name="photo.jpg"):
    rng = np.random.default_rng(0)
    path = tmp_path / name
    cv2.imwrite(str(path), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".tif"])
def test_a_truncated_image_is_refused(tmp_path, suffix):
    rng = np.random.default_rng(0)
    whole = tmp_path / f"whole{suffix}"
    cv2.imwrite(str(whole), rng.integers(0, 255, (64, 64, 3), dtype=np.uint8))
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    read_image(whole)
    with pytest.raises(ValueError, match="truncated|corrupt|damaged") as caught:
        read_image(cut)
    assert str(cut) in str(caught.value)


def test_a_truncated_jpeg_counts_as_a_failure_in_a_folder(files, tmp_path, capsys):
    _, photos, psf, weights = files
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "c.jpg", folder / "c.jpg")
    whole = _jpeg(tmp_path)
    (folder / "half.jpg").write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    out = tmp_path / "out"
    assert main(deblur_args([folder], psf, out, weights)) == 1
    captured = capsys.readouterr()
    assert "half.jpg" in captured.err and "truncated" in captured.err
    assert [p.name for p in out.iterdir()] == ["c.jpg"]


# 7. temporary files


def test_hidden_files_are_not_inputs_and_dead_writers_leftovers_are_removed(
    files, tmp_path, capsys
):
    _, photos, psf, weights = files
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(photos / "a.png", folder / "a.png")
    (folder / ".tmp-x1y2.png").write_bytes(b"")  # what a killed older version left
    out = tmp_path / "out"
    out.mkdir()
    dead = out / f".a.png.{_dead_pid()}{PARTIAL_SUFFIX}"
    dead.write_bytes(b"")
    live = out / f".b.png.{os.getpid()}{PARTIAL_SUFFIX}"  # a running writer's file stays
    live.write_bytes(b"")
    assert main(deblur_args([folder], psf, out, weights)) == 0
    assert "wrote" in capsys.readouterr().out  # one input: .tmp-x1y2.png was not taken for one
    assert sorted(p.name for p in out.iterdir()) == sorted(["a.png", live.name])


# 8. output names


@pytest.mark.parametrize("name", ["x.bmp", "x.xyz", "sharp"])
def test_an_output_name_that_is_no_image_type_is_refused(files, tmp_path, capsys, name):
    _, photos, psf, weights = files
    assert main(deblur_args([photos / "a.png"], psf, tmp_path / name, weights)) == 1
    (line,) = _error_lines(capsys)
    assert ".png, .jpg, .jpeg, .tif, .tiff" in line
    assert list(tmp_path.iterdir()) == []


def test_a_trailing_slash_means_a_folder(files, tmp_path):
    _, photos, psf, weights = files
    assert main(deblur_args([photos / "a.png"], psf, f"{tmp_path / 'out'}/", weights)) == 0
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]


def test_several_inputs_to_one_file_name_are_refused(files, tmp_path, capsys):
    _, photos, psf, weights = files
    inputs = [photos / "a.png", photos / "d.png"]
    assert main(deblur_args(inputs, psf, tmp_path / "x.png", weights)) == 1
    assert "name a folder" in _error_lines(capsys)[0]


# 9. messages


@pytest.mark.parametrize(
    "content, message, misleading",
    [
        (np.zeros((5, 5)), "all zeros", "negative"),
        (b"0.1 0.2\n0.3 0.4\n", "not a NumPy .npy array file", "unsafely"),
        (b"", "not a NumPy .npy array file", "No data left"),
        (
            b"\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (99, 99), }",
            "not a NumPy",
            "cannot reshape",
        ),
    ],
)
def test_kernel_file_messages_say_what_is_wrong(tmp_path, content, message, misleading):
    path = tmp_path / "k.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    with pytest.raises(ValueError) as caught:
        read_psf(path)
    text = str(caught.value)
    assert message in text and misleading not in text and str(path) in text and "\n" not in text


def test_a_binary_kernel_table_is_not_text(tmp_path):
    path = tmp_path / "k.txt"
    path.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(ValueError, match=r"k.txt: not a table of numbers \(not text\)"):
        read_psf(path)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_memory": -1}, "max_memory must be an integer >= 1"),
        ({"tile": "64"}, "tile must be an integer >= 1"),
        ({"overlap": 2.5}, "overlap must be an integer >= 0"),
    ],
)
def test_deblur_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        deblur(np.zeros((32, 32), np.float32), np.ones((3, 3)), **kwargs)


def test_an_empty_batch_is_refused():
    with pytest.raises(ValueError, match="empty"):
        deblur(torch.zeros(0, 3, 32, 32), np.ones((3, 3)))


def test_a_big_endian_array_is_deblurred_and_keeps_its_dtype(files):
    *_, weights = files
    image = np.random.default_rng(0).random((40, 40)).astype(">f4")
    result = deblur(image, np.ones((3, 3)), model=weights, device="cpu")
    native = deblur(image.astype("<f4"), np.ones((3, 3)), model=weights, device="cpu")
    assert result.dtype == np.dtype(">f4") and np.array_equal(result.astype("<f4"), native)


def test_an_unwritable_output_folder_is_reported_before_any_work(
    files, tmp_path, capsys, monkeypatch
):
    _, photos, psf, weights = files

    def no_work(*args, **kwargs):
        raise AssertionError("deblurred before checking the output folder")

    monkeypatch.setattr(pydeblur.restore, "deblur", no_work)
    blocker = tmp_path / "file"
    blocker.write_text("a file where a folder should be")
    assert main(deblur_args([photos], psf, blocker / "out", weights)) == 1
    (line,) = _error_lines(capsys)
    assert f"cannot write into the folder {blocker / 'out'}" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_a_read_only_output_folder_is_reported_before_any_work(
    files, tmp_path, capsys, monkeypatch
):
    _, photos, psf, weights = files
    monkeypatch.setattr(pydeblur.restore, "deblur", lambda *a, **k: pytest.fail("did work"))
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    assert main(deblur_args([photos], psf, out, weights)) == 1
    assert "cannot write into the folder" in _error_lines(capsys)[0]


# 10. what JPEG cannot hold


def test_alpha_or_16_bit_into_a_jpeg_is_refused_before_any_work(
    files, tmp_path, capsys, monkeypatch
):
    _, photos, psf, weights = files
    monkeypatch.setattr(pydeblur.restore, "deblur", lambda *a, **k: pytest.fail("did work"))
    assert main(deblur_args([photos / "d.png"], psf, tmp_path / "x.jpg", weights)) == 1
    assert "alpha" in _error_lines(capsys)[0]
    assert main(deblur_args([photos / "b.tif"], psf, tmp_path / "x.jpg", weights)) == 1
    assert "16-bit" in _error_lines(capsys)[0]
    assert list(tmp_path.iterdir()) == []
