"""Adapter from `sgfast prepare`'s file (sgfast.data.prepared.PreparedDataset) to the agent's
in-memory uint8 targets: validation uses the file's test split, or a seeded random `val_fraction`
of the images when the file holds no test images."""
from __future__ import annotations

import torch


def load(path, val_fraction=0.1, seed=0):
    """(images [N,3,S,S], masks [N,1,S,S], boxes [N,4], gbp [N,1,S,S], val_ids) as uint8 / float."""
    from sgfast.data.prepared import PreparedDataset

    ds = PreparedDataset(path, uint8=True)
    n = len(ds)
    if n < 2:
        raise ValueError(f"sgfast: {path} holds {n} images; the agent needs at least 2 (train and validation)")
    rec = ds.batch(torch.arange(n))
    test = torch.nonzero(~rec["train"]).flatten()
    if 0 < len(test) < n:
        val_ids = test
    else:
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must lie in (0, 1), got {val_fraction}")
        k = min(n - 1, max(1, round(n * val_fraction)))
        val_ids = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]
    return rec["image"], rec["mask"], rec["box"].float(), rec["gbp"], val_ids
