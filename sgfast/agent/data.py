"""Targets for the agent: image I, soft mask S, box and GBP map G, read by dataset index.

The replay memory stores only indices (and a flip bit), so everything here lives once on the
training device as uint8 ([N, C, H, W], 4 bytes per pixel for I + S + G) and is expanded to float
per batch. Sources: `TensorData.from_prepared` (the output of `sgfast prepare`) and
`synthetic_data` (procedural targets for tests, smoke runs and benchmarks).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from sgfast.data.boxes import mirror_boxes, mirror_rows


class TensorData:
    """All targets as uint8 tensors on one device, with a train / validation split.

    images [N, 3, H, W], masks [N, 1, H, W] (soft S x 255), gbp [N, 1, H, W] (G x 255) uint8;
    boxes [N, 4] float (x, y, w, h) normalised, x horizontal.
    """

    def __init__(self, images, masks, boxes, gbp, val_ids, size=None, weights=None):
        n = images.shape[0]
        for name, t, c in (("images", images, 3), ("masks", masks, 1), ("gbp", gbp, 1)):
            if t.dim() != 4 or t.shape[0] != n or t.shape[1] != c:
                raise ValueError(f"TensorData: {name} must be [N={n}, {c}, H, W], got {tuple(t.shape)}")
            if t.dtype != torch.uint8:
                raise ValueError(f"TensorData: {name} must be uint8, got {t.dtype}")
        if boxes.shape != (n, 4):
            raise ValueError(f"TensorData: boxes must be [N={n}, 4], got {tuple(boxes.shape)}")
        if n < 2:
            raise ValueError(f"TensorData: need at least 2 images (train and validation), got {n}")
        if size is not None and images.shape[-1] != size:
            images, masks, gbp = (_resize_u8(t, size) for t in (images, masks, gbp))
        self.images, self.masks, self.gbp = images.contiguous(), masks.contiguous(), gbp.contiguous()
        self.boxes = boxes.float().contiguous()
        val = torch.as_tensor(val_ids, dtype=torch.long).unique()
        if val.numel() == 0 or val.numel() >= n or val.min() < 0 or val.max() >= n:
            raise ValueError(f"TensorData: val_ids must be a non-empty proper subset of 0..{n - 1}")
        is_val = torch.zeros(n, dtype=torch.bool)
        is_val[val] = True
        self.val_ids = val.to(images.device)
        self.train_ids = torch.nonzero(~is_val).flatten().to(images.device)
        # how often each training target is drawn (None: uniformly); per-instance files weight an
        # instance by its share of its image's instance pixels (paper Sec. 5)
        self.train_weights = None
        if weights is not None:
            weights = torch.as_tensor(weights, dtype=torch.float64).cpu()
            if weights.shape != (n,):
                raise ValueError(f"TensorData: weights must be [N={n}], got {tuple(weights.shape)}")
            self.train_weights = weights[self.train_ids.cpu()]

    def __len__(self):
        return self.images.shape[0]

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    @property
    def device(self):
        return self.images.device

    def to(self, device):
        out = object.__new__(TensorData)
        for k in ("images", "masks", "gbp", "boxes", "val_ids", "train_ids"):
            setattr(out, k, getattr(self, k).to(device))
        out.train_weights = self.train_weights
        return out

    def batch(self, ids: torch.Tensor, flip: torch.Tensor | None = None) -> dict:
        """Float targets of dataset `ids` [B], mirrored horizontally where `flip` [B] is true.

        No host sync: the mirror is applied by selection (torch.where) whether or not any sample is
        flipped, instead of asking the device first (`flip.any()`, a sync per DDPG update)."""
        img = self.images[ids].float() / 255
        mask = self.masks[ids].float() / 255
        gbp = self.gbp[ids].float() / 255
        boxes = self.boxes[ids]
        if flip is not None:
            img, mask, gbp = mirror_rows(flip, img, mask, gbp)
            boxes = mirror_boxes(boxes, flip)
        return {"image": img, "mask": mask, "gbp": gbp, "boxes": boxes}

    @classmethod
    def from_prepared(cls, path, size, val_fraction=0.1, device="cpu", seed=0):
        """Load `sgfast prepare`'s output (see sgfast.data) and hold it on `device`."""
        from sgfast.agent import prepared_source

        images, masks, boxes, gbp, val_ids, weights = prepared_source.load(path, val_fraction, seed)
        return cls(images.to(device), masks.to(device), boxes.to(device), gbp.to(device), val_ids, size, weights)


def _resize_u8(t: torch.Tensor, size: int) -> torch.Tensor:
    out = F.interpolate(t.float(), size=(size, size), mode="area" if t.shape[-1] > size else "bilinear",
                        align_corners=None if t.shape[-1] > size else False)
    return out.round().clamp(0, 255).to(torch.uint8)


def synthetic_data(n: int, size: int, seed: int = 0, val_fraction: float = 0.25, device="cpu") -> TensorData:
    """Procedural targets: a two-colour gradient background and an elliptic 'object' with a
    contrasting eye dot; S is the soft ellipse, G peaks at the eye (the distinguishing detail)."""
    if n < 2:
        raise ValueError(f"synthetic_data: n must be >= 2, got {n}")
    g = torch.Generator().manual_seed(seed)
    u = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    ys, xs = ys / size, xs / size  # row, column in [0, 1]
    c0, c1 = u(n, 3, 1, 1), u(n, 3, 1, 1)
    angle = u(n, 1, 1) * math.pi
    grad = (xs * torch.cos(angle) + ys * torch.sin(angle)).clamp(0, 1).unsqueeze(1)
    bg = c0 * (1 - grad) + c1 * grad
    cx, cy = 0.3 + 0.4 * u(n, 1, 1), 0.3 + 0.4 * u(n, 1, 1)
    rx, ry = 0.12 + 0.15 * u(n, 1, 1), 0.1 + 0.12 * u(n, 1, 1)
    d = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2
    soft = torch.sigmoid((1 - d) * 8).unsqueeze(1)  # soft mask, ~1 inside, ~0 outside
    fg = u(n, 3, 1, 1)
    ex, ey = cx + 0.5 * rx, cy - 0.3 * ry
    eye_d = ((xs - ex) ** 2 + (ys - ey) ** 2).unsqueeze(1)
    eye_r = (0.2 * torch.minimum(rx, ry)).unsqueeze(1)
    eye = (eye_d < eye_r ** 2).float()
    img = bg * (1 - soft) + soft * (fg * (1 - eye) + (1 - fg) * eye)
    img = (img + 0.03 * torch.randn(img.shape, generator=g)).clamp(0, 1)
    gbp = torch.exp(-eye_d / (2 * (2 * eye_r) ** 2)) * (soft > 0.5)
    boxes = torch.cat([(cx - rx), (cy - ry), 2 * rx, 2 * ry], 1).view(n, 4).clamp(0, 1)
    to_u8 = lambda t: (t * 255).round().clamp(0, 255).to(torch.uint8)  # noqa: E731
    n_val = max(1, min(n - 1, int(round(n * val_fraction))))
    return TensorData(to_u8(img).to(device), to_u8(soft).to(device), boxes.to(device), to_u8(gbp).to(device),
                      torch.arange(n - n_val, n))
