"""Reading and writing images with OpenCV: RGB float arrays in [0, 1], 8- and 16-bit files."""

import os
import tempfile
from pathlib import Path

import cv2
import numpy as np


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, np.dtype]:
    """Read an image file as float32 HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA) in [0, 1].

    Returns the array and the file's sample type (uint8 or uint16), to write results back alike.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(
            f"cannot read {path} as an image (not a PNG, JPEG, TIFF or other known format)"
        )
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
    """Float image in [0, 1] to uint8 or uint16, clipped and rounded."""
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def write_image(path: str | os.PathLike, image: np.ndarray, dtype: np.dtype = np.uint8) -> None:
    """Write a float image in [0, 1] (HxW, HxWx3 RGB or HxWx4 RGBA) as 8- or 16-bit.

    The file is written under a temporary name and renamed, so no partial file is ever left behind.
    """
    path = Path(path)
    if np.dtype(dtype) == np.uint16 and path.suffix.lower() in (".jpg", ".jpeg"):
        raise ValueError(f"{path}: JPEG cannot hold 16-bit samples; write PNG or TIFF")
    data = to_integer(image, dtype)
    if data.ndim == 3 and data.shape[2] == 3:
        data = cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
    elif data.ndim == 3 and data.shape[2] == 4:
        data = cv2.cvtColor(data, cv2.COLOR_RGBA2BGRA)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(descriptor)
    try:
        ok, encoded = cv2.imencode(path.suffix, data)
        if not ok:
            raise ValueError(f"cannot encode an image as {path.suffix!r}")
        Path(temporary).write_bytes(encoded.tobytes())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
