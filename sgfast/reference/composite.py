"""Eager reference of bi-level compositing (paper Eq. 3-4; the baseline's `decode` loop).

Plain PyTorch, differentiable in canvas, alpha and color, any floating dtype (float64 for
gradcheck). It is the test oracle of sgfast.ops.composite and the path used without the extension.
It stores what autograd needs for every stroke (K intermediate canvases); the fused op does not.
"""
import torch


def _mask_factors(alpha, mask, layer):
    """Per-stroke colour gate m_k, broadcastable to [B, K, 1, H, W], or None when there is no mask.

    Foreground strokes (layer[k] true) are gated by the mask S, background ones by 1 - S. A mask
    without a layer makes every stroke a foreground stroke. Without a mask, layer is ignored.
    """
    if mask is None:
        return None
    k = alpha.shape[1]
    if layer is None:
        fg = torch.ones(k, dtype=torch.bool, device=alpha.device)
    else:
        fg = torch.as_tensor(layer, dtype=torch.bool, device=alpha.device).reshape(k)
    s = mask.unsqueeze(1)  # [B, 1, 1, H, W]
    return torch.where(fg.view(1, k, 1, 1, 1), s, 1 - s)  # [B, K, 1, H, W]


def composite(canvas, alpha, color, mask=None, layer=None):
    """C <- C * (1 - alpha_k) + alpha_k * color_k * m_k for k = 0..K-1; returns the final canvas.

    canvas [B, 3, H, W], alpha [B, K, H, W], color [B, K, 3], mask [B, 1, H, W] or None,
    layer [K] bool or None.
    """
    m = _mask_factors(alpha, mask, layer)
    for k in range(alpha.shape[1]):
        a = alpha[:, k : k + 1]  # [B, 1, H, W]
        col = color[:, k, :, None, None]  # [B, 3, 1, 1]
        paint = a * col if m is None else a * col * m[:, k]
        canvas = canvas * (1 - a) + paint
    return canvas


def composite_frames(canvas, alpha, color, mask=None, layer=None):
    """Every intermediate canvas, [B, K, 3, H, W]: frame k is the canvas after stroke k."""
    m = _mask_factors(alpha, mask, layer)
    frames = []
    for k in range(alpha.shape[1]):
        a = alpha[:, k : k + 1]
        col = color[:, k, :, None, None]
        paint = a * col if m is None else a * col * m[:, k]
        canvas = canvas * (1 - a) + paint
        frames.append(canvas)
    if not frames:
        b, _, h, w = canvas.shape
        return canvas.new_empty((b, 0, 3, h, w))
    return torch.stack(frames, dim=1)
