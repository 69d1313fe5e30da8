"""Writers for the painting outputs: PNG (OpenCV), GIF (Pillow, one adaptive palette), MP4 (H.264 by
the ffmpeg of imageio-ffmpeg), stroke JSON and SVG.

Everything returns bytes (the caller writes them into a folder it renames into place) or, for the
MP4, writes a temporary file renamed into place, so a painting's outputs appear all at once or not
at all, and a failed write raises. Images are uint8 RGB [H, W, 3] numpy arrays.
"""
from __future__ import annotations

import base64
import json
import os
import shutil

import numpy as np

from sgfast.data.tensor_images import to_u8_hwc
from sgfast.strokes import SHAPE_PARAMS, STROKE_PARAMS

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

GIF_COLOURS = 256  # the most a GIF palette holds
_PALETTE_PIXELS = 1 << 20  # the palette is chosen from frames sampled evenly (the last always) up to
_PALETTE_FRAMES = 64       # this many pixels and frames


def _check_frames(frames, what):
    frames = [np.asarray(f) for f in frames]
    if not frames:
        raise ValueError(f"{what}: no frames")
    h, w = frames[0].shape[:2]
    for i, f in enumerate(frames):
        if f.dtype != np.uint8 or f.ndim != 3 or f.shape[2] != 3:
            raise ValueError(f"{what}: frame {i} must be uint8 RGB [H, W, 3], got {f.dtype} {f.shape}")
        if f.shape[:2] != (h, w):
            raise ValueError(f"{what}: frame {i} is {f.shape[:2]}, expected {(h, w)}")
    return frames


def gif_palette_image(frames):
    """The GIF's one palette (a Pillow "P" image): the median cut of the frames' colours, adaptive to
    this painting. One palette for all the frames keeps the animation free of palette flicker."""
    from PIL import Image

    frames = _check_frames(frames, "gif_palette_image")
    h, w = frames[0].shape[:2]
    n = max(1, min(len(frames), _PALETTE_FRAMES, _PALETTE_PIXELS // (h * w)))
    picks = np.unique(np.linspace(len(frames) - 1, 0, n).round().astype(int))
    sample = Image.fromarray(np.concatenate([frames[i] for i in picks], 0))
    return sample.quantize(GIF_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)


def gif_bytes(frames, delay_ms: int = 100, last_delay_ms: int = 1500, loop: bool = True) -> bytes:
    """Animated GIF of uint8 RGB frames [H, W, 3] (all the same size), encoded by Pillow with one
    adaptive palette (gif_palette_image) and no dithering. Pillow merges a frame identical to the one
    before into it (their delays add up), so the animation plays the same."""
    import io

    from PIL import Image

    frames = _check_frames(frames, "gif_bytes")
    palette = gif_palette_image(frames)
    images = [Image.fromarray(f).quantize(palette=palette, dither=Image.Dither.NONE) for f in frames]
    durations = [delay_ms] * (len(images) - 1) + [last_delay_ms]
    options = {"loop": 0} if loop else {}
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], duration=durations,
                   optimize=False, **options)
    return buf.getvalue()


# --------------------------------------------------------------------------- MP4

MP4_CRF = 18  # x264 constant rate factor: near-lossless for these small, flat paintings
# RGB -> YUV by the BT.709 matrix (limited range), and the stream tagged so: players need not guess
_BT709 = ["-vf", "scale=out_color_matrix=bt709:out_range=tv,"
          "setparams=color_primaries=bt709:color_trc=bt709:colorspace=bt709:range=tv"]


def _even(frame: np.ndarray) -> np.ndarray:
    """Pad an odd height / width by repeating the last row / column (yuv420p needs even sides)."""
    h, w = frame.shape[:2]
    if h % 2 or w % 2:
        frame = np.pad(frame, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
    return np.ascontiguousarray(frame)


def write_mp4(path: str, frames, fps: float = 10.0) -> None:
    """H.264 MP4 (yuv420p, BT.709, +faststart: plays in browsers) of uint8 RGB frames [H, W, 3],
    encoded by the ffmpeg that imageio-ffmpeg ships. Odd sides are padded to even ones. Written to a
    temporary name and renamed into place; any failure (the encoder, a full disk) raises and leaves
    no file."""
    import imageio.v2 as imageio
    import imageio_ffmpeg

    from sgfast.io import atomic_path

    frames = [_even(f) for f in _check_frames(frames, "write_mp4")]
    with atomic_path(path, suffix=".tmp.mp4") as tmp:  # imageio picks its writer by the extension
        writer = imageio.get_writer(
            tmp, format="FFMPEG", mode="I", fps=fps, codec="libx264", pixelformat="yuv420p",
            quality=None, macro_block_size=1, ffmpeg_log_level="error",
            output_params=["-crf", str(MP4_CRF), "-movflags", "+faststart", *_BT709])
        try:
            for f in frames:
                writer.append_data(f)
        finally:
            writer.close()
        # imageio-ffmpeg does not check ffmpeg's exit status: decode the file to know it is whole.
        try:
            n, _ = imageio_ffmpeg.count_frames_and_secs(tmp)
        except (RuntimeError, OSError) as exc:
            raise RuntimeError(f"write_mp4: ffmpeg did not write a readable {path}: {exc}") from None
        if n != len(frames):
            raise RuntimeError(f"write_mp4: {path} holds {n} frames, {len(frames)} were written")


# --------------------------------------------------------------------------- strokes

def strokes_document(strokes: np.ndarray, layers, steps, mask_ids, mask_files, canvas_size: int,
                     mode: str, background=(0.0, 0.0, 0.0), source: str = "", height=None, width=None,
                     softness=None) -> dict:
    """The JSON stroke document. strokes [N, 13]; layers[i] in {"fg", "bg", "all"}; mask_ids[i]
    indexes mask_files (the gate of stroke i: S for fg, 1 - S for bg) or is None (no gate).
    softness given: a render_strokes painting ("renderer": "render_strokes") of height x width."""
    extra = {} if softness is None else {"renderer": "render_strokes", "softness": float(softness),
                                         "height": int(height), "width": int(width)}
    return {**extra,
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
        strokes = np.asarray([s["params"] for s in doc["strokes"]], np.float64).reshape(-1, STROKE_PARAMS)
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
             background=(0.0, 0.0, 0.0), height=None) -> str:
    """SVG of the strokes: one quadratic Bezier path per stroke, in order. The path's width is the
    mean of its end diameters and its opacity the mean of its end opacities (SVG strokes have one
    width and opacity); fg/bg strokes are clipped by an SVG mask made from S (embedded PNG)."""
    def col(c):
        return "#%02x%02x%02x" % tuple(int(round(float(v) * 255)) for v in c)

    # size is the width; height (default: size) the rows. Rows scale with the height, columns with
    # the width and radii with sqrt(height width), as render_strokes does (the same on a square).
    rows = size if height is None else height
    s, sr, sd = float(size), float(rows), (float(size) * float(rows)) ** 0.5
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" '
           f'width="{size}" height="{rows}" viewBox="0 0 {size} {rows}">',
           f'<rect width="{size}" height="{rows}" fill="{col(background)}"/>']
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
        pt = [((255 * a + 0.5) / 256 * sr, (255 * b + 0.5) / 256 * s) for a, b in ((x0, y0), (cx1, cy1), (x2, y2))]
        width = ((1 + 64 * z0) + (1 + 64 * z2)) / 256 * sd  # mean diameter
        opacity = 0.5 * (w0 + w2)
        d = "M %.3f %.3f Q %.3f %.3f %.3f %.3f" % (pt[0][1], pt[0][0], pt[1][1], pt[1][0], pt[2][1], pt[2][0])
        gate = ""
        if mask_ids[i] is not None and layers[i] in ("fg", "bg"):
            gate = f' mask="url(#{layers[i]}{mask_ids[i]})"'
        out.append(f'<path d="{d}" fill="none" stroke="{col(p[SHAPE_PARAMS:])}" stroke-width="{width:.3f}" '
                   f'stroke-linecap="round" stroke-opacity="{opacity:.4f}"{gate}/>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- a painting's folder

def fit_frame(frame, long_side):
    """A uint8 frame of any shape scaled so its long side is long_side, the aspect kept (area
    average when shrinking, nearest when growing)."""
    import cv2

    h, w = frame.shape[:2]
    if long_side is None or max(h, w) == long_side:
        return frame
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)


def upscale_frame(frame, side):
    """A square uint8 frame scaled to side x side by nearest neighbour (a small canvas stays crisp)."""
    import cv2

    if side is None or frame.shape[0] == side:
        return frame
    return cv2.resize(frame, (side, side), interpolation=cv2.INTER_NEAREST)


def write_result(result, folder, size=None, supersample=4, frame_size=256, video=True, device="cpu", ops="fused"):
    """Write one PaintResult into `folder` atomically (temp folder + rename): painting, target, layers,
    masks, strokes JSON/SVG, the exact re-render at `size` (if given), progress GIF/MP4 (frames
    scaled to frame_size, nearest). Returns the file list."""
    from sgfast.io import make_temp_dir, remove_stale_temps
    from sgfast.paint.rerender import result_exact

    parent = os.path.dirname(os.path.abspath(folder))
    os.makedirs(parent, exist_ok=True)
    # 0777 less the umask, as a normally created folder (tempfile.mkdtemp's would stay 0700); the
    # partial folder of a killed earlier run is removed first
    prefix = "." + os.path.basename(folder) + "."
    remove_stale_temps(parent, prefix, ".tmp")
    tmp = make_temp_dir(parent, prefix=prefix, suffix=".tmp")
    try:
        def put(name, data):
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)

        put("painting.png", png_bytes(to_u8_hwc(result.canvas)))
        put("target.png", png_bytes(to_u8_hwc(result.target)))
        mask_files, mask_pairs = [], []
        if result.mode == "sg":
            put("fg.png", png_bytes(to_u8_hwc(result.fg_layer)))
            put("bg.png", png_bytes(to_u8_hwc(result.bg_layer)))
            single = result.masks.shape[0] == 1
            for i, m in enumerate(result.gate_masks):
                name = "mask.png" if single else f"mask_{i}.png" if i < len(result.masks) else "mask_union.png"
                m8 = (m.clamp(0, 1) * 255).round().byte().numpy()
                put(name, png_bytes(m8))
                mask_files.append(name)
                mask_pairs.append((png_bytes(m8), png_bytes(255 - m8)))
        height = int(result.canvas.shape[-2])
        background = result.background or (0.0, 0.0, 0.0)
        doc = strokes_document(result.strokes, result.layers, result.steps, result.mask_ids, mask_files,
                               result.size, result.mode, background=background, source=result.name,
                               height=height, width=result.size, softness=result.softness)
        put("strokes.json", json.dumps(doc, indent=1).encode())
        put("strokes.svg", svg_text(result.strokes, result.layers, result.mask_ids, mask_pairs,
                                    result.size, background=background,
                                    height=height if result.exact else None).encode())
        if size:
            put(f"painting_{size}.png", png_bytes(to_u8_hwc(result_exact(result, size, supersample, device, ops))))
        if video and result.frames:
            fit = fit_frame if result.exact else upscale_frame
            frames = [fit(f, frame_size) for f in result.frames]
            put("progress.gif", gif_bytes(frames))
            write_mp4(os.path.join(tmp, "progress.mp4"), frames)  # raises if ffmpeg fails
        files = sorted(os.listdir(tmp))
        if os.path.isdir(folder):  # replace a previous painting as a whole
            old = folder + ".old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
        return files
    finally:
        if os.path.isdir(tmp):
            shutil.rmtree(tmp, ignore_errors=True)
