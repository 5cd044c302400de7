"""Reading and writing images: RGB float arrays in [0, 1], 8- and 16-bit PNG, JPEG and TIFF files.

Every file is checked before it is decoded: its header must name a known format and at most
`max_pixels` pixels (`DEFAULT_MAX_PIXELS` unless told otherwise), and its data must be whole (a
truncated or corrupt file is refused, not decoded with a grey or missing part). OpenCV decodes (it
keeps 16-bit colour); Pillow reads the header and verifies the data.
"""

import os
import warnings
from pathlib import Path

import cv2
import numpy as np

from pydeblur.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# 100 megapixels: a 12-MP photo takes ~50 s and ~2.3 GB on two CPU cores, so this is ~8x that.
DEFAULT_MAX_PIXELS = 100_000_000
_JPEG = (".jpg", ".jpeg")


def _check_whole(path: Path, max_pixels: int | None) -> None:
    """Refuse a file that is no image, is larger than `max_pixels`, or whose data is cut or corrupt.

    Only the header is read before the size check, so an oversized image costs no memory.
    """
    from PIL import Image, UnidentifiedImageError

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # our own limit replaces Pillow's
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Pillow warns of what it tolerates: decoding decides
            with Image.open(path) as image:
                width, height = image.size
                too_large = max_pixels is not None and width * height > max_pixels
                if too_large:
                    pass
                elif image.format == "PNG":
                    image.verify()  # every chunk's checksum and the stream's end, without decoding
                else:
                    image.load()  # a full decode: a truncated JPEG or TIFF raises here
    except UnidentifiedImageError as error:
        raise ValueError(
            f"cannot read {path} as an image (not a PNG, JPEG or TIFF file, or its header is damaged)"
        ) from error
    except Exception as error:  # Pillow's decoders raise OSError, ValueError, SyntaxError, ...
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"{path}: the image data is truncated or corrupt ({reason})") from error
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if too_large:
        raise ValueError(
            f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
            f"{max_pixels / 1e6:g} (raise it with max_pixels= / --max-pixels)"
        )


def read_image(
    path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.dtype]:
    """Read an image file as float32 HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA) in [0, 1].

    Returns the array and the file's sample type (uint8 or uint16), to write results back alike.
    Raises FileNotFoundError, or ValueError naming the file for anything that is not a whole 8- or
    16-bit image of at most `max_pixels` pixels (None: no limit of ours).

    >>> import pydeblur
    >>> image, sample_type = read_image(pydeblur.DEMO_PHOTO)
    >>> image.shape, image.dtype, sample_type
    ((320, 384, 3), dtype('float32'), dtype('uint8'))
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    _check_whole(path, max_pixels)
    try:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ValueError(f"{path}: OpenCV cannot decode it ({error.err})") from error
    if image is None:
        raise ValueError(f"cannot read {path} as an image (not a PNG, JPEG or TIFF file)")
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"{path}: unsupported sample type {image.dtype} (8 or 16 bit expected)")
    source_dtype = image.dtype
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif image.ndim != 2:
        raise ValueError(f"{path}: unsupported image layout {image.shape}")
    return image.astype(np.float32) / np.iinfo(source_dtype).max, source_dtype


def to_integer(image: np.ndarray, dtype: np.dtype = np.uint8) -> np.ndarray:
    """Float image in [0, 1] (any shape) to uint8 or uint16, clipped and rounded.

    >>> to_integer(np.array([-0.1, 0.5, 1.2]))
    array([  0, 128, 255], dtype=uint8)
    """
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def check_image_path(
    path: str | os.PathLike, dtype: np.dtype = np.uint8, channels: int = 3
) -> None:
    """Refuse, before any work, an output name that `write_image` could not write.

    The suffix must be one of `IMAGE_SUFFIXES`; JPEG holds neither 16-bit samples nor alpha.

    >>> check_image_path("out.jpg", np.uint16)
    Traceback (most recent call last):
    ValueError: out.jpg: JPEG cannot hold 16-bit samples; write PNG or TIFF
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write images of type {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if suffix in _JPEG and np.dtype(dtype) == np.uint16:
        raise ValueError(f"{path}: JPEG cannot hold 16-bit samples; write PNG or TIFF")
    if suffix in _JPEG and channels == 4:
        raise ValueError(f"{path}: JPEG cannot hold an alpha channel; write PNG or TIFF")


def write_image(path: str | os.PathLike, image: np.ndarray, dtype: np.dtype = np.uint8) -> None:
    """Write a float image in [0, 1] (HxW, HxWx3 RGB or HxWx4 RGBA) as 8- or 16-bit.

    The file appears whole or not at all (`pydeblur.atomic`); a replaced file keeps its mode.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "grey.png"
    >>> write_image(target, np.full((4, 6), 0.5, np.float32))
    >>> read_image(target)[0].shape
    (4, 6)
    """
    path = Path(path)
    check_image_path(path, dtype, image.shape[2] if image.ndim == 3 else 1)
    data = to_integer(image, dtype)
    if data.ndim == 3 and data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
    elif data.ndim == 3 and data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_RGBA2BGRA)
    ok, encoded = cv2.imencode(path.suffix, data)
    if not ok:
        raise ValueError(f"cannot encode an image as {path.suffix!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
