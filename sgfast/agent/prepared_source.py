"""Adapter from `sgfast prepare`'s file (sgfast.data.prepared.PreparedDataset) to the agent's
in-memory uint8 targets: validation uses the file's test split, or a seeded random `val_fraction`
of the images when the file holds no test images. A file with one record per instance (`prepare
--instances`) keeps the records of one image on one side of the split, and weights each instance
by its share of its image's instance pixels (drawn in proportion to its area, paper Sec. 5)."""
from __future__ import annotations

import torch


def load(path, val_fraction=0.1, seed=0):
    """(images [N,3,S,S], masks [N,1,S,S], boxes [N,4], gbp [N,1,S,S], val_ids, weights) as uint8 /
    float; weights [N] float64, or None for a file of one record per image."""
    from sgfast.data.prepared import PreparedDataset

    ds = PreparedDataset(path, uint8=True)
    n = len(ds)
    if n < 2:
        raise ValueError(f"sgfast: {path} holds {n} images; the agent needs at least 2 (train and validation)")
    rec = ds.batch(torch.arange(n))
    per_instance = bool(ds.header.get("instances", False))
    image_ids = rec["image_id"].long() if per_instance else torch.arange(n)
    test = torch.nonzero(~rec["train"]).flatten()
    if 0 < len(test) < n:
        val_ids = test
    else:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        images = image_ids.unique()
        k = min(len(images) - 1, max(1, round(len(images) * val_fraction)))
        if k < 1:
            raise ValueError(f"sgfast: {path} holds instances of {len(images)} image; the agent needs at least 2")
        val_images = images[torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:k]]
        val_ids = torch.nonzero(torch.isin(image_ids, val_images)).flatten()
    weights = None
    if per_instance:
        area = rec["mask"].flatten(1).double().sum(1)
        total = torch.zeros(int(image_ids.max()) + 1, dtype=torch.float64).index_add_(0, image_ids, area)
        weights = area / total[image_ids].clamp(min=1e-12)
    return rec["image"], rec["mask"], rec["box"].float(), rec["gbp"], val_ids, weights
