"""Per-image distances between a painting and its target, shared by training, evaluation and the
benchmarks: L2 (the baseline's `dist`: mean over C, H, W of the squared difference) and the
foreground L2 (the same, weighted by the soft mask S)."""
from __future__ import annotations

import torch


def l2(target: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] x2 -> [B] mean squared difference."""
    return ((target - canvas) ** 2).mean((1, 2, 3))


def fg_l2(target: torch.Tensor, canvas: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W] x2, mask [B, 1, H, W] in [0, 1] -> [B] squared difference weighted by the mask
    (0 for an empty mask)."""
    sq = (target - canvas) ** 2
    return (sq * mask).sum((1, 2, 3)) / (3 * mask.sum((1, 2, 3)) + 1e-8)
