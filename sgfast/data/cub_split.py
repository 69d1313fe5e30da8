"""One split of a dataset in the CUB-200-2011 layout (real CUB or `sgfast make-dataset birds`) with
each item's image id and, optionally, the mask of its distinguishing parts: what `sgfast prepare`
reads, and the training layer's segmenter/expert data (sgfast.train.cub_data) builds on."""
from __future__ import annotations

import os

import torch

from sgfast.cli_errors import UsageError


class NoParts(Exception):
    """The dataset has no part masks."""


def distinguishing_labels(dataset_dir):
    """Part-map labels of the distinguishing parts, from part_masks.txt ("id name flag" lines)."""
    path = os.path.join(dataset_dir, "part_masks.txt")
    if not os.path.isfile(path):
        raise NoParts(path)
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    return [int(r[0]) for r in rows if len(r) >= 3 and r[2] == "1"]


class _Split(torch.utils.data.Dataset):
    """A CUB-layout split with the dataset's image id per item, and (parts=True) the part map
    turned into a [1, S, S] mask of the distinguishing parts."""

    def __init__(self, dataset_dir, split, size, parts):
        from sgfast.data import CUB200
        self.ds = CUB200(dataset_dir, split=split, size=size, parts=parts or None)
        self.distinguishing = distinguishing_labels(dataset_dir) if parts else None
        if parts and not self.ds.has_parts:
            raise NoParts(dataset_dir)
        self.class_names = list(self.ds.classes)
        self.num_classes = len(self.class_names)

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        item = self.ds[i]
        item["image_id"] = int(self.ds.ids[i])
        if self.distinguishing is not None:
            lab = torch.as_tensor(item["parts"])
            item["parts"] = torch.isin(lab, torch.tensor(self.distinguishing, dtype=lab.dtype)).float()[None]
        return item


def open_split(dataset_dir, split, size, parts=False):
    """One split ("train", "test", "all") of a CUB-layout dataset (sgfast.data.CUB200) at size. A
    missing or malformed dataset is a UsageError (a SystemExit: no traceback)."""
    from sgfast.data import DatasetFormatError, ImageReadError
    if not os.path.isdir(dataset_dir):
        raise UsageError(f"dataset folder not found: {dataset_dir}")
    try:
        return _Split(dataset_dir, split, size, parts)
    except (DatasetFormatError, ImageReadError) as exc:
        raise UsageError(str(exc)) from exc
