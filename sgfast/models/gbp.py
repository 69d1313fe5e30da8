"""Guided backpropagation maps G (paper Sec. 4.3; Springenberg et al.).

Guided backprop is ordinary backprop from the predicted class score to the input, except that
every ReLU passes back only positive gradients at positions where its input was positive:
`grad_in = grad_out.clamp(min=0) * (x > 0)`. The map is sum_c |d score / d input|, normalised per
image to (g - min) / (p99 - min) clipped to [0, 1], pasted back from the expert's box crop onto the
canvas and multiplied by the foreground mask (binarised at 0.5, as the authors' preprocess.py does).
"""
import contextlib

import torch
import torch.nn as nn

from sgfast.models.expert import expert_input, paste_boxes


class GuidedReLU(torch.autograd.Function):
    """ReLU whose backward also zeroes negative incoming gradients (the 'guided' rule)."""

    @staticmethod
    def forward(ctx, x):
        y = x.clamp(min=0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad.clamp(min=0) * (y > 0).to(grad.dtype)


def _guided_forward(x):
    return GuidedReLU.apply(x)


@contextlib.contextmanager
def guided_relus(model: nn.Module):
    """Within the block every nn.ReLU of `model` runs GuidedReLU (restored afterwards)."""
    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    if not relus:
        raise ValueError("guided backprop needs nn.ReLU modules in the model; found none "
                         "(functional relus cannot be intercepted)")
    for m in relus:
        m.forward = _guided_forward  # instance attribute shadows nn.ReLU.forward
    try:
        yield
    finally:
        for m in relus:
            del m.forward


def guided_gradients(model, x, target=None):
    """Guided input gradients of the target class score (argmax when target is None).

    x [B, C, H, W] -> (grad [B, C, H, W], target [B]). The model should be in eval mode.
    """
    x = x.detach().requires_grad_(True)
    with guided_relus(model), torch.enable_grad():
        logits = model(x)
        if target is None:
            target = logits.argmax(1)
        score = logits.gather(1, target.view(-1, 1)).sum()  # images are independent in eval mode
        (grad,) = torch.autograd.grad(score, x)
    return grad, target


def normalise_map(g, q=0.99):
    """(g - min) / (quantile_q - min) clipped to [0, 1], per image. g [B, 1, H, W]."""
    flat = g.flatten(1)
    lo = flat.min(1).values
    hi = torch.quantile(flat, q, dim=1)
    scale = (hi - lo).clamp(min=1e-12)
    out = ((flat - lo[:, None]) / scale[:, None]).clamp(0, 1)
    out = torch.where((hi - lo)[:, None] > 1e-12, out, torch.zeros_like(out))  # flat map -> zero
    return out.view_as(g)


def gbp_maps(expert, images, masks, boxes, batch_size=64, binarize_mask=True):
    """G for a batch: images [B, 3, S, S] in [0, 1], masks [B, 1, S, S], boxes [B, 4].

    Returns (maps [B, 1, S, S] in [0, 1], zero outside the mask; predicted classes [B]). The
    expert sees the masked box crop (sgfast.models.expert.expert_input); the map is pasted back into
    the box so it is aligned with `images`.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"gbp_maps: images must be [B, 3, S, S], got {tuple(images.shape)}")
    if masks.shape != (images.shape[0], 1, *images.shape[-2:]):
        raise ValueError(f"gbp_maps: masks must be [B, 1, H, W] matching images, got {tuple(masks.shape)}")
    was_training = expert.training
    expert.eval()
    maps, preds = [], []
    size = images.shape[-1]
    gate = (masks > 0.5).to(images.dtype) if binarize_mask else masks
    try:
        for s in range(0, images.shape[0], batch_size):
            sl = slice(s, s + batch_size)
            crops = expert_input(images[sl], masks[sl], boxes[sl], expert.config.crop)
            grad, pred = guided_gradients(expert, crops)
            g = normalise_map(grad.abs().sum(1, keepdim=True))
            g = paste_boxes(g, boxes[sl], size).clamp(0, 1) * gate[sl]
            maps.append(g.detach())
            preds.append(pred)
    finally:
        expert.train(was_training)
    if not maps:
        return images.new_zeros(0, 1, *images.shape[-2:]), torch.zeros(0, dtype=torch.long)
    return torch.cat(maps), torch.cat(preds)


def part_concentration(maps, fg_masks, part_masks):
    """How much more of G falls on the parts than their share of the foreground area.

    (sum G over parts / sum G) / (part pixels in the foreground / foreground pixels), pooled over
    the batch. maps, fg_masks, part_masks: [B, 1, H, W]. > 1 means G prefers the parts.
    """
    fg = fg_masks > 0.5
    parts = (part_masks > 0.5) & fg
    mass_share = (maps * parts).sum() / maps.sum().clamp(min=1e-12)
    area_share = parts.sum().float() / fg.sum().clamp(min=1).float()
    return float(mass_share / area_share.clamp(min=1e-12))
