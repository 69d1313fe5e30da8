"""Eager reference of aligned_crop: the spatial-transformer crop of the paper (Eq. 8-10, 21).

This is the definition the fused kernel is tested against: affine_grid + grid_sample with
align_corners=False, bilinear, zeros padding, exactly as the authors' PyTorch code crops.
"""
import torch
import torch.nn.functional as F

from sgfast.op_args import crop_size


def crop_theta(boxes: torch.Tensor) -> torch.Tensor:
    """boxes [B, 4] = (x, y, w, h) normalised, x horizontal -> affine_grid theta [B, 2, 3] (Eq. 21)."""
    x, y, w, h = boxes.unbind(1)
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([w, zero, 2 * x + w - 1], 1), torch.stack([zero, h, 2 * y + h - 1], 1)], 1)


def aligned_crop(x: torch.Tensor, boxes: torch.Tensor, size, mask: torch.Tensor = None) -> torch.Tensor:
    """Crop box b of image b, resampled to `size`: [B, C, H, W] -> [B, C, h, w].

    `mask` [B, 1, H, W] (optional) multiplies the image before cropping (the authors crop X * S).
    """
    out_h, out_w = crop_size(size)
    B, C = x.shape[:2]
    src = x if mask is None else x * mask.to(x.dtype)
    if B == 0:
        return src.new_zeros(B, C, out_h, out_w)
    grid = F.affine_grid(crop_theta(boxes.to(x.dtype)), [B, C, out_h, out_w], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
