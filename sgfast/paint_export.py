"""Writers for the painting outputs: PNG, GIF (own encoder), MP4 (cv2), stroke JSON and SVG.

Everything returns bytes (or writes into a folder the caller renames into place), so a painting's
outputs appear all at once or not at all. Images are uint8 RGB [H, W, 3] numpy arrays.
"""
from __future__ import annotations

import base64
import json
import os
import struct

import numpy as np

STROKE_FORMAT = "sgfast-strokes"
STROKE_VERSION = 1


# --------------------------------------------------------------------------- PNG

def png_bytes(rgb: np.ndarray) -> bytes:
    import cv2

    img = np.ascontiguousarray(rgb[..., ::-1]) if rgb.ndim == 3 else rgb  # cv2 writes BGR
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError("could not encode PNG")
    return buf.tobytes()


# --------------------------------------------------------------------------- GIF

# A fixed 6 x 7 x 6 colour cube (252 entries, padded to 256): no per-frame palette search, and the
# same palette for every frame keeps the animation free of palette flicker.
_LEVELS = (6, 7, 6)


def _palette() -> np.ndarray:
    r, g, b = (np.round(np.linspace(0, 255, n)).astype(np.uint8) for n in _LEVELS)
    cube = np.stack(np.meshgrid(r, g, b, indexing="ij"), -1).reshape(-1, 3)
    return np.concatenate([cube, np.zeros((256 - len(cube), 3), np.uint8)])


def _quantise(rgb: np.ndarray) -> np.ndarray:
    x = rgb.astype(np.float32) / 255.0
    idx = [np.rint(x[..., c] * (n - 1)).astype(np.int32) for c, n in enumerate(_LEVELS)]
    return (idx[0] * (_LEVELS[1] * _LEVELS[2]) + idx[1] * _LEVELS[2] + idx[2]).astype(np.uint8)


def _lzw(indices: np.ndarray, min_code_size: int = 8) -> bytes:
    """GIF variable-length LZW of a flat uint8 array, packed LSB first, in 255-byte sub-blocks."""
    clear, end = 1 << min_code_size, (1 << min_code_size) + 1
    out = bytearray()
    acc = nbits = 0

    def emit(code, width):
        nonlocal acc, nbits
        acc |= code << nbits
        nbits += width
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8

    width = min_code_size + 1
    table = {}
    next_code = end + 1
    emit(clear, width)
    data = indices.tobytes()
    prefix = data[0] if data else None
    for ch in data[1:]:
        key = (prefix, ch)
        code = table.get(key)
        if code is not None:
            prefix = code
            continue
        emit(prefix, width)
        if next_code < 4096:
            table[key] = next_code
            next_code += 1
            if next_code > (1 << width) and width < 12:
                width += 1
        else:  # table full: start over
            emit(clear, width)
            table.clear()
            next_code, width = end + 1, min_code_size + 1
        prefix = ch
    if prefix is not None:
        emit(prefix, width)
    emit(end, width)
    if nbits:
        out.append(acc & 0xFF)
    blocks = bytearray([min_code_size])
    for i in range(0, len(out), 255):
        chunk = out[i:i + 255]
        blocks.append(len(chunk))
        blocks += chunk
    blocks.append(0)
    return bytes(blocks)


def gif_bytes(frames, delay_ms: int = 100, last_delay_ms: int = 1500, loop: bool = True) -> bytes:
    """Animated GIF89a of uint8 RGB frames [H, W, 3] (all the same size)."""
    frames = list(frames)
    if not frames:
        raise ValueError("gif_bytes: no frames")
    h, w = frames[0].shape[:2]
    pal = _palette()
    head = bytearray(b"GIF89a" + struct.pack("<HHBBB", w, h, 0xF7, 0, 0) + pal.tobytes())
    if loop:  # NETSCAPE2.0 application extension: loop forever
        head += b"\x21\xff\x0bNETSCAPE2.0\x03\x01\x00\x00\x00"
    for i, f in enumerate(frames):
        if f.shape[:2] != (h, w):
            raise ValueError(f"gif_bytes: frame {i} is {f.shape[:2]}, expected {(h, w)}")
        delay = (last_delay_ms if i == len(frames) - 1 else delay_ms) // 10
        head += b"\x21\xf9\x04\x00" + struct.pack("<H", delay) + b"\x00\x00"
        head += b"\x2c" + struct.pack("<HHHHB", 0, 0, w, h, 0)
        head += _lzw(_quantise(f).reshape(-1))
    head += b"\x3b"
    return bytes(head)


def gif_palette() -> np.ndarray:
    return _palette()


def gif_quantise(rgb: np.ndarray) -> np.ndarray:
    return _quantise(rgb)


# --------------------------------------------------------------------------- MP4

def write_mp4(path: str, frames, fps: float = 10.0) -> bool:
    """MP4 (mp4v) via cv2.VideoWriter; False when this OpenCV build cannot write it."""
    import cv2

    frames = list(frames)
    if not frames:
        return False
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        return False
    try:
        for f in frames:
            writer.write(np.ascontiguousarray(f[..., ::-1]))
    finally:
        writer.release()
    return os.path.isfile(path) and os.path.getsize(path) > 0


# --------------------------------------------------------------------------- strokes

def strokes_document(strokes: np.ndarray, layers, steps, mask_ids, mask_files, canvas_size: int,
                     mode: str, background=(0.0, 0.0, 0.0), source: str = "") -> dict:
    """The JSON stroke document. strokes [N, 13]; layers[i] in {"fg", "bg", "all"}; mask_ids[i]
    indexes mask_files (the gate of stroke i: S for fg, 1 - S for bg) or is None (no gate)."""
    return {
        "format": STROKE_FORMAT, "version": STROKE_VERSION,
        "about": "x0 y0 x1 y1 x2 y2 z0 z2 w0 w2 r g b in [0, 1]; x = rows, (x1, y1) relative to the "
                 "endpoints; strokes are composited in order onto the background; an fg stroke's "
                 "colour is gated by its mask S, a bg stroke's by 1 - S (paper Eq. 3-4)",
        "canvas_size": int(canvas_size), "mode": mode, "background": [float(c) for c in background],
        "source": source, "masks": list(mask_files),
        "strokes": [{"order": i, "step": int(steps[i]), "layer": layers[i],
                     "mask": None if mask_ids[i] is None else int(mask_ids[i]),
                     "params": [float(v) for v in strokes[i]]} for i in range(len(strokes))],
    }


class StrokeDocError(ValueError):
    pass


def read_strokes_document(path):
    """(doc, strokes [N, 13] float64, masks [M, h, w] float32 list) of a stroke JSON file."""
    from sgfast.data.imageio import read_mask

    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
    except FileNotFoundError:
        raise StrokeDocError(f"stroke file not found: {path}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise StrokeDocError(f"{path}: invalid JSON ({exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != STROKE_FORMAT:
        raise StrokeDocError(f"{path}: not an sgfast stroke file (format must be {STROKE_FORMAT!r})")
    try:
        strokes = np.asarray([s["params"] for s in doc["strokes"]], np.float64).reshape(-1, 13)
        layers = [s["layer"] for s in doc["strokes"]]
        mask_ids = [s.get("mask") for s in doc["strokes"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise StrokeDocError(f"{path}: malformed strokes ({exc})") from None
    if not np.isfinite(strokes).all() or (strokes.size and (strokes.min() < 0 or strokes.max() > 1)):
        raise StrokeDocError(f"{path}: stroke parameters must be finite and in [0, 1]")
    folder = os.path.dirname(os.path.abspath(path))
    masks = [read_mask(os.path.join(folder, m)) for m in doc.get("masks", [])]
    for i, m in enumerate(mask_ids):
        if m is not None and not (0 <= m < len(masks)):
            raise StrokeDocError(f"{path}: stroke {i} refers to mask {m}, the file lists {len(masks)}")
        if layers[i] not in ("fg", "bg", "all"):
            raise StrokeDocError(f"{path}: stroke {i} has layer {layers[i]!r} (fg, bg or all)")
    return doc, strokes, layers, mask_ids, masks


def svg_text(strokes: np.ndarray, layers, mask_ids, mask_pngs, size: int,
             background=(0.0, 0.0, 0.0)) -> str:
    """SVG of the strokes: one quadratic Bezier path per stroke, in order. The path's width is the
    mean of its end diameters and its opacity the mean of its end opacities (SVG strokes have one
    width and opacity); fg/bg strokes are clipped by an SVG mask made from S (embedded PNG)."""
    def col(c):
        return "#%02x%02x%02x" % tuple(int(round(float(v) * 255)) for v in c)

    s = float(size)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'width="{size}" height="{size}" viewBox="0 0 {size} {size}">',
           f'<rect width="{size}" height="{size}" fill="{col(background)}"/>']
    if mask_pngs:  # [(png of S, png of 1 - S)] per mask: luminance masks gate fg / bg strokes
        out.append("<defs>")
        for m, pair in enumerate(mask_pngs):
            for name, png in zip((f"fg{m}", f"bg{m}"), pair):
                data = base64.b64encode(png).decode("ascii")
                out.append(f'<mask id="{name}" maskUnits="userSpaceOnUse" x="0" y="0" width="{size}" '
                           f'height="{size}"><image width="{size}" height="{size}" '
                           f'preserveAspectRatio="none" xlink:href="data:image/png;base64,{data}"/></mask>')
        out.append("</defs>")
    for i, p in enumerate(strokes):
        x0, y0, x1, y1, x2, y2, z0, z2, w0, w2 = p[:10]
        # rasterize_strokes(mode="exact") geometry: control points (255 v + 0.5) / 256 of the side,
        # the middle one relative to the ends; radius (1 + 64 z) / 256. x = rows -> SVG y.
        cx1, cy1 = x0 + (x2 - x0) * x1, y0 + (y2 - y0) * y1
        pt = [((255 * a + 0.5) / 256 * s, (255 * b + 0.5) / 256 * s) for a, b in ((x0, y0), (cx1, cy1), (x2, y2))]
        width = ((1 + 64 * z0) + (1 + 64 * z2)) / 256 * s  # mean diameter
        opacity = 0.5 * (w0 + w2)
        d = "M %.3f %.3f Q %.3f %.3f %.3f %.3f" % (pt[0][1], pt[0][0], pt[1][1], pt[1][0], pt[2][1], pt[2][0])
        gate = ""
        if mask_ids[i] is not None and layers[i] in ("fg", "bg"):
            gate = f' mask="url(#{layers[i]}{mask_ids[i]})"'
        out.append(f'<path d="{d}" fill="none" stroke="{col(p[10:13])}" stroke-width="{width:.3f}" '
                   f'stroke-linecap="round" stroke-opacity="{opacity:.4f}"{gate}/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"
