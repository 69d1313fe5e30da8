"""The expert classifier whose guided-backprop maps drive the focus reward (paper Sec. 4.3, 6.2).

The authors use a pretrained NTS-Net (ResNet-50) on the image cropped to the predicted box and
multiplied by the soft mask. Pretrained weights cannot be had here, so the expert is a small VGG-like
CNN trained by the project, on the same kind of input: the object's box cropped out of the masked
image and resized to a fixed square (`ExpertConfig.crop`, 64 px by default). Cropping matters on
fine-grained data: the classes differ in parts a few pixels wide, and the crop gives them the same
number of pixels whatever the bird's size in the frame.

Every non-linearity is an `nn.ReLU` module (never F.relu, never inplace) so guided backprop
(sgfast.models.gbp) can replace its backward.
"""
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class ExpertConfig:
    num_classes: int = 20
    crop: int = 64                       # side of the square box crop the classifier sees
    widths: tuple = field(default=(16, 32, 64, 128))  # channels per stage (2 convs per stage)
    class_names: tuple = ()
    pool: str = "avg"                    # global pooling before the classifier: "avg" or "max"

    def to_dict(self):
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d):
        return cls(num_classes=int(d.get("num_classes", 20)), crop=int(d.get("crop", 64)),
                   widths=tuple(int(w) for w in d.get("widths", (16, 32, 64, 128))),
                   class_names=tuple(d.get("class_names", ())),
                   pool=str(d.get("pool", "avg")))  # weights written before the option: avg


class Expert(nn.Module):
    """[B, 3, crop, crop] RGB in [0, 1] (already cropped and masked) -> class logits [B, C]."""

    def __init__(self, config: ExpertConfig | None = None):
        super().__init__()
        self.config = config or ExpertConfig()
        if self.config.num_classes < 1:
            raise ValueError(f"ExpertConfig.num_classes must be >= 1, got {self.config.num_classes}")
        if self.config.pool not in ("max", "avg"):
            raise ValueError(f"ExpertConfig.pool must be 'max' or 'avg', got {self.config.pool!r}")
        layers = []
        cin = 3
        for i, w in enumerate(self.config.widths):
            if i:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(cin, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
                cin = w
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(cin, self.config.num_classes)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Expert: input must be [B, 3, H, W], got {tuple(x.shape)}")
        f = self.features((x - 0.5) / 0.25)
        # "max" sends the class score's gradient only through the locations that fire most; on
        # the synthetic birds it did not make the GBP maps more part-focused (docs/semantic_models.md).
        f = f.amax((2, 3)) if self.config.pool == "max" else f.mean((2, 3))
        return self.classifier(self.dropout(f))


def _theta(boxes):
    """affine_grid parameters mapping the output square onto the (x, y, w, h) box (docs/ops/aligned_crop.md)."""
    x, y, w, h = boxes.unbind(1)
    zero = torch.zeros_like(x)
    return torch.stack([torch.stack([w, zero, 2 * x + w - 1], 1),
                        torch.stack([zero, h, 2 * y + h - 1], 1)], 1)


def crop_boxes(images, boxes, size):
    """Bilinear crop of each (x, y, w, h) box to a size x size square: [B, C, size, size].

    Same mapping as the neural alignment Ω (sgfast.ops.aligned_crop); written with grid_sample here
    so the data layer works without the compiled extension.
    """
    if boxes.shape != (images.shape[0], 4):
        raise ValueError(f"crop_boxes: boxes must be [{images.shape[0]}, 4], got {tuple(boxes.shape)}")
    boxes = _safe_boxes(boxes.to(images.dtype))
    grid = F.affine_grid(_theta(boxes), (images.shape[0], images.shape[1], size, size),
                         align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def paste_boxes(crops, boxes, size):
    """Inverse of crop_boxes: put [B, C, h, w] crops back into their boxes on a size x size canvas
    (zeros outside the box)."""
    boxes = _safe_boxes(boxes.to(crops.dtype))
    x, y, w, h = boxes.unbind(1)
    zero = torch.zeros_like(x)
    # Canvas coordinate c in [-1, 1] maps to crop coordinate (c - (2x + w - 1)) / w.
    theta = torch.stack([torch.stack([1 / w, zero, -(2 * x + w - 1) / w], 1),
                         torch.stack([zero, 1 / h, -(2 * y + h - 1) / h], 1)], 1)
    grid = F.affine_grid(theta, (crops.shape[0], crops.shape[1], size, size), align_corners=False)
    return F.grid_sample(crops, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _safe_boxes(boxes):
    # A degenerate (zero-width) predicted box would divide by zero when pasting back.
    return torch.cat([boxes[:, :2], boxes[:, 2:].clamp(min=1.0 / 1024)], 1)


def expert_input(images, masks, boxes, crop):
    """What the expert sees: the masked image cropped to the box. images [B, 3, H, W], masks
    [B, 1, H, W] (soft or binary), boxes [B, 4] -> [B, 3, crop, crop]."""
    return crop_boxes(images * masks, boxes, crop)


def load_expert(path, map_location="cpu"):
    """Build the expert from an fp16 weights file or a training checkpoint."""
    from sgfast.io import check_finite, load_checkpoint, load_weights
    from sgfast.models.checked_build import build_checked
    ckpt = load_checkpoint(path, map_location)
    if isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt:
        sd, meta = ckpt["model"], {"config": ckpt["config"], "kind": ckpt.get("kind")}
    else:
        sd, meta = load_weights(path, map_location)
    if meta.get("kind") != "expert":
        raise ValueError(f"{path} is not an expert weights file (kind={meta.get('kind')!r})")
    sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
    check_finite(sd, path)
    model = build_checked(lambda: Expert(ExpertConfig.from_dict(meta.get("config", {}))), sd, path, "expert")
    model.eval()
    return model, meta
