"""Image files in and out without losing a bit: 8-bit images through Pillow, 16-bit PNGs (grey and
RGB) through pypng, DICOM through pydicom.

Medical images are 12-16 bits per value. Pillow reads a 16-bit grey PNG as 32-bit integers and a
48-bit RGB PNG as 8 bits per channel (the low byte dropped), so a 16-bit PNG is read and written
with pypng, keeping every bit; the 16-bit values then need a 16-bit key
(:mod:`cbirlib.core.cipher16`). A DICOM file's stored pixel values are read as they are: 8 or
16 bits, signed values shifted by 2^15 into uint16 (the shift recorded), the rescale slope and
intercept recorded, never applied; multi-frame files and 32-bit or float pixels are refused with
a clear message, and so is a compressed transfer syntax no installed decoder reads. No header
field that could identify a patient is copied into any output, log or message: what
:class:`PixelImage` records about its source is technical (format, depth, photometric
interpretation, rescale, transfer syntax).

Alpha channels are dropped (grey stays one channel, colour becomes three).
"""

from __future__ import annotations

import io
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, PngImagePlugin, UnidentifiedImageError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: the DICOM preamble is 128 bytes, then "DICM"
DICOM_MAGIC_OFFSET = 128
SIGNED_OFFSET = 2 ** 15


class ImageReadError(ValueError):
    """A file that cannot be read as an image without losing values; the message says why."""


@dataclass(frozen=True)
class PixelImage:
    """An image's values as stored, ``pixels`` (H, W, C) uint8 or uint16 with C = 1 (``mode`` "L")
    or 3 ("RGB"), and how they were read (``source``: format, depth and, for DICOM, what the
    values mean)."""

    pixels: np.ndarray
    mode: str
    source: dict = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return 16 if self.pixels.dtype == np.uint16 else 8


def _head(path: Path, n: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise ImageReadError(f"cannot read image {path}: {e.strerror or e}") from None


def is_dicom(path: str | Path) -> bool:
    """Whether the file starts as a DICOM file does (or is named .dcm)."""
    path = Path(path)
    head = _head(path, DICOM_MAGIC_OFFSET + 4)
    return head[DICOM_MAGIC_OFFSET:DICOM_MAGIC_OFFSET + 4] == b"DICM" or path.suffix.lower() == ".dcm"


def png_bit_depth(path: str | Path) -> int | None:
    """The bit depth of a PNG file from its header (None for other files)."""
    head = _head(Path(path), 26)
    if not head.startswith(PNG_MAGIC) or len(head) < 26 or head[12:16] != b"IHDR":
        return None
    return head[24]


def read(path: str | Path) -> PixelImage:
    """The image's values without loss (see the module docstring); a clear
    :class:`ImageReadError` for anything it cannot read that way."""
    path = Path(path)
    if is_dicom(path):
        return _read_dicom(path)
    if png_bit_depth(path) == 16:
        return _read_png16(path)
    return _read_pillow(path)


def _as_hwc(arr: np.ndarray) -> np.ndarray:
    return arr[..., None] if arr.ndim == 2 else arr


def _read_pillow(path: Path) -> PixelImage:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):  # 16-bit grey (a TIFF, say)
                arr = np.asarray(im)
                if arr.size and (arr.min() < 0 or arr.max() > 65535):
                    raise ImageReadError(f"{path}: 32-bit integer pixels outside 0..65535; convert them explicitly")
                return PixelImage(_as_hwc(arr.astype(np.uint16)), "L", {"format": im.format, "depth": 16})
            bits = im.tag_v2.get(258) if im.format == "TIFF" else None  # BitsPerSample
            if bits is not None and max(bits if isinstance(bits, tuple) else (bits,)) > 8:
                return _read_tiff16(path)  # 48-bit RGB and the like: Pillow would keep only the high bytes
            if im.mode == "F":
                raise ImageReadError(f"{path}: floating-point pixels; convert them to 8 or 16 bits explicitly "
                                     "(a window) first")
            mode = "L" if im.mode in ("1", "L", "LA") else "RGB"
            arr = np.asarray(im.convert(mode), dtype=np.uint8)
            fmt = im.format
    except ImageReadError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    return PixelImage(_as_hwc(arr), mode, {"format": fmt, "depth": 8})


def _read_tiff16(path: Path) -> PixelImage:
    """A TIFF of more than 8 bits per sample that Pillow cannot hold (16-bit colour), read exactly
    with tifffile; 16-bit grey or RGB(A) only (alpha dropped)."""
    import tifffile

    try:
        arr = tifffile.imread(path)
    except (ValueError, OSError, struct.error, tifffile.TiffFileError) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    if arr.dtype != np.uint16 or not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4))):
        raise ImageReadError(f"{path}: a TIFF of {arr.dtype} samples in shape {arr.shape}; 8- and 16-bit grey or "
                             "RGB(A) images only (one page)")
    colour = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    arr = arr[..., :3] if colour else _as_hwc(arr)[..., :1]
    return PixelImage(np.ascontiguousarray(arr), "RGB" if colour else "L", {"format": "TIFF", "depth": 16})


def _read_png16(path: Path) -> PixelImage:
    import png

    try:
        # read(), not asDirect(): the stored samples, not rescaled by an sBIT chunk
        width, height, rows, info = png.Reader(filename=str(path)).read()
        arr = np.vstack([np.asarray(r, dtype=np.uint16) for r in rows]).reshape(height, width, info["planes"])
    except (png.Error, ValueError, OSError, struct.error) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None
    colour = info["planes"] in (3, 4)
    arr = arr[..., :3] if colour else arr[..., :1]  # alpha dropped
    return PixelImage(np.ascontiguousarray(arr), "RGB" if colour else "L", {"format": "PNG", "depth": 16})


def _read_dicom(path: Path) -> PixelImage:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError, struct.error) as e:
        raise ImageReadError(f"cannot read DICOM file {path}: {type(e).__name__}") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: a DICOM file without pixel data")
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    if frames > 1:
        raise ImageReadError(f"{path}: a multi-frame DICOM file ({frames} frames); split it into single-frame "
                             "files first (one image per file)")
    bits = int(getattr(ds, "BitsAllocated", 0) or 0)
    if bits not in (8, 16):
        raise ImageReadError(f"{path}: {bits}-bit DICOM pixels; only 8- and 16-bit pixels are read")
    syntax = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    syntax_name = getattr(syntax, "name", str(syntax)) if syntax is not None else "unknown"
    try:
        arr = ds.pixel_array
    except Exception as e:  # pydicom raises several types when no decoder handles the syntax
        raise ImageReadError(f"{path}: its pixel data ({syntax_name}) cannot be decoded here "
                             f"({type(e).__name__}); decompress it first (e.g. gdcmconv --raw)") from None
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if samples not in (1, 3) or arr.ndim != (2 if samples == 1 else 3):
        raise ImageReadError(f"{path}: {samples} samples per pixel in an array of shape {arr.shape}; "
                             "grey or RGB single-frame images only")
    offset = 0
    if arr.dtype.kind == "i":  # signed stored values: shifted into uint16, the shift recorded
        offset = SIGNED_OFFSET if bits == 16 else 2 ** 7
        arr = (arr.astype(np.int32) + offset).astype(np.uint16 if bits == 16 else np.uint8)
    arr = arr.astype(np.uint16 if bits == 16 else np.uint8)
    source = {"format": "DICOM", "depth": bits, "transfer_syntax": syntax_name,
              "photometric": str(getattr(ds, "PhotometricInterpretation", "")),
              "bits_stored": int(getattr(ds, "BitsStored", bits) or bits),
              "rescale_slope": float(getattr(ds, "RescaleSlope", 1) or 1),
              "rescale_intercept": float(getattr(ds, "RescaleIntercept", 0) or 0),
              "signed_offset": offset}
    return PixelImage(np.ascontiguousarray(_as_hwc(arr)), "L" if samples == 1 else "RGB", source)


def probe(path: str | Path) -> tuple[tuple[int, int, int], int]:
    """((H, W, C), bits per value) of an image file from what it takes to know them; the same
    errors as :func:`read`."""
    image = read(path)  # simple and exact; the files of a folder are read once more when encrypted
    return image.pixels.shape, image.depth


def write_png(path: str | Path, pixels: np.ndarray, mode: str, text: dict[str, str] | None = None) -> None:
    """Write (H, W, C) uint8 or uint16 values as a PNG with ``text`` chunks, atomically (a
    temporary name beside it, then renamed): 8-bit through Pillow, 16-bit through pypng."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    try:
        if pixels.dtype == np.uint16:
            _write_png16(tmp, pixels, mode, text or {})
        else:
            info = None
            if text:
                info = PngImagePlugin.PngInfo()
                for k, v in text.items():
                    info.add_text(k, v)
            Image.fromarray(pixels[..., 0] if mode == "L" else pixels, mode).save(tmp, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_png16(path: Path, pixels: np.ndarray, mode: str, text: dict[str, str]) -> None:
    import png

    h, w, c = pixels.shape
    buf = io.BytesIO()
    png.Writer(w, h, greyscale=mode == "L", bitdepth=16).write(buf, pixels.reshape(h, w * c))
    chunks = list(png.Reader(bytes=buf.getvalue()).chunks())
    extra = [(b"tEXt", k.encode("latin-1") + b"\0" + v.encode("latin-1")) for k, v in text.items()]
    with open(path, "wb") as f:
        png.write_chunks(f, chunks[:-1] + extra + chunks[-1:])
