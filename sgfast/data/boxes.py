"""Boxes (x, y, w, h) in fractions of the image side: the one place that says how a box mirrors
with its image (datasets, the prepared targets, Ψ's flip averaging and the trainers use it), and
how the chosen samples of a batch of maps are mirrored with them."""
from __future__ import annotations

import torch


def mirror_boxes(boxes, which=None):
    """The boxes of the horizontally mirrored images: x becomes 1 - x - w (y, w, h stay).

    boxes: a tensor or numpy array [..., 4]; which: optional bool tensor [B] for boxes [B, 4],
    mirroring only those rows. Returns a new array; the input is left as it is."""
    out = boxes.clone() if torch.is_tensor(boxes) else boxes.copy()
    mirrored = 1 - boxes[..., 0] - boxes[..., 2]
    out[..., 0] = mirrored if which is None else torch.where(which, mirrored, boxes[..., 0])
    return out


def mirror_rows(which, *maps):
    """The maps [B, ..., W] with the samples selected by `which` [B] bool mirrored horizontally
    (the last axis), as a tuple in the order given; the inputs are left as they are."""
    return tuple(torch.where(which.view(-1, *[1] * (m.dim() - 1)), m.flip(-1), m) for m in maps)
