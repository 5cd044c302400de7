"""Bit depth and formats (#18, item 6): 16-bit PNG and TIFF and 32-bit float TIFF in and out, the
outputs' depth (`--bit-depth`), EXIF orientation, grey+alpha."""

import struct

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

import pydeblur.restore
from pydeblur.cli import main
from pydeblur.image_batch import from_batch, to_batch
from pydeblur.io import check_image_path, read_image, write_image
from pydeblur.restore import Deblurrer
from tests.helpers import deblur_args

ORIENTATIONS = range(1, 9)


def _error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if "error:" in line]


def _tiff(array: np.ndarray, orientation: int | None = None) -> bytes:
    """An uncompressed little-endian TIFF, directory first then one strip, of an HxW or HxWxC array
    (integer or float samples; RGB for C >= 3; the fourth channel, or a grey's second, is alpha):
    files that neither OpenCV nor Pillow writes (float RGB with an orientation tag, 16-bit
    grey+alpha)."""
    height, width = array.shape[:2]
    samples = 1 if array.ndim == 2 else array.shape[2]
    bits = array.dtype.itemsize * 8
    sample_format = 3 if array.dtype.kind == "f" else 1
    data = np.ascontiguousarray(array.astype(array.dtype.newbyteorder("<"))).tobytes()
    tags = [
        (256, 4, 1, width),
        (257, 4, 1, height),
        (258, 3, samples, bits),
        (259, 3, 1, 1),
        (262, 3, 1, 2 if samples >= 3 else 1),
        (273, 4, 1, None),  # the strip's offset, filled in below
        (277, 3, 1, samples),
        (278, 4, 1, height),
        (279, 4, 1, len(data)),
        (284, 3, 1, 1),
        (339, 3, samples, sample_format),
    ]
    if orientation is not None:
        tags.append((274, 3, 1, orientation))
    if samples in (2, 4):
        tags.append((338, 3, 1, 2))  # unassociated alpha
    tags.sort()
    directory_size = 2 + 12 * len(tags) + 4
    arrays = b""  # tag values of several SHORTs that do not fit in an entry
    array_at = 8 + directory_size
    entries = b""
    for tag, kind, count, value in tags:
        if tag in (258, 339) and count > 2:
            entries += struct.pack("<HHII", tag, kind, count, array_at + len(arrays))
            arrays += struct.pack(f"<{count}H", *[value] * count)
            continue
        if tag == 273:
            value = 0
        packed = (
            struct.pack(f"<{count}H", *[value] * count) if kind == 3 else struct.pack("<I", value)
        )
        entries += struct.pack("<HHI", tag, kind, count) + packed.ljust(4, b"\0")
    strip_at = array_at + len(arrays)
    entries = entries.replace(
        struct.pack("<HHII", 273, 4, 1, 0), struct.pack("<HHII", 273, 4, 1, strip_at)
    )
    header = b"II*\x00" + struct.pack("<I", 8)
    return header + struct.pack("<H", len(tags)) + entries + b"\0\0\0\0" + arrays + data


def _png_ihdr(path) -> tuple[int, int]:
    """(bit depth, colour type) of a PNG file."""
    head = path.read_bytes()[:26]
    return head[24], head[25]


@pytest.fixture
def ramp16():
    """A smooth 16-bit RGB image of far more than 256 levels, 96x128."""
    y, x = np.mgrid[0:96, 0:128]
    rgb = np.stack([x * 500 + y * 10, y * 600 + 1000, (x + y) * 280], axis=2)
    return rgb.astype(np.uint16)


# 16 bits, end to end


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_every_16_bit_value_survives_reading_and_writing(tmp_path, suffix, channels):
    grid = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    samples = grid if channels == 1 else np.dstack([np.roll(grid, k) for k in range(channels)])
    source = tmp_path / f"in{suffix}"
    cv2.imwrite(str(source), samples)  # OpenCV's channel order: what matters is each sample's value
    image, sample_type = read_image(source)
    assert sample_type == np.uint16 and image.dtype == np.float32
    expected = samples if channels == 1 else samples[..., [2, 1, 0, 3][:channels]]
    np.testing.assert_array_equal(np.round(image * 65535).astype(np.uint16), expected)
    target = tmp_path / f"out{suffix}"
    write_image(target, image, sample_type)
    np.testing.assert_array_equal(cv2.imread(str(target), cv2.IMREAD_UNCHANGED), samples)


def test_257_times_k_reads_as_the_8_bit_k(tmp_path):
    k = np.arange(256, dtype=np.uint8).reshape(16, 16)
    cv2.imwrite(str(tmp_path / "k8.png"), k)
    cv2.imwrite(str(tmp_path / "k16.png"), k.astype(np.uint16) * 257)
    np.testing.assert_array_equal(
        read_image(tmp_path / "k8.png")[0], read_image(tmp_path / "k16.png")[0]
    )


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_a_16_bit_photo_is_deblurred_into_16_bits(files, tmp_path, ramp16, suffix):
    _, _, psf, weights = files
    source = tmp_path / f"ramp{suffix}"
    cv2.imwrite(str(source), ramp16)
    out = tmp_path / f"sharp{suffix}"
    assert main(deblur_args([source], psf, out, weights)) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.uint16 and result.shape == ramp16.shape
    levels = np.unique(result[..., 2])
    assert len(levels) > 256 and (levels % 257 != 0).any()  # not 8-bit data scaled up


# 32-bit float TIFF


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_a_float_tiff_reads_as_stored_and_writes_exactly(tmp_path, channels):
    rng = np.random.default_rng(channels)
    values = (rng.random((20, 30, channels)) * 2.5 - 0.5).astype(np.float32)
    values = values[..., 0] if channels == 1 else values
    source = tmp_path / "linear.tif"
    source.write_bytes(_tiff(values))
    image, sample_type = read_image(source)
    assert sample_type == np.float32
    np.testing.assert_array_equal(image, values)  # linear data: outside [0, 1] kept, not clipped
    assert image.min() < 0 and image.max() > 1
    target = tmp_path / "out.tif"
    write_image(target, image, np.float32)
    stored = cv2.imread(str(target), cv2.IMREAD_UNCHANGED)
    assert stored.dtype == np.float32 and stored.shape == values.shape
    np.testing.assert_array_equal(read_image(target)[0], values)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_float_tiff_with_nan_or_infinity_is_refused(tmp_path, channels, bad):
    values = np.full((8, 8, channels), 0.5, np.float32)
    values[3, 4, 0] = bad
    path = tmp_path / "bad.tif"
    path.write_bytes(_tiff(values[..., 0] if channels == 1 else values))
    with pytest.raises(ValueError, match="NaN or infinite") as caught:
        read_image(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="NaN or infinite"):
        write_image(tmp_path / "out.tif", values, np.float32)
    assert not (tmp_path / "out.tif").exists()


def test_a_float_tiff_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "big.tif"
    path.write_bytes(_tiff(np.zeros((40, 50, 3), np.float32)))

    def no_decoding(*args):
        raise AssertionError("decoded an image over the pixel limit")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    monkeypatch.setattr(cv2, "imdecode", no_decoding)
    with pytest.raises(ValueError, match="50x40 is .* over the limit") as caught:
        read_image(path, max_pixels=1000)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_truncated_float_tiff_is_refused(tmp_path, channels):
    values = np.random.default_rng(0).random((64, 64, channels)).astype(np.float32)
    whole = _tiff(values[..., 0] if channels == 1 else values)
    path = tmp_path / "cut.tif"
    path.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ValueError, match="truncated|corrupt|damaged") as caught:
        read_image(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_other_tiff_sample_types_are_refused_with_their_description(tmp_path):
    path = tmp_path / "double.tif"
    path.write_bytes(_tiff(np.zeros((8, 8, 3), np.float64)))
    with pytest.raises(ValueError, match="64-bit float") as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_a_float_tiff_is_deblurred_into_a_float_tiff(files, tmp_path, ramp16):
    _, _, psf, weights = files
    source = tmp_path / "linear.tif"
    source.write_bytes(_tiff(ramp16.astype(np.float32) / 65535))
    out = tmp_path / "sharp.tif"
    assert main(deblur_args([source], psf, out, weights)) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == np.float32 and result.shape == ramp16.shape


def test_a_float_tiff_far_outside_0_1_is_refused_naming_the_file(files, tmp_path, capsys):
    _, _, psf, weights = files
    source = tmp_path / "hdr.tif"
    source.write_bytes(_tiff(np.full((64, 64, 3), 3.0, np.float32)))
    assert main(deblur_args([source], psf, tmp_path / "out.tif", weights)) == 1
    (line,) = _error_lines(capsys)
    assert str(source) in line and "[0, 1]" in line and "scale it" in line
    assert not (tmp_path / "out.tif").exists()


# --bit-depth


@pytest.mark.parametrize(
    ("name", "bit_depth", "output", "dtype"),
    [
        ("a.png", "16", "out.png", np.uint16),
        ("b.tif", "8", "out.png", np.uint8),
        ("b.tif", "8", "out.jpg", np.uint8),
        ("a.png", "32", "out.tif", np.float32),
        ("b.tif", "16", "out.tif", np.uint16),
    ],
)
def test_bit_depth_sets_the_outputs_samples(files, tmp_path, name, bit_depth, output, dtype):
    _, photos, psf, weights = files
    out = tmp_path / output
    assert main(deblur_args([photos / name], psf, out, weights, "--bit-depth", bit_depth)) == 0
    result = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert result.dtype == dtype and result.shape == (96, 128, 3)


@pytest.mark.parametrize(
    ("bit_depth", "output", "message"),
    [
        ("16", "x.jpg", "JPEG cannot hold 16-bit"),
        ("32", "x.jpeg", "JPEG cannot hold 32-bit float"),
        ("32", "x.png", "PNG cannot hold 32-bit float"),
        ("32", "folder/", "PNG cannot hold 32-bit float"),
    ],
)
def test_a_bit_depth_the_output_cannot_hold_is_refused_before_any_work(
    files, tmp_path, capsys, monkeypatch, bit_depth, output, message
):
    _, photos, psf, weights = files
    monkeypatch.setattr(pydeblur.restore, "Deblurrer", lambda *a, **k: pytest.fail("did work"))
    out = str(tmp_path / output) + ("/" if output.endswith("/") else "")
    args = deblur_args([photos / "a.png"], psf, out, weights, "--bit-depth", bit_depth)
    assert main(args) == 1
    (line,) = _error_lines(capsys)
    target = tmp_path / "folder" / "a.png" if output.endswith("/") else tmp_path / output
    assert message in line and str(target) in line
    assert list(tmp_path.iterdir()) == []


def test_a_bit_depth_outside_8_16_32_is_refused(files, tmp_path, capsys):
    _, photos, psf, weights = files
    with pytest.raises(SystemExit):
        main(deblur_args([photos / "a.png"], psf, tmp_path / "x.png", weights, "--bit-depth", "12"))
    assert "--bit-depth" in capsys.readouterr().err


# EXIF orientation


def _oriented(path, pixels: np.ndarray, orientation: int, **options) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes(), **options)


def _as_shown(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """What Pillow's ImageOps.exif_transpose makes of `pixels` (HxW or HxWxC, uint8 or float32)
    carrying `orientation`: channel by channel, so float samples go through Pillow too."""
    planes = pixels[..., None] if pixels.ndim == 2 else pixels
    shown = []
    for channel in range(planes.shape[2]):
        image = Image.fromarray(np.ascontiguousarray(planes[..., channel]))
        image.getexif()[0x0112] = orientation
        shown.append(np.asarray(ImageOps.exif_transpose(image)))
    return np.stack(shown, axis=2).reshape(shown[0].shape + pixels.shape[2:])


@pytest.fixture(scope="module")
def asymmetric():
    """An 8-bit RGB picture of 8x8 blocks (48x80) that no flip or rotation leaves alike."""
    blocks = np.random.default_rng(3).integers(0, 256, (6, 10, 3), dtype=np.uint8)
    return np.kron(blocks, np.ones((8, 8, 1), np.uint8))


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_a_jpeg_is_read_upright_for_each_orientation(tmp_path, asymmetric, orientation):
    stored, oriented = tmp_path / "stored.jpg", tmp_path / "oriented.jpg"
    Image.fromarray(asymmetric).save(stored, quality=95)
    _oriented(oriented, asymmetric, orientation, quality=95)
    as_stored = np.round(read_image(stored)[0] * 255).astype(np.uint8)
    image = np.round(read_image(oriented)[0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(image, _as_shown(as_stored, orientation))  # same JPEG data
    pillow = np.asarray(ImageOps.exif_transpose(Image.open(oriented)))  # Pillow's own decoder
    assert image.shape == pillow.shape
    assert np.abs(image.astype(int) - pillow).max() <= 4


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_a_tiff_is_read_upright_for_each_orientation(tmp_path, asymmetric, orientation):
    path = tmp_path / "oriented.tif"
    _oriented(path, asymmetric, orientation)  # 8-bit RGB, written by Pillow
    image = np.round(read_image(path)[0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(image, _as_shown(asymmetric, orientation))
    linear = asymmetric.astype(np.float32) / 255 * 1.5  # a float RGB TIFF (read by our own checks)
    path.write_bytes(_tiff(linear, orientation=orientation))
    np.testing.assert_array_equal(read_image(path)[0], _as_shown(linear, orientation))


@pytest.mark.parametrize("orientation", [3, 6])
def test_a_png_with_an_exif_chunk_is_read_upright(tmp_path, asymmetric, orientation):
    path = tmp_path / "oriented.png"
    _oriented(path, asymmetric, orientation)
    image = np.round(read_image(path)[0] * 255).astype(np.uint8)
    np.testing.assert_array_equal(image, _as_shown(asymmetric, orientation))


@pytest.mark.parametrize("output", ["sharp.jpg", "sharp.tif", "sharp.png"])
def test_an_oriented_photo_is_written_upright_without_the_tag(files, tmp_path, asymmetric, output):
    _, _, psf, weights = files
    source = tmp_path / "portrait.jpg"
    _oriented(source, asymmetric, 6, quality=95)  # stored 80 wide, 48 high; shown 48 wide, 80 high
    out = tmp_path / output
    assert main(deblur_args([source], psf, out, weights)) == 0
    with Image.open(out) as written:
        assert written.size == (48, 80)
        assert 0x0112 not in written.getexif()
    assert read_image(out)[0].shape == (80, 48, 3)


def test_an_oriented_jpeg_is_checked_for_size_and_integrity_first(
    tmp_path, asymmetric, monkeypatch
):
    path = tmp_path / "oriented.jpg"
    _oriented(path, asymmetric, 6, quality=95)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    def no_decoding(*args):
        raise AssertionError("decoded before the checks")

    monkeypatch.setattr(cv2, "imread", no_decoding)
    with pytest.raises(ValueError, match="80x48 is .* over the limit"):
        read_image(path, max_pixels=1000)
    with pytest.raises(ValueError, match="truncated|corrupt") as caught:
        read_image(cut)
    assert str(cut) in str(caught.value)


# grey+alpha


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_grey_alpha_png_reads_and_writes_as_grey_alpha(tmp_path, dtype):
    top = np.iinfo(dtype).max
    rng = np.random.default_rng(0)
    samples = rng.integers(0, top + 1, (24, 36, 2), dtype=np.int64).astype(dtype)
    path = tmp_path / "la.png"
    write_image(path, samples / top, dtype)
    assert _png_ihdr(path) == (np.dtype(dtype).itemsize * 8, 4)  # grey+alpha of 8 or 16 bits
    image, sample_type = read_image(path)
    assert image.shape == (24, 36, 2) and sample_type == dtype
    np.testing.assert_array_equal(np.round(image * top).astype(dtype), samples)
    bgra = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)  # another decoder agrees
    np.testing.assert_array_equal(bgra[..., 0], samples[..., 0])
    np.testing.assert_array_equal(bgra[..., 3], samples[..., 1])


def test_a_grey_alpha_png_from_pillow_reads_as_grey_alpha(tmp_path):
    samples = np.random.default_rng(1).integers(0, 256, (10, 12, 2), dtype=np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(samples).save(path)
    image, _ = read_image(path)
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), samples)


def test_an_8_bit_grey_alpha_tiff_reads_and_writes_and_deeper_ones_are_refused(tmp_path):
    samples = np.random.default_rng(2).integers(0, 256, (10, 12, 2), dtype=np.uint8)
    path = tmp_path / "la.tif"
    Image.fromarray(samples).save(path)  # OpenCV misreads it: Pillow decodes it
    image, sample_type = read_image(path)
    assert sample_type == np.uint8
    np.testing.assert_array_equal(np.round(image * 255).astype(np.uint8), samples)
    write_image(tmp_path / "out.tif", image, np.uint8)
    with Image.open(tmp_path / "out.tif") as written:
        assert written.mode == "LA"
        np.testing.assert_array_equal(np.asarray(written), samples)
    with pytest.raises(ValueError, match="grey\\+alpha TIFF is written 8-bit only"):
        write_image(tmp_path / "deep.tif", image, np.uint16)
    deep = tmp_path / "la16.tif"
    deep.write_bytes(_tiff(samples.astype(np.uint16) * 257))
    with pytest.raises(
        ValueError, match="16-bit integer grey\\+alpha TIFF cannot be read"
    ) as caught:
        read_image(deep)
    assert str(deep) in str(caught.value) and "PNG" in str(caught.value)


def test_grey_alpha_is_deblurred_as_grey_with_the_alpha_untouched(files):
    _, photos, psf, weights = files
    grey = read_image(photos / "c.jpg")[0]
    alpha = np.random.default_rng(4).random(grey.shape).astype(np.float32)
    deblurrer = Deblurrer(str(weights), "cpu")
    kernel = np.load(psf)
    result = deblurrer(np.dstack([grey, alpha]), kernel)
    assert result.shape == grey.shape + (2,) and result.dtype == np.float32
    np.testing.assert_array_equal(result[..., 1], alpha)
    np.testing.assert_array_equal(result[..., 0], deblurrer(grey, kernel))


def test_a_16_bit_grey_alpha_png_comes_back_grey_alpha(files, tmp_path, capsys, ramp16):
    _, _, psf, weights = files
    samples = np.dstack([ramp16[..., 0], 65535 - ramp16[..., 1]])
    source = tmp_path / "la.png"
    write_image(source, samples / 65535, np.uint16)
    out = tmp_path / "sharp.png"
    assert main(deblur_args([source], psf, out, weights)) == 0
    assert _png_ihdr(out) == (16, 4)
    result, sample_type = read_image(out)
    assert result.shape == (96, 128, 2) and sample_type == np.uint16
    np.testing.assert_array_equal(np.round(result[..., 1] * 65535), samples[..., 1])
    refused = tmp_path / "sharp.jpg"
    assert main(deblur_args([source], psf, refused, weights, "--bit-depth", "8")) == 1
    assert "alpha" in _error_lines(capsys)[0] and not refused.exists()


@pytest.mark.parametrize(
    "image",
    [
        np.random.default_rng(5).integers(0, 65536, (6, 7, 2), dtype=np.int64).astype(np.uint16),
        np.random.default_rng(6).random((6, 7, 2)).astype(np.float32),
        torch.randint(0, 256, (2, 6, 7), dtype=torch.uint8),
        torch.rand(3, 2, 6, 7),
    ],
    ids=["numpy-uint16", "numpy-float", "torch-chw", "torch-bchw"],
)
def test_grey_alpha_batches_keep_the_alpha_apart_and_come_back_alike(image):
    colour, alpha, form = to_batch(image)
    batch = 3 if image.ndim == 4 else 1
    assert tuple(colour.shape) == (batch, 1, 6, 7) and tuple(alpha.shape) == (batch, 1, 6, 7)
    assert colour.dtype == torch.float32 and form.channels == 2
    back = from_batch(colour.expand(batch, 3, 6, 7).clone(), alpha, form)
    assert type(back) is type(image) and back.dtype == image.dtype and back.shape == image.shape
    given_alpha = image[..., 1] if isinstance(image, np.ndarray) else image[..., 1, :, :]
    back_alpha = back[..., 1] if isinstance(image, np.ndarray) else back[..., 1, :, :]
    assert np.array_equal(np.asarray(back_alpha), np.asarray(given_alpha))  # untouched
    # the grey comes back as the mean of three equal channels: equal, or within rounding
    np.testing.assert_allclose(np.asarray(back), np.asarray(image), rtol=1e-6, atol=0)


def test_what_each_format_holds():
    for name, dtype, channels in [
        ("x.png", np.uint16, 2),
        ("x.tif", np.float32, 4),
        ("x.tiff", np.float32, 1),
        ("x.tif", np.uint8, 2),
        ("x.jpg", np.uint8, 1),
    ]:
        check_image_path(name, dtype, channels)
    for name, dtype, channels in [
        ("x.jpg", np.uint8, 2),
        ("x.png", np.float32, 1),
        ("x.tif", np.float32, 2),
        ("x.tif", np.float64, 3),
    ]:
        with pytest.raises(ValueError, match="^x\\."):
            check_image_path(name, dtype, channels)
