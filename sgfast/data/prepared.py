"""The prepared semantic-guidance file: target image, soft mask S, box and GBP map G per image.

One file, memory-mappable (docs/prepared.md):

    bytes 0-7    magic b"SGFPREP1"
    bytes 8-15   header length L (uint64, little endian)
    bytes 16..   JSON header (UTF-8), space-padded so the records start at a multiple of 64
    then         N fixed-size records (numpy structured dtype named in the header)

Record fields: image uint8 [3, S, S] (RGB), mask uint8 [S, S] (S x 255), gbp uint8 [S, S]
(G x 255), box float32 [4] (x, y, w, h normalised, x horizontal), label int32 (0-based), pred_label
int32 (the expert's argmax, from which G was computed), image_id int32 (the dataset's id), train
uint8 (1 = train split). One record per image keeps everything an index needs in one place, so the
training loop reads a batch with one gather from the page cache.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

MAGIC = b"SGFPREP1"
FORMAT_VERSION = 1
ALIGN = 64


def record_dtype(size):
    return np.dtype([("image", "u1", (3, size, size)), ("mask", "u1", (size, size)),
                     ("gbp", "u1", (size, size)), ("box", "<f4", (4,)), ("label", "<i4"),
                     ("pred_label", "<i4"), ("image_id", "<i4"), ("train", "u1")])


def header_bytes(header: dict) -> bytes:
    """Magic + length + JSON, padded so the records start ALIGN-aligned."""
    body = json.dumps(header, sort_keys=True).encode("utf-8")
    pad = (-(16 + len(body))) % ALIGN
    body += b" " * pad
    return MAGIC + len(body).to_bytes(8, "little") + body


def to_records(size, images, masks, gbp, boxes, labels, pred_labels, image_ids, train):
    """Float tensors in [0, 1] (images [B, 3, S, S], masks / gbp [B, 1, S, S]) -> record array."""
    b = images.shape[0]
    rec = np.zeros(b, dtype=record_dtype(size))

    def u8(t):
        return (t.detach().float().clamp(0, 1) * 255 + 0.5).to(torch.uint8).cpu().numpy()

    rec["image"] = u8(images)
    rec["mask"] = u8(masks)[:, 0]
    rec["gbp"] = u8(gbp)[:, 0]
    rec["box"] = boxes.detach().float().cpu().numpy()
    rec["label"] = np.asarray(labels, dtype=np.int32)
    rec["pred_label"] = np.asarray(pred_labels, dtype=np.int32)
    rec["image_id"] = np.asarray(image_ids, dtype=np.int32)
    rec["train"] = np.asarray(train, dtype=np.uint8)
    return rec


def read_header(path):
    """(header dict, offset of the first record). Raises a clear error for anything else."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sgfast: prepared file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(16)
        if len(head) < 16 or head[:8] != MAGIC:
            raise ValueError(f"sgfast: {path} is not an sgfast prepared file (bad magic; make one "
                             "with `sgfast prepare`)")
        n = int.from_bytes(head[8:16], "little")
        if n > os.path.getsize(path) - 16:  # compared before reading: a corrupt length must not allocate
            raise ValueError(f"sgfast: {path} is truncated or corrupt (its header claims {n} bytes)")
        body = f.read(n)
    if len(body) != n:
        raise ValueError(f"sgfast: {path} is truncated (header)")
    try:
        header = json.loads(body.decode("utf-8"))
    except ValueError as exc:
        raise ValueError(f"sgfast: {path} has a corrupt header: {exc}") from exc
    if header.get("version") != FORMAT_VERSION:
        raise ValueError(f"sgfast: {path} has format version {header.get('version')}, this sgfast "
                         f"reads version {FORMAT_VERSION}")
    return header, 16 + n


class PreparedDataset(torch.utils.data.Dataset):
    """Read a prepared file by index, memory-mapped (nothing is loaded up front).

    ds[i] -> dict(image float [3, S, S], mask float [1, S, S], gbp float [1, S, S], box [4],
    label, pred_label, image_id, train, index); ds.batch(indices) -> the same, batched. With
    `uint8=True` the image, mask and gbp stay uint8 (x 255), e.g. for a uint8 replay memory.
    `split` ("train" / "test" / None) restricts the indices to one split.
    """

    def __init__(self, path, split=None, uint8=False):
        self.path = os.fspath(path)
        self.header, offset = read_header(self.path)
        self.size = int(self.header["size"])
        self.dtype = record_dtype(self.size)
        count = int(self.header["count"])
        expected = offset + count * self.dtype.itemsize
        actual = os.path.getsize(self.path)
        if actual != expected:
            raise ValueError(f"sgfast: {self.path} has {actual} bytes, the header promises "
                             f"{expected} ({count} records): truncated or corrupt")
        self.records = (np.memmap(self.path, dtype=self.dtype, mode="r", offset=offset, shape=(count,))
                        if count else np.zeros(0, dtype=self.dtype))
        if count and not np.isfinite(np.asarray(self.records["box"])).all():
            bad = int(np.flatnonzero(~np.isfinite(np.asarray(self.records["box"])).all(1))[0])
            raise ValueError(f"sgfast: {self.path} is corrupt: record {bad} has a NaN or infinite box")
        if split not in (None, "train", "test"):
            raise ValueError(f"split must be None, 'train' or 'test', got {split!r}")
        if split is None:
            self.indices = np.arange(count)
        else:
            self.indices = np.flatnonzero(np.asarray(self.records["train"]) == (split == "train"))
        self.uint8 = uint8

    @property
    def class_names(self):
        return list(self.header.get("class_names", []))

    @property
    def num_classes(self):
        return int(self.header.get("num_classes", len(self.class_names)))

    def __len__(self):
        return len(self.indices)

    def _convert(self, rec, index):
        # np.array copies out of the read-only map (torch wants writable memory).
        image = torch.from_numpy(np.array(rec["image"]))
        mask = torch.from_numpy(np.array(rec["mask"])).unsqueeze(-3)
        gbp = torch.from_numpy(np.array(rec["gbp"])).unsqueeze(-3)
        if not self.uint8:
            image, mask, gbp = image.float() / 255, mask.float() / 255, gbp.float() / 255
        return {"image": image, "mask": mask, "gbp": gbp,
                "box": torch.from_numpy(np.array(rec["box"], dtype=np.float32)),
                "label": torch.as_tensor(np.array(rec["label"]), dtype=torch.long),
                "pred_label": torch.as_tensor(np.array(rec["pred_label"]), dtype=torch.long),
                "image_id": torch.as_tensor(np.array(rec["image_id"]), dtype=torch.long),
                "train": torch.as_tensor(np.array(rec["train"]), dtype=torch.bool),
                "index": torch.as_tensor(index, dtype=torch.long)}

    def __getitem__(self, i):
        n = len(self.indices)
        if not -n <= i < n:
            raise IndexError(f"index {i} out of range for {n} prepared images")
        return self._convert(self.records[int(self.indices[i])], i % n)

    def batch(self, indices):
        """Batched access: indices (list / array / tensor of positions) -> dict of [B, ...]."""
        idx = np.asarray(torch.as_tensor(indices, dtype=torch.long).cpu(), dtype=np.int64).reshape(-1)
        n = len(self.indices)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for {n} prepared images")
        idx = idx % max(n, 1)
        rows = self.indices[idx]
        # Sorted reads are sequential on disk; put the batch back in the requested order after.
        order = np.argsort(rows, kind="stable")
        recs = np.empty(len(rows), dtype=self.dtype)
        recs[order] = self.records[rows[order]]
        return self._convert(recs, idx)
