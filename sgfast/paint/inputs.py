"""Painting inputs: images (paths, arrays, tensors) as float RGB, masks as float, boxes."""
from __future__ import annotations

import os

import numpy as np
import torch

from sgfast.paint.result import PaintResult

# Sides longer than this are area-reduced when an image is read, so a huge photo is never held as
# float. paint() passes twice the largest size it resizes to; this default (for callers that pass
# none, e.g. the optimisation painter) is more than any canvas here.
DEFAULT_MAX_SIDE = 2048


def as_image(item, max_side=DEFAULT_MAX_SIDE, keep_aspect=False):
    """(name, float32 RGB [H, W, 3] in [0, 1]) from a path, a numpy array or a tensor.

    Arrays: [H, W], [H, W, C] or [C, H, W] with C = 1 (grey, replicated), 3 (RGB) or 4 (RGBA, alpha
    dropped, as for files); uint8, uint16 (/ 65535), bool or float (clipped to [0, 1], NaN refused).
    Sides longer than max_side are area-reduced (see sgfast.data.imageio.shrink_sides; keep_aspect:
    by one factor, the long side to max_side).
    """
    from sgfast.data.imageio import read_image_rgb, shrink_sides

    if isinstance(item, (str, os.PathLike)):
        path = os.fspath(item)
        return os.path.splitext(os.path.basename(path))[0], read_image_rgb(path, max_side, keep_aspect)
    arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 3, 4):
        arr = arr.transpose(1, 2, 0)  # channels first
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"image arrays must be [H, W], [H, W, C] or [C, H, W] with C in 1, 3, 4; got {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"empty image array {arr.shape}")
    if arr.dtype == bool:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype.kind == "f":
        if arr.dtype.itemsize < 4 or arr.dtype.itemsize > 8:  # cv2.resize takes float32/64 only
            arr = arr.astype(np.float32)
        if not np.isfinite(arr).all():
            raise ValueError("image array has NaN or infinite values")
    elif arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"image arrays must be uint8, uint16, bool or float, got {arr.dtype}")
    arr = shrink_sides(np.ascontiguousarray(arr[:, :, :3]), max_side, keep_aspect)
    if arr.ndim == 2:  # cv2.resize drops a single channel
        arr = arr[:, :, None]
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    if arr.dtype == np.uint8:
        return None, arr.astype(np.float32) / 255
    if arr.dtype == np.uint16:
        return None, arr.astype(np.float32) / 65535
    return None, np.clip(arr.astype(np.float32), 0, 1)


def as_mask(item, max_side=DEFAULT_MAX_SIDE):
    """float32 [H, W] in [0, 1] from a path or an array; sides over max_side area-reduced."""
    from sgfast.data.imageio import read_mask, shrink_sides

    if isinstance(item, (str, os.PathLike)):
        return read_mask(os.fspath(item), max_side)
    arr = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else np.asarray(item)
    arr = arr.squeeze()
    if arr.ndim != 2 or arr.size == 0:
        raise ValueError(f"masks must be [H, W], got {arr.shape}")
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("mask array has NaN or infinite values")
    return np.clip(shrink_sides(arr, max_side), 0, 1)


def read_box(item):
    """(x, y, w, h) normalised, x horizontal: a sequence of 4 numbers or a text file holding them."""
    if isinstance(item, (str, os.PathLike)):
        with open(item, encoding="utf-8") as fh:
            vals = [float(v) for v in fh.read().replace(",", " ").split()]
    else:
        vals = [float(v) for v in item]
    if len(vals) != 4 or not all(0 <= v <= 1 for v in vals) or vals[2] <= 0 or vals[3] <= 0:
        raise ValueError(f"a box is 4 numbers x y w h normalised to [0, 1] (w, h > 0), got {vals}")
    return torch.tensor(vals, dtype=torch.float32)


def mask_box(mask: torch.Tensor) -> torch.Tensor:
    """Bounding box (x, y, w, h) normalised of mask > 0.5 [H, W]; the whole image when empty."""
    h, w = mask.shape
    ys, xs = torch.nonzero(mask > 0.5, as_tuple=True)
    if ys.numel() == 0:
        return torch.tensor([0.0, 0.0, 1.0, 1.0])
    return torch.tensor([xs.min() / w, ys.min() / h, (xs.max() + 1 - xs.min()) / w,
                         (ys.max() + 1 - ys.min()) / h], dtype=torch.float32)


def as_image_list(images) -> list:
    """One image (a path, an [H, W(, C)] array, a [C, H, W] tensor) or a sequence / [B, ...] batch of them
    -> a list of images."""
    if isinstance(images, (str, os.PathLike, np.ndarray, torch.Tensor)) and not (
            isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4):
        return [images]
    return list(images)


def load_images(images, max_side=DEFAULT_MAX_SIDE, mode="sg", keep_aspect=False):
    """Read every image (see as_image). Returns (results, loaded): results has one entry per image,
    a PaintResult with .error for an image that could not be read and None for the others;
    loaded lists (index, name, float RGB [H, W, 3]) of the readable ones (unnamed arrays are
    image_0000, image_0001, ... by position)."""
    results, loaded = [None] * len(images), []
    for i, item in enumerate(images):
        default = f"image_{i:04d}"
        try:
            name, img = as_image(item, max_side, keep_aspect)
            loaded.append((i, name or default, img))
        except (OSError, ValueError) as exc:
            path = isinstance(item, (str, os.PathLike))
            name = os.path.splitext(os.path.basename(os.fspath(item)))[0] if path else default
            results[i] = PaintResult(name=name, error=str(exc), mode=mode)
    return results, loaded
