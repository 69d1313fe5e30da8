"""The paper's guidance inputs of a painting: the soft foreground mask S and box (Ψ, or given masks,
boxes or instance masks) and the guided-backprop map G (the expert), at the canvas size."""
from __future__ import annotations

import torch

from sgfast.data.tensor_images import on_uint8_levels, resize_square
from sgfast.paint.inputs import as_mask, mask_box, read_box
from sgfast.paint.result import PaintError


@torch.no_grad()
def semantics(models, images, masks=None, boxes=None, instances=None):
    """S, boxes and G at the canvas size for a list of float RGB [H, W, 3] images.

    Returns per image (masks [M, S, S], boxes [M, 4], gbp [M, S, S]); M = number of instances
    (1 without instance masks). Following `sgfast prepare`, Ψ and the expert see the image at
    max(canvas, the expert's training size).
    """
    return [r[0] for r in semantic_maps(models, images, masks, boxes, instances, (models.size,))]


def semantic_maps(models, images, masks, boxes, instances, sizes):
    """semantics() with the maps at each of `sizes` (per image a list of triples, one per size):
    Ψ and the expert run once, the maps are resized from their working size."""
    from sgfast.models.gbp import gbp_maps

    size = models.size
    src = max(size, int(models.expert_meta.get("image_size", size)))
    read_side = 2 * max(src, *sizes)
    out = []
    for i, img in enumerate(images):
        x = resize_square(torch.from_numpy(img).permute(2, 0, 1)[None].to(models.device), src)
        inst = instances[i] if instances is not None else None
        if inst:
            m = torch.stack([torch.from_numpy(as_mask(p, read_side)) for p in inst])[:, None].to(models.device)
            m = resize_square(m, src)
            b = torch.stack([mask_box(mm[0].cpu()) for mm in m]).to(models.device)
        else:
            given = masks[i] if masks is not None else None
            if given is not None:
                m = resize_square(torch.from_numpy(as_mask(given, read_side))[None, None].to(models.device), src)
            elif models.segmenter is None:
                raise PaintError("no foreground mask: pass --mask files or segmenter weights (--segmenter)")
            else:
                from sgfast.models.segmenter import predict

                m, b_pred = predict(models.segmenter, x)
            box = boxes[i] if boxes is not None else None
            if box is not None:
                b = read_box(box)[None].to(models.device)
            elif given is not None:
                b = mask_box(m[0, 0].cpu())[None].to(models.device)
            else:
                b = b_pred
        g, _ = gbp_maps(models.expert, x.expand(m.shape[0], -1, -1, -1), m, b)
        # uint8 steps, as the agent saw them in training and as mask.png stores them (so an
        # exported painting re-renders identically from its files)
        q = lambda t, n: on_uint8_levels(resize_square(t, n)[:, 0])  # noqa: E731
        out.append([(q(m, n).cpu(), b.float().cpu(), q(g, n).cpu()) for n in sizes])
    return out
