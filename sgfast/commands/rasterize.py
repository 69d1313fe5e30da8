"""`sgfast rasterize STROKES.{npy,json} --out DIR`: render each stroke to a PNG.

A stroke is 10 shape numbers (x0, y0, x1, y1, x2, y2, z0, z2, w0, w2) or 13 with an RGB colour, all
in [0, 1]. Shape-only strokes are drawn dark on white (1 - alpha, the baseline generator's picture);
coloured ones as the colour composited over white with the stroke's alpha.
JSON: a list of strokes (lists of numbers), or {"strokes": [...]}; .npy: a float array [N, 10|13]
(or one stroke [10|13]).
"""
import json
import os

import numpy as np

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import check_ops, refuse_ignored, within, writable_folder


class StrokeFileError(ValueError):
    pass


def configure(parser):
    parser.add_argument("strokes", help="stroke file: .npy float array [N, 10|13] or .json list of strokes")
    parser.add_argument("--out", default="out/rasterize", help="output folder (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="image side in pixels (default: %(default)s)")
    parser.add_argument("--mode", choices=("ltp", "exact"), default="ltp",
                        help="ltp: the Learning-to-Paint generator, exact: the continuous anti-aliased stroke")
    parser.add_argument("--supersample", type=int, default=None,
                        help="samples per pixel side in exact mode (default: 4)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: %(default)s)")


def load_strokes(path) -> np.ndarray:
    """The strokes of a .npy/.json file as float64 [N, 10|13]; StrokeFileError with the reason otherwise."""
    if not os.path.isfile(path):
        raise StrokeFileError(f"stroke file not found: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        try:
            data = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as exc:
            raise StrokeFileError(f"{path}: not a readable .npy array ({exc})") from None
    elif ext == ".json":
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
        except (ValueError, UnicodeDecodeError) as exc:
            raise StrokeFileError(f"{path}: invalid JSON ({exc})") from None
        if isinstance(data, dict):
            if "strokes" not in data:
                raise StrokeFileError(f"{path}: a JSON object must have a 'strokes' list")
            data = data["strokes"]
    else:
        raise StrokeFileError(f"{path}: unsupported extension {ext!r} (expected .npy or .json)")
    try:
        arr = np.asarray(data, dtype=np.float64)
    except (ValueError, TypeError):
        raise StrokeFileError(f"{path}: strokes must be lists of 10 or 13 numbers") from None
    if arr.ndim == 1 and arr.shape[0] in (10, 13):
        arr = arr[None]
    if arr.ndim != 2 or arr.shape[1] not in (10, 13):
        raise StrokeFileError(f"{path}: expected strokes of shape [N, 10] or [N, 13], got {list(arr.shape)}")
    if not np.isfinite(arr).all():
        raise StrokeFileError(f"{path}: strokes contain NaN or inf")
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise StrokeFileError(f"{path}: stroke values must lie in [0, 1], got min {arr.min()}, max {arr.max()}")
    return arr


def render(strokes: np.ndarray, size: int, mode: str, supersample: int, device="cpu") -> np.ndarray:
    """uint8 RGB images [N, size, size, 3]."""
    import torch

    from sgfast.ops import rasterize_strokes

    params = torch.as_tensor(strokes[:, :10], dtype=torch.float32, device=device)
    alpha = rasterize_strokes(params, size, mode, supersample).cpu().numpy()[..., None].astype(np.float64)
    colour = strokes[:, None, None, 10:13] if strokes.shape[1] == 13 else np.zeros((len(strokes), 1, 1, 3))
    image = (1.0 - alpha) * 1.0 + alpha * colour  # over a white background
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


@reports_errors("rasterize")
def run(args):
    import cv2

    from sgfast.device import pick_device
    from sgfast.io import atomic_write_bytes
    from sgfast.op_args import MAX_SIZE, MAX_SUPERSAMPLE

    within("size", args.size, 1, MAX_SIZE)
    within("supersample", args.supersample, 1, MAX_SUPERSAMPLE)
    if args.mode == "ltp":
        refuse_ignored(args, ["supersample"], "with --mode ltp (it is for --mode exact)")
    supersample = 4 if args.supersample is None else args.supersample
    device = pick_device(args.device)
    check_ops("fused", device, option=None)  # rasterize runs sgfast.ops.rasterize_strokes
    try:
        strokes = load_strokes(args.strokes)
    except StrokeFileError as exc:
        raise UsageError(str(exc)) from None
    writable_folder("--out", args.out)
    images = render(strokes, args.size, args.mode, supersample, device)
    for k, image in enumerate(images):
        ok, png = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))  # cv2 writes BGR
        if not ok:
            raise RuntimeError(f"could not encode stroke {k} as PNG")  # not the user's mistake
        atomic_write_bytes(os.path.join(args.out, f"stroke_{k:04d}.png"), png.tobytes())
    print(f"sgfast rasterize: {len(images)} strokes ({args.mode}, {args.size} px) -> {args.out}")
    return 0
