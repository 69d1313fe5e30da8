"""Image reading with clear errors: RGB float images, soft masks and integer label maps.

Every error names the file. Grayscale, RGBA, palette and 16-bit files are converted, not refused;
missing, empty, corrupt or truncated files raise `ImageReadError` (an OSError).
"""
from __future__ import annotations

import os
import struct

import cv2
import numpy as np

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class ImageReadError(OSError):
    """A file that cannot be used as an image (missing, corrupt, truncated, unsupported)."""


def read_file_bytes(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ImageReadError(f"image file not found: {path}")
    with open(path, "rb") as f:
        data = f.read()
    if not data:
        raise ImageReadError(f"image file is empty: {path}")
    return data


def _check_complete(path, data):
    """Detect truncation, which some OpenCV builds only warn about (decoding grey rows)."""
    if data[:2] == b"\xff\xd8":
        # Entropy-coded data never holds 0xFFD9 (0xFF is byte-stuffed), so a complete JPEG has its
        # end-of-image marker after the start of its last scan, whatever trails it.
        if data.find(b"\xff\xd9", max(data.rfind(b"\xff\xda"), 0)) < 0:
            raise ImageReadError(f"truncated JPEG (no end-of-image marker): {path}")
    elif data[:8] == _PNG_SIGNATURE:
        if data.rfind(b"IEND") < max(data.find(b"IDAT"), 8):
            raise ImageReadError(f"truncated PNG (no IEND chunk): {path}")


def decode(path, data=None, max_side=None):
    """Decode a file as stored (channels BGR[A], dtype uint8 / uint16 / float32).

    max_side: a JPEG whose shorter side is at least 2, 4 or 8 x max_side is decoded at 1/2, 1/4 or
    1/8 scale (libjpeg's DCT scaling: a 48-Mpx photo never exists at full size), as 3-channel BGR.
    """
    data = read_file_bytes(path) if data is None else data
    _check_complete(path, data)
    size = header_size(data)
    flags = cv2.IMREAD_UNCHANGED
    if max_side and size and data[:2] == b"\xff\xd8":
        for f, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                        (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if min(size) >= f * max_side:
                flags = flag | cv2.IMREAD_IGNORE_ORIENTATION  # as IMREAD_UNCHANGED: no EXIF rotation
                break
    if size and size[0] * size[1] > _CV_MAX_PIXELS:  # OpenCV would refuse it with an assertion
        raise ImageReadError(f"image too large to decode: {size[0]} x {size[1]} pixels (OpenCV's limit is "
                             f"{_CV_MAX_PIXELS} pixels; the OPENCV_IO_MAX_IMAGE_PIXELS variable raises it): {path}")
    try:
        arr = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    except cv2.error as exc:  # e.g. a header with absurd dimensions
        raise ImageReadError(f"corrupt or unsupported image file ({str(exc).strip().splitlines()[-1]}): {path}") from None
    if arr is None or arr.size == 0:
        raise ImageReadError(f"corrupt or unsupported image file: {path}")
    return arr


_CV_MAX_PIXELS = int(os.environ.get("OPENCV_IO_MAX_IMAGE_PIXELS", 1 << 30))


def header_size(data):
    """(width, height) from a PNG or JPEG header without decoding, or None."""
    if data[:8] == _PNG_SIGNATURE and data[12:16] == b"IHDR" and len(data) >= 24:
        return struct.unpack(">II", data[16:24])
    if data[:2] == b"\xff\xd8":
        pos = 2
        while pos + 9 <= len(data) and data[pos] == 0xFF:
            marker, length = data[pos + 1], struct.unpack(">H", data[pos + 2:pos + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):  # start of frame
                h, w = struct.unpack(">HH", data[pos + 5:pos + 9])
                return w, h
            pos += 2 + length
    return None


def _to_unit_float(arr, path):
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535.0
    if arr.dtype in (np.float32, np.float64):
        return np.clip(arr.astype(np.float32), 0.0, 1.0)
    raise ImageReadError(f"unsupported pixel type {arr.dtype} in {path}")


def shrink_sides(arr, max_side, keep_aspect=False):
    """Area-reduce each side of an [H, W(, C)] array longer than max_side to max_side (the sides
    independently: for callers that resize to a square anyway; keep_aspect: both sides by the same
    factor, the long side to max_side), in the array's own dtype, so a huge image is never held as
    float. Arrays within the limit are returned as they are."""
    h, w = arr.shape[:2]
    if max_side is None or (h <= max_side and w <= max_side):
        return arr
    if keep_aspect:
        scale = max_side / max(h, w)
        nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    else:
        nh, nw = min(h, max_side), min(w, max_side)
    out = cv2.resize(arr, (nw, nh), interpolation=cv2.INTER_AREA)
    return out.reshape((nh, nw) + arr.shape[2:])


def read_image_rgb(path, max_side=None, keep_aspect=False):
    """float32 RGB [H, W, 3] in [0, 1]. Grayscale is replicated, alpha dropped, 16 bit rescaled.
    max_side, keep_aspect: see shrink_sides (applied before the float conversion)."""
    arr = shrink_sides(decode(path, max_side=max_side), max_side, keep_aspect)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    c = arr.shape[2]
    if c == 1:
        arr = np.repeat(arr, 3, axis=2)
    elif c == 3:
        arr = arr[:, :, ::-1]  # BGR -> RGB
    elif c == 4:
        arr = arr[:, :, 2::-1]  # BGRA -> RGB (alpha dropped)
    else:
        raise ImageReadError(f"image with {c} channels is not supported: {path}")
    return np.ascontiguousarray(_to_unit_float(arr, path))


def read_mask(path, max_side=None):
    """float32 [H, W] in [0, 1]. Colour masks use their brightest channel; a uint8 mask whose
    largest value is 1 is read as a 0/1 mask (not as 1/255). max_side: see shrink_sides."""
    arr = decode(path)
    if arr.ndim == 3:
        arr = arr[:, :, :3].max(axis=2) if arr.shape[2] >= 3 else arr[:, :, 0]
    if arr.dtype == np.uint8 and arr.max() <= 1:
        return shrink_sides(arr.astype(np.float32), max_side)
    return _to_unit_float(shrink_sides(arr, max_side), path)


def _png_palette(data):
    """(colour type, palette [N, 3] RGB or None) of a PNG byte string."""
    pos, ctype, palette = 8, None, None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            ctype = body[9]
        elif kind == b"PLTE":
            palette = np.frombuffer(body, np.uint8).reshape(-1, 3)
        elif kind == b"IDAT":
            break
        pos += 12 + length
    return ctype, palette


def read_label_map(path):
    """int64 [H, W] of stored label values: palette indices for palette PNGs (OpenCV expands
    palettes to colours, so they are mapped back through the PLTE chunk), the raw value for 8/16-bit
    grayscale."""
    data = read_file_bytes(path)
    arr = decode(path, data)
    if data[:8] == _PNG_SIGNATURE:
        ctype, palette = _png_palette(data)
        if ctype == 3 and palette is not None:
            rgb = arr[:, :, 2::-1].astype(np.int64) if arr.ndim == 3 else np.repeat(arr[:, :, None], 3, 2).astype(np.int64)
            keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
            pal = palette.astype(np.int64)
            pal_keys = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
            used, inverse = np.unique(keys, return_inverse=True)
            lut = np.empty(len(used), np.int64)
            for j, key in enumerate(used):
                idx = np.flatnonzero(pal_keys == key)
                if len(idx) != 1:
                    why = "not in" if len(idx) == 0 else "listed more than once in"
                    raise ImageReadError(f"colour #{int(key):06x} is {why} the palette; cannot recover "
                                         f"label values: {path}")
                lut[j] = idx[0]
            return lut[inverse].reshape(keys.shape)
    if arr.ndim == 3:
        if arr.shape[2] >= 3 and not (np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])):
            raise ImageReadError(f"label map has colour pixels (expected one channel or a palette): {path}")
        arr = arr[:, :, 0]
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageReadError(f"label map must be 8 or 16 bit, got {arr.dtype}: {path}")
    return arr.astype(np.int64)


def resize(arr, size, kind):
    """Resize an [H, W(, C)] array to size x size. kind: 'image'/'mask' (area when shrinking,
    bilinear when growing) or 'labels' (nearest)."""
    h, w = arr.shape[:2]
    if (h, w) == (size, size):
        return arr
    if kind == "labels":
        interp = cv2.INTER_NEAREST
        if arr.dtype == np.int64:  # cv2 cannot resize int64
            return arr[np.clip(((np.arange(size) + 0.5) * h / size).astype(np.int64), 0, h - 1)][
                :, np.clip(((np.arange(size) + 0.5) * w / size).astype(np.int64), 0, w - 1)]
    else:
        interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(arr, (size, size), interpolation=interp)
    return out.reshape((size, size) + arr.shape[2:])


def write_palette_png(path, labels, palette):
    """Write an 8-bit palette PNG (the format of VKITTI2 instance maps): `labels` uint8 [H, W],
    `palette` [N, 3] RGB. OpenCV cannot write palette PNGs; this is a minimal writer."""
    import zlib

    labels = np.ascontiguousarray(labels, np.uint8)
    h, w = labels.shape
    raw = b"".join(b"\x00" + labels[r].tobytes() for r in range(h))  # filter type 0 per row

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    data = (_PNG_SIGNATURE + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 3, 0, 0, 0))
            + chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)
