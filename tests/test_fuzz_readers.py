"""Fuzzing the image and kernel readers: random bytes and mutated valid files give a result or a
one-line ValueError naming the file; never another exception, a crash, a hang or an unpickle.

Bounded (derandomised examples with a deadline each) so that CI spends a few seconds on it. The
weights reader is fuzzed in tests/test_weights_safety.py.
"""

import io
import pickle
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("hypothesis")  # in the test extra; a bare GPU image may lack it

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pydeblur.io import read_image, write_image
from pydeblur.kernel_io import read_psf, write_psf

FUZZ = settings(
    max_examples=400,
    deadline=5000,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


def _encoded(suffix: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(suffix, image)
    assert ok
    return data.tobytes()


def _oriented(suffix: str, image: np.ndarray) -> bytes:
    """`image` saved by Pillow with an EXIF orientation (6: turned a quarter clockwise to be shown)."""
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG" if suffix == ".jpg" else "TIFF", exif=exif.tobytes())
    return buffer.getvalue()


def _written(name: str, image: np.ndarray, dtype) -> bytes:
    with tempfile.TemporaryDirectory() as folder:
        write_image(Path(folder) / name, image, dtype)
        return (Path(folder) / name).read_bytes()


def _valid_images() -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (24, 20, 3), dtype=np.uint8)
    return {
        "rgb.png": _encoded(".png", rgb),
        "deep.png": _encoded(".png", rgb.astype(np.uint16) * 257),
        "grey.jpg": _encoded(".jpg", rgb[..., 0]),
        "rgba.tif": _encoded(".tif", np.dstack([rgb, rgb[..., :1]])),
        # the readers of #18's formats: float TIFF, grey+alpha, EXIF orientation
        "float.tif": _encoded(".tif", rgb.astype(np.float32) / 200),
        "la16.png": _written("la16.png", rgb[..., :2] / 255, np.uint16),
        "la.tif": _written("la.tif", rgb[..., :2] / 255, np.uint8),
        "oriented.jpg": _oriented(".jpg", rgb),
        "oriented.tif": _oriented(".tif", rgb),
    }


def _valid_kernels() -> dict[str, bytes]:
    kernel = np.random.default_rng(1).random((7, 5))
    files = {}
    with tempfile.TemporaryDirectory() as folder:
        for name in ("k.npy", "k.txt", "k.csv", "k.png", "k.mat"):
            write_psf(Path(folder) / name, kernel)
            files[name] = (Path(folder) / name).read_bytes()
        write_psf(Path(folder) / "h.mat", kernel, mat_version="7.3")
        files["h.mat"] = (Path(folder) / "h.mat").read_bytes()
    return files


IMAGES = _valid_images()
KERNELS = _valid_kernels()


@st.composite
def mutated(draw, valid: dict[str, bytes]):
    """(file name, bytes): a valid file with a few bytes flipped, inserted or deleted, or cut short."""
    name = draw(st.sampled_from(sorted(valid)))
    data = bytearray(valid[name])
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "header"]))
        at = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif kind == "header" and data:  # where formats keep sizes and offsets
            data[min(at, 64) % len(data)] = draw(st.integers(0, 255))
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return name, bytes(data)


def _random_file(valid: dict[str, bytes]):
    names = st.sampled_from(sorted(valid))
    return st.one_of(mutated(valid), st.tuples(names, st.binary(max_size=512)))


@pytest.fixture(autouse=True)
def no_unpickling(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a reader unpickled data")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)


def _check_outcome(read, name: str, data: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(data)
        try:
            result = read(path)
        except ValueError as error:
            message = str(error)
            assert "\n" not in message and str(path) in message, message
            return
    assert isinstance(result, np.ndarray) and result.dtype == np.float32


@FUZZ
@given(_random_file(IMAGES))
def test_image_reader_survives_random_and_mutated_files(case):
    _check_outcome(lambda path: read_image(path)[0], *case)


@FUZZ
@given(_random_file(KERNELS))
def test_kernel_reader_survives_random_and_mutated_files(case):
    _check_outcome(read_psf, *case)


def test_the_valid_files_read():
    """The seeds of the mutations are themselves good files (else the fuzzing tests little)."""
    for name, data in {**IMAGES, **KERNELS}.items():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / name
            path.write_bytes(data)
            read = read_psf if name in KERNELS else (lambda p: read_image(p)[0])
            assert read(path).size > 0, name
