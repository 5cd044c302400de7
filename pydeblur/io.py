"""Reading and writing images: float arrays, 8- and 16-bit PNG, JPEG and TIFF, and 32-bit float TIFF.

Every file is checked before it is decoded: its header must name a known format and at most
`max_pixels` pixels (`DEFAULT_MAX_PIXELS` unless told otherwise), and its data must be whole (a
truncated or corrupt file is refused, not decoded with a grey or missing part). OpenCV decodes (it
keeps 16-bit colour and float TIFF); Pillow reads the header, verifies the data and decodes what
OpenCV misreads (an 8-bit grey+alpha TIFF).

Sample types: uint8 and uint16 files read as float32 in [0, 1]; a 32-bit float TIFF reads with its
values as stored (linear data; values outside [0, 1] are kept, NaN and infinities refused). Layouts:
grey HxW, grey+alpha HxWx2, RGB HxWx3, RGBA HxWx4. An EXIF orientation (JPEG, PNG eXIf before the
image data, TIFF) is applied on reading, as Pillow's `ImageOps.exif_transpose` does; files are
written upright and without one.
"""

import io
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pydeblur.atomic import atomic_path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# 100 megapixels: a 12-MP photo takes ~50 s and ~2.3 GB on two CPU cores, so this is ~8x that.
DEFAULT_MAX_PIXELS = 100_000_000
_JPEG = (".jpg", ".jpeg")
_TIFF = (".tif", ".tiff")
# The sample types a file can hold: `--bit-depth` 8, 16 and 32.
SAMPLE_TYPES = {8: np.dtype(np.uint8), 16: np.dtype(np.uint16), 32: np.dtype(np.float32)}
_ORIENTATION = 0x0112  # EXIF / TIFF tag 274
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


@dataclass(frozen=True)
class _Header:
    """What the checks before decoding learnt of a file."""

    format: str  # Pillow's name for it: "PNG", "JPEG" (or "MPO"), "TIFF"
    orientation: int  # 1 (as stored) to 8, as EXIF numbers them
    grey_alpha: bool  # two channels: grey and alpha


def _orientation_of(image) -> int:
    """The EXIF orientation of an open Pillow image, 1 when absent, invalid or unreadable."""
    try:
        value = image.getexif().get(_ORIENTATION, 1)
    except Exception:  # a damaged EXIF block does not make the pixels unreadable
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _check_whole(path: Path, max_pixels: int | None) -> _Header:
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
                kind, mode = image.format, image.mode
                too_large = max_pixels is not None and width * height > max_pixels
                orientation = 1
                if too_large:
                    pass
                elif kind == "PNG":
                    # the eXIf chunk where the PNG standard puts it, before the image data: getexif
                    # would otherwise decode the whole image
                    orientation = _orientation_of(image) if "exif" in image.info else 1
                    image.verify()  # every chunk's checksum and the stream's end, without decoding
                else:
                    orientation = _orientation_of(image)  # before load: Pillow turns a TIFF upright
                    image.load()  # a full decode: a truncated JPEG or TIFF raises here
    except UnidentifiedImageError as error:
        if _starts_as_tiff(path):  # a float RGB(A) TIFF: Pillow holds float as one channel only
            return _check_tiff(path, max_pixels)
        raise ValueError(
            f"cannot read {path} as an image (not a PNG, JPEG or TIFF file, or its header is damaged)"
        ) from error
    except Exception as error:  # Pillow's decoders raise OSError, ValueError, SyntaxError, ...
        raise ValueError(
            f"{path}: the image data is truncated or corrupt ({_reason(error)})"
        ) from error
    finally:
        Image.MAX_IMAGE_PIXELS = limit
    if too_large:
        _refuse_size(path, width, height, max_pixels)
    grey_alpha = mode == "LA" or (kind == "PNG" and _png_colour_type(path) == 4)
    return _Header(kind, orientation, grey_alpha)


def _reason(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _refuse_size(path: Path, width: int, height: int, max_pixels: int) -> None:
    raise ValueError(
        f"{path}: {width}x{height} is {width * height / 1e6:.1f} megapixels, over the limit of "
        f"{max_pixels / 1e6:g} (raise it with max_pixels= / --max-pixels)"
    )


def _starts_as_tiff(path: Path) -> bool:
    with open(path, "rb") as file:
        return file.read(4) in _TIFF_MAGIC


def _png_colour_type(path: Path) -> int:
    """The colour type in a (verified) PNG's IHDR: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA."""
    with open(path, "rb") as file:
        head = file.read(26)
    return head[25] if len(head) == 26 else -1


def _check_tiff(path: Path, max_pixels: int | None) -> _Header:
    """The checks of `_check_whole` for a TIFF Pillow cannot open: its first directory read by Pillow's
    TIFF directory parser; only 32-bit float samples (1, 3 or 4 interleaved) are let through, their
    data wholly inside the file."""
    from PIL import TiffImagePlugin

    try:
        size = path.stat().st_size
        with warnings.catch_warnings(), open(path, "rb") as file:
            warnings.simplefilter("ignore")
            head = file.read(16)
            ifd = TiffImagePlugin.ImageFileDirectory_v2(head if head[2] == 43 else head[:8])
            file.seek(ifd.next)
            ifd.load(file)
        width, height = int(ifd[256]), int(ifd[257])
        samples = int(ifd.get(277, 1))
        bits = set(np.atleast_1d(ifd.get(258, 1)).tolist())
        sample_format = set(np.atleast_1d(ifd.get(339, 1)).tolist())
        planar = int(ifd.get(284, 1))
        orientation = ifd.get(_ORIENTATION, 1)
        offsets = ifd.get(273, ifd.get(324))
        counts = ifd.get(279, ifd.get(325))
        if offsets is None or counts is None:
            raise ValueError("no image data")
        offsets, counts = np.atleast_1d(offsets), np.atleast_1d(counts)
        inside = len(offsets) == len(counts) and bool(np.all(offsets + counts <= size))
    except Exception as error:
        raise ValueError(f"{path}: the TIFF directory is damaged ({_reason(error)})") from error
    if max_pixels is not None and width * height > max_pixels:
        _refuse_size(path, width, height, max_pixels)
    kind = {1: "integer", 2: "signed integer", 3: "float"}.get(min(sample_format), "unknown")
    depth = "/".join(map(str, sorted(bits)))
    if samples == 2:
        raise ValueError(
            f"{path}: a {depth}-bit {kind} grey+alpha TIFF cannot be read (8-bit integer only); "
            "save it as PNG"
        )
    if bits != {32} or sample_format != {3} or samples not in (1, 3, 4) or planar != 1:
        layout = "planar" if planar != 1 else "interleaved"
        raise ValueError(
            f"{path}: unsupported TIFF ({samples} {layout} channels of {depth}-bit {kind} samples); "
            "8- or 16-bit integer or 32-bit float samples, 1, 3 or 4 interleaved channels expected"
        )
    if not inside:
        raise ValueError(
            f"{path}: the image data is truncated or corrupt (data past the file's end)"
        )
    orientation = orientation if isinstance(orientation, int) and 1 <= orientation <= 8 else 1
    return _Header("TIFF", orientation, False)


def _tiff_as_stored(data: bytes) -> bytes:
    """A TIFF's bytes with its first directory's orientation set to 1 (as stored): OpenCV applies
    orientations 2-4 itself and fails on 5-8, so the orientation is applied after decoding instead."""
    order = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    try:
        if big:
            (offset,) = struct.unpack_from(order + "Q", data, 8)
            (count,) = struct.unpack_from(order + "Q", data, offset)
            first, entry, value_at = offset + 8, 20, 12
        else:
            (offset,) = struct.unpack_from(order + "I", data, 4)
            (count,) = struct.unpack_from(order + "H", data, offset)
            first, entry, value_at = offset + 2, 12, 8
        for index in range(min(count, 4096)):
            at = first + index * entry
            tag, kind = struct.unpack_from(order + "HH", data, at)
            if tag == _ORIENTATION and kind == 3:  # SHORT, as TIFF 6.0 defines it
                patched = bytearray(data)
                struct.pack_into(order + "H", patched, at + value_at, 1)
                return bytes(patched)
    except struct.error:
        pass
    return data


def _pillow_decode(data: bytes) -> np.ndarray:
    """The samples of an (already checked) image file's bytes, decoded by Pillow, as stored."""
    from PIL import Image

    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked by `_check_whole`
    try:
        with warnings.catch_warnings(), Image.open(io.BytesIO(data)) as image:
            warnings.simplefilter("ignore")  # as in `_check_whole`
            return np.asarray(image)
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _upright(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` (HxW or HxWxC) as EXIF `orientation` says it should be shown (ImageOps.exif_transpose).

    >>> _upright(np.array([[1, 2, 3], [4, 5, 6]]), 6)
    array([[4, 1],
           [5, 2],
           [6, 3]])
    """
    transform = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.swapaxes(0, 1),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
        8: lambda a: np.rot90(a, 1),
    }.get(orientation)
    return image if transform is None else np.ascontiguousarray(transform(image))


def read_image(
    path: str | os.PathLike, max_pixels: int | None = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, np.dtype]:
    """Read an image file as float32 HxW (grey), HxWx2 (grey+alpha), HxWx3 (RGB) or HxWx4 (RGBA).

    Returns the array and the file's sample type (uint8, uint16 or float32), to write results back
    alike. Integer samples are scaled to [0, 1]; a float32 TIFF's values come as stored (linear data,
    not clipped). An EXIF orientation is applied: the array is upright. Raises FileNotFoundError, or
    ValueError naming the file for anything that is not a whole image of at most `max_pixels` pixels
    (None: no limit of ours), and for a float image holding NaN or infinities.

    >>> import pydeblur
    >>> image, sample_type = read_image(pydeblur.DEMO_PHOTO)
    >>> image.shape, image.dtype, sample_type
    ((320, 384, 3), dtype('float32'), dtype('uint8'))
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image file: {path}")
    header = _check_whole(path, max_pixels)
    try:
        if header.format == "TIFF" and header.grey_alpha:  # OpenCV misreads two-channel TIFFs
            image = _pillow_decode(_tiff_as_stored(path.read_bytes()))
        elif header.format == "TIFF" and header.orientation != 1:
            data = np.frombuffer(_tiff_as_stored(path.read_bytes()), np.uint8)
            image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        else:
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    except cv2.error as error:
        raise ValueError(f"{path}: OpenCV cannot decode it ({error.err})") from error
    except Exception as error:  # Pillow's decoders: the data passed the checks, so rare
        raise ValueError(
            f"{path}: the image data is truncated or corrupt ({_reason(error)})"
        ) from error
    if image is None:
        raise ValueError(
            f"{path}: OpenCV cannot decode it (corrupt data, or a variant it does not read)"
        )
    if image.dtype not in SAMPLE_TYPES.values():
        raise ValueError(
            f"{path}: unsupported sample type {image.dtype} (8- or 16-bit integer or 32-bit float "
            "expected)"
        )
    source_dtype = image.dtype
    if header.grey_alpha and image.ndim == 3 and image.shape[2] == 4:  # OpenCV gives B=G=R, A
        image = image[..., [0, 3]]
    elif image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    elif image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    elif not (image.ndim == 2 or (header.grey_alpha and image.shape[2:] == (2,))):
        raise ValueError(f"{path}: unsupported image layout {image.shape}")
    if source_dtype == np.float32:
        if not np.isfinite(image).all():
            raise ValueError(f"{path}: the float image holds NaN or infinite values")
    else:
        image = image.astype(np.float32) / np.iinfo(source_dtype).max
    return _upright(image, header.orientation), source_dtype


def to_integer(image: np.ndarray, dtype: np.dtype = np.uint8) -> np.ndarray:
    """Float image in [0, 1] (any shape) to uint8 or uint16, clipped and rounded; float32: the values
    as they are (a float TIFF's samples), as float32.

    >>> to_integer(np.array([-0.1, 0.5, 1.2]))
    array([  0, 128, 255], dtype=uint8)
    >>> to_integer(np.array([-0.1, 0.5, 1.2]), np.float32)
    array([-0.1,  0.5,  1.2], dtype=float32)
    """
    if np.dtype(dtype) == np.float32:
        return np.asarray(image, np.float32)
    top = np.iinfo(dtype).max
    return np.round(np.clip(image, 0.0, 1.0) * top).astype(dtype)


def check_image_path(
    path: str | os.PathLike, dtype: np.dtype = np.uint8, channels: int = 3
) -> None:
    """Refuse, before any work, an output name that `write_image` could not write.

    The suffix must be one of `IMAGE_SUFFIXES`; JPEG holds 8-bit grey or RGB only, PNG 8- or 16-bit
    samples, TIFF 32-bit float too; a grey+alpha image (`channels` 2) goes into PNG (8 or 16 bit) or an
    8-bit TIFF.

    >>> check_image_path("out.jpg", np.uint16)
    Traceback (most recent call last):
    ValueError: out.jpg: JPEG cannot hold 16-bit samples; write PNG or TIFF
    >>> check_image_path("out.png", np.float32)
    Traceback (most recent call last):
    ValueError: out.png: PNG cannot hold 32-bit float samples; write TIFF, or 8 or 16 bits
    """
    path = Path(path)
    suffix = path.suffix.lower()
    dtype = np.dtype(dtype)
    if suffix not in IMAGE_SUFFIXES:
        raise ValueError(
            f"{path}: cannot write images of type {suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if dtype not in SAMPLE_TYPES.values():
        raise ValueError(f"{path}: cannot write {dtype} samples (uint8, uint16 or float32)")
    if channels not in (1, 2, 3, 4):
        raise ValueError(f"{path}: cannot write an image of {channels} channels (1 to 4)")
    if suffix in _JPEG and dtype == np.uint16:
        raise ValueError(f"{path}: JPEG cannot hold 16-bit samples; write PNG or TIFF")
    if suffix in _JPEG and dtype == np.float32:
        raise ValueError(f"{path}: JPEG cannot hold 32-bit float samples; write TIFF")
    if suffix in _JPEG and channels in (2, 4):
        raise ValueError(f"{path}: JPEG cannot hold an alpha channel; write PNG or TIFF")
    if suffix == ".png" and dtype == np.float32:
        raise ValueError(
            f"{path}: PNG cannot hold 32-bit float samples; write TIFF, or 8 or 16 bits"
        )
    if suffix in _TIFF and channels == 2 and dtype != np.uint8:
        raise ValueError(
            f"{path}: a grey+alpha TIFF is written 8-bit only; write PNG (8 or 16 bit) or 8 bits"
        )


def _png_grey_alpha(data: np.ndarray) -> bytes:
    """A grey+alpha PNG (colour type 4, 8 or 16 bit) of HxWx2 uint8 or uint16 samples: OpenCV writes
    1, 3 or 4 channels only, Pillow grey+alpha at 8 bits only."""
    height, width = data.shape[:2]
    depth = data.dtype.itemsize * 8
    rows = np.ascontiguousarray(data.astype(data.dtype.newbyteorder(">"))).view(np.uint8)
    rows = rows.reshape(height, -1)
    filtered = np.empty((height, rows.shape[1] + 1), np.uint8)
    filtered[:, 0] = 2  # the "Up" filter: each byte less the one above it
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])
    stream = zlib.compress(filtered.tobytes(), 6)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    step = 1 << 20
    return b"".join(
        [
            b"\x89PNG\r\n\x1a\n",
            chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, 4, 0, 0, 0)),
        ]
        + [chunk(b"IDAT", stream[at : at + step]) for at in range(0, len(stream), step)]
        + [chunk(b"IEND", b"")]
    )


def _tiff_grey_alpha(data: np.ndarray) -> bytes:
    """An 8-bit grey+alpha TIFF (deflate), written by Pillow (OpenCV writes 1, 3 or 4 channels only)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(data).save(buffer, "TIFF", compression="tiff_adobe_deflate")
    return buffer.getvalue()


def write_image(path: str | os.PathLike, image: np.ndarray, dtype: np.dtype = np.uint8) -> None:
    """Write a float image (HxW, HxWx2 grey+alpha, HxWx3 RGB or HxWx4 RGBA) with samples of `dtype`.

    uint8 and uint16: [0, 1] scaled, clipped and rounded; float32 (TIFF only): the values as they are,
    which must be finite. `check_image_path` says what each format holds. The file appears whole or
    not at all (`pydeblur.atomic`); a replaced file keeps its mode.

    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "grey.png"
    >>> write_image(target, np.full((4, 6), 0.5, np.float32))
    >>> read_image(target)[0].shape
    (4, 6)
    """
    path = Path(path)
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    channels = image.shape[2] if image.ndim == 3 else 1
    if image.ndim not in (2, 3):
        raise ValueError(f"{path}: cannot write an array of shape {image.shape} as an image")
    check_image_path(path, dtype, channels)
    if np.dtype(dtype) == np.float32 and not np.isfinite(image).all():
        raise ValueError(f"{path}: cannot write NaN or infinite values")
    data = to_integer(image, dtype)
    if channels == 2:
        encoded = _png_grey_alpha(data) if path.suffix.lower() == ".png" else _tiff_grey_alpha(data)
    else:
        if channels == 3:
            data = cv2.cvtColor(data, cv2.COLOR_RGB2BGR)
        elif channels == 4:
            data = cv2.cvtColor(data, cv2.COLOR_RGBA2BGRA)
        ok, array = cv2.imencode(path.suffix, data)
        if not ok:
            raise ValueError(f"cannot encode an image as {path.suffix!r}")
        encoded = array.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded)
