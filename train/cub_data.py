"""The data of `sgfast train-segmenter` and `sgfast train-expert`: a dataset in the CUB-200-2011
layout (real CUB or `sgfast make-dataset birds`), read by sgfast.data.cub_split (also the reader of
`sgfast prepare`).

A split is decoded once into uint8 tensors held in memory (a few hundred MB at most for the sizes
these small models use), so an epoch costs no image decoding; flips are applied to the tensors.
The batch order comes from a generator whose state goes into the checkpoint (BatchOrder), so a
resumed run draws the same batches.
"""
from __future__ import annotations

import os

import torch

from sgfast.cli_errors import UsageError
from sgfast.data.boxes import mirror_boxes, mirror_rows
from sgfast.data.cub_split import NoParts, distinguishing_labels, open_split  # noqa: F401


def load_split(dataset_dir, split, size, limit=None, parts=False, progress=True):
    """Decode a split into memory: dict(images uint8 [N, 3, S, S], masks uint8 [N, 1, S, S],
    boxes float [N, 4], labels long [N], image_ids long [N], num_classes, class_names
    [, parts uint8 [N, 1, S, S]: union of the distinguishing parts])."""
    ds = open_split(dataset_dir, split, size, parts)
    n = len(ds) if limit is None else min(limit, len(ds))
    if n == 0:
        raise UsageError(f"the {split} split of {dataset_dir} is empty")
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    masks = torch.empty(n, 1, size, size, dtype=torch.uint8)
    part = torch.empty(n, 1, size, size, dtype=torch.uint8) if parts else None
    boxes = torch.empty(n, 4)
    labels = torch.empty(n, dtype=torch.long)
    ids = torch.empty(n, dtype=torch.long)
    it = range(n)
    if progress:
        from tqdm import tqdm
        it = tqdm(it, desc=f"load {split}", leave=False, dynamic_ncols=True)
    for i in it:
        s = ds[i]
        images[i] = (s["image"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        masks[i] = (s["mask"] * 255 + 0.5).clamp(0, 255).to(torch.uint8)
        boxes[i] = s["box"]
        labels[i] = int(s["label"])
        ids[i] = int(s["image_id"])
        if parts:
            if s.get("parts") is None:
                raise NoParts(dataset_dir)
            part[i] = (torch.as_tensor(s["parts"]).float().reshape(1, size, size) * 255 + 0.5
                       ).clamp(0, 255).to(torch.uint8)
    out = dict(images=images, masks=masks, boxes=boxes, labels=labels, image_ids=ids,
               num_classes=getattr(ds, "num_classes", int(labels.max()) + 1),
               class_names=list(getattr(ds, "class_names", [])))
    if parts:
        out["parts"] = part
    return out


def to_float(u8):
    return u8.float() / 255


class BatchOrder:
    """Epoch-wise random permutations from a checkpointable generator."""

    def __init__(self, n, batch_size, seed):
        self.n, self.batch_size = n, batch_size
        self.gen = torch.Generator().manual_seed(seed)
        self.perm, self.pos = None, n

    def next(self):
        if self.pos + self.batch_size > self.n and self.perm is not None and self.pos < self.n \
                and self.n >= self.batch_size:
            self.pos = self.n  # drop the ragged tail so every batch has the same size
        if self.pos >= self.n:
            self.perm, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.perm[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx

    def state_dict(self):
        return {"gen": self.gen.get_state(), "perm": self.perm if self.perm is not None else torch.empty(0, dtype=torch.long),
                "pos": self.pos}

    def load_state_dict(self, s):
        self.gen.set_state(s["gen"])
        self.perm = s["perm"] if s["perm"].numel() else None
        self.pos = int(s["pos"])


def flip_batch(images, masks, boxes, which):
    """Horizontally flip the samples selected by `which` [B] bool; x of a box becomes 1 - x - w."""
    return (*mirror_rows(which, images, masks), mirror_boxes(boxes, which))


def draw_batch(data, order):
    """The next training batch of a split (load_split): (indices, images and masks as float in
    [0, 1], boxes), each sample flipped horizontally with probability 1/2."""
    idx = order.next()
    x, m = to_float(data["images"][idx]), to_float(data["masks"][idx])
    return (idx, *flip_batch(x, m, data["boxes"][idx], torch.rand(len(idx)) < 0.5))
