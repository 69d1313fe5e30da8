"""Image tensors: the one square resize of the painting and data layers, and the conversion of a
[3, H, W] float tensor in [0, 1] to the uint8 [H, W, 3] array that image files hold (and the
rounding to its 256 levels that the agent's inputs share with them)."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def resize_to(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """[B, C, H, W] float in [0, 1] -> [B, C, h, w]; bilinear, antialiased (an area-like average)
    when a side shrinks, so a large photo is not aliased; clamped to [0, 1]."""
    if x.shape[-2:] == (h, w):
        return x
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False,
                         antialias=x.shape[-1] > w or x.shape[-2] > h).clamp(0, 1)


def resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """resize_to a size x size square."""
    return resize_to(x, size, size)


def on_uint8_levels(t: torch.Tensor) -> torch.Tensor:
    """t in [0, 1] rounded to multiples of 1/255: what a uint8 image file would give back, so that
    maps the agent sees match those it was trained on and those a painting's files store."""
    return (t * 255).round() / 255


def to_u8_hwc(t: torch.Tensor) -> np.ndarray:
    """[3, H, W] float in [0, 1] -> uint8 [H, W, 3] (rounded, clipped), on the CPU."""
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
