"""Ψ: the foreground segmentation and localisation network (paper Sec. 4.2, Eq. 7; Sec. 6.2).

A small U-Net with two fully convolutional heads:

* a per-pixel foreground logit (trained with binary cross-entropy), and
* a per-pixel box regression: every pixel predicts the box corners (x1, y1, x2, y2) as offsets
  from its own centre (trained with Smooth L1 on the true foreground pixels). The image's box is
  the average of those per-pixel boxes weighted by the predicted foreground probability.

With `box_level` > 0 the box head reads a coarser decoder level and its corners are upsampled,
leaving the full-resolution features to the mask (`thin_top` makes that level one conv deep; both
are recorded in the weights' config, and files without them load as the original network).

With `refine_margin` > 0, `predict` makes a second, zoomed pass, as Mask R-CNN predicts a mask
inside the detected box at a fixed resolution: pass 1 on the whole image gives the box; a square
window around it (side `refine_margin` x the box's longer side, at least `refine_min_side` of the
image, shifted to lie inside the image) is resampled to the network's input size and run again;
its probability map is warped back into the image frame and replaces pass 1's inside the window,
and its box, mapped back, replaces pass 1's. A small bird then covers many more of the network's
pixels. Training mixes whole images and such windows around jittered true boxes
(train/segmenter.py) so one network serves both passes.

The box head is dense rather than a global regressor on pooled features because the dense form is
translation equivariant: a 2-pixel error on a bird a tenth of the image wide already costs 0.2 of
box IoU, and pooled features lose exactly that positional precision. The paper only says "separate
heads ... Smooth L1", which this satisfies.

Boxes are (x, y, w, h) normalised to [0, 1] with x horizontal (column), as everywhere in sgfast.
"""
import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from sgfast.data.boxes import mirror_boxes


@dataclass
class SegmenterConfig:
    size: int = 64                      # input side the network is trained and run at
    widths: tuple = field(default=(16, 32, 48, 64, 96))  # channels per U-Net level
    # The image is read at size * input_scale and folded into size x size cells of
    # input_scale^2 pixels (pixel_unshuffle): the mask stays at `size`, but each output pixel
    # sees its sub-pixels, which tells how much of it the bird covers (most errors are there).
    input_scale: int = 1
    # The full-resolution level's blocks (first down, last up) use one 3x3 conv instead of two.
    # At a 128-px input that level costs more than all the coarser ones together, and its job is
    # only to place the outline on the pixel grid (the coarser levels decide what is a bird).
    thin_top: bool = False
    # The box head reads the decoder's features this many levels below the full resolution and
    # its per-pixel corners are upsampled (bilinear; they vary smoothly). 0 = full resolution.
    # Above 0 the full-resolution features serve the mask alone, which needs them most.
    box_level: int = 0
    # Zoomed second pass in `predict` (see the module doc): window side = refine_margin x the pass-1
    # box's longer side, at least refine_min_side (normalised). 0 = one pass (older files).
    refine_margin: float = 0.0
    refine_min_side: float = 0.25
    # predict averages the prediction of the image and of its mirror image (flipped back): the
    # probabilities and the boxes. Twice the cost; the network's errors are not symmetric.
    flip_average: bool = False

    @property
    def input_size(self):
        return self.size * self.input_scale

    def to_dict(self):
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d):
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        fields = ("size", "widths", "input_scale", "thin_top", "box_level", "refine_margin",
                  "refine_min_side", "flip_average")
        unknown = sorted(set(d) - set(fields))
        if unknown:
            # A file written by a newer sgfast: building without these would be a different net.
            raise ValueError(f"segmenter config has unknown fields {unknown} (written by a newer "
                             f"sgfast?); this version knows {list(fields)}")
        known = {k: d[k] for k in fields if k in d}
        for k in ("thin_top", "flip_average"):
            if k in known:
                known[k] = bool(known[k])
        for k in ("size", "input_scale", "box_level"):
            if k in known:
                known[k] = int(known[k])
        for k in ("refine_margin", "refine_min_side"):
            if k in known:
                known[k] = float(known[k])
        return cls(**known)


def _norm(c):
    # GroupNorm, not BatchNorm: no running statistics, so train and eval mode agree even early in
    # a short, high-learning-rate CPU run (BatchNorm's lagging statistics cost most of the mask).
    return nn.GroupNorm(math.gcd(c, 4), c)


def _block(cin, cout, thin=False):
    if thin:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU())
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), _norm(cout), nn.ReLU(),
    )


def pixel_centres(h, w, device, dtype=torch.float32):
    """Normalised pixel centres: (u [1, 1, H, W] horizontal, v [1, 1, H, W] vertical)."""
    u = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    v = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    return u.view(1, 1, 1, w).expand(1, 1, h, w), v.view(1, 1, h, 1).expand(1, 1, h, w)


class Segmenter(nn.Module):
    """Input [B, 3, H, W] RGB in [0, 1] (H, W divisible by input_scale * 2^(levels-1)); the
    outputs are at H / input_scale.

    forward -> dict(mask_logits [B, 1, H, W], corners [B, 4, H, W] per-pixel (x1, y1, x2, y2),
    box [B, 4] (x, y, w, h)).
    """

    def __init__(self, config: SegmenterConfig | None = None):
        super().__init__()
        self.config = config or SegmenterConfig()
        widths = list(self.config.widths)
        if len(widths) < 2:
            raise ValueError(f"SegmenterConfig.widths needs at least 2 levels, got {widths}")
        if self.config.input_scale < 1:
            raise ValueError(f"SegmenterConfig.input_scale must be >= 1, got {self.config.input_scale}")
        self.down = nn.ModuleList()
        cin = 3 * self.config.input_scale ** 2
        thin = self.config.thin_top
        for i, w in enumerate(widths):
            self.down.append(_block(cin, w, thin and i == 0))
            cin = w
        self.up = nn.ModuleList()
        for i, w_skip in enumerate(reversed(widths[:-1])):
            self.up.append(_block(cin + w_skip, w_skip, thin and i == len(widths) - 2))
            cin = w_skip
        if self.config.refine_margin and self.config.refine_margin < 1:
            raise ValueError(f"SegmenterConfig.refine_margin must be 0 (off) or >= 1, got "
                             f"{self.config.refine_margin}")
        if not 0 < self.config.refine_min_side <= 1:
            raise ValueError(f"SegmenterConfig.refine_min_side must be in (0, 1], got "
                             f"{self.config.refine_min_side}")
        if not 0 <= self.config.box_level < len(widths):
            raise ValueError(f"SegmenterConfig.box_level must be in [0, {len(widths) - 1}], "
                             f"got {self.config.box_level}")
        self.mask_head = nn.Conv2d(cin, 1, 1)
        cbox = widths[self.config.box_level]  # decoder width at that level
        # Start from the foreground prior (birds cover ~10 % of the image), not from p = 0.5.
        nn.init.constant_(self.mask_head.bias, -2.0)
        self.box_head = nn.Sequential(nn.Conv2d(cbox + 2, cbox, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(cbox, 4, 1))

    @property
    def stride(self):
        return 2 ** (len(self.config.widths) - 1)

    def forward(self, x):
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"Segmenter: image must be [B, 3, H, W], got {tuple(x.shape)}")
        h, w = x.shape[-2:]
        div = self.stride * self.config.input_scale
        if h % div or w % div:
            raise ValueError(f"Segmenter: image side {h}x{w} must be divisible by {div}")
        f = (x - 0.5) / 0.25
        if self.config.input_scale > 1:
            f = F.pixel_unshuffle(f, self.config.input_scale)
            h, w = f.shape[-2:]
        skips = []
        for i, block in enumerate(self.down):
            if i:
                f = F.max_pool2d(f, 2)
            f = block(f)
            skips.append(f)
        level = len(skips) - 1
        fbox = f if level == self.config.box_level else None
        for block, skip in zip(self.up, reversed(skips[:-1])):
            f = F.interpolate(f, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            f = block(torch.cat([f, skip], 1))
            level -= 1
            if level == self.config.box_level:
                fbox = f
        mask_logits = self.mask_head(f)
        hb, wb = fbox.shape[-2:]
        u, v = pixel_centres(hb, wb, x.device, f.dtype)
        coords = torch.cat([u, v], 1).expand(x.shape[0], 2, hb, wb)
        offsets = self.box_head(torch.cat([fbox, coords - 0.5], 1))
        corners = offsets + torch.cat([u, v, u, v], 1)
        if (hb, wb) != (h, w):
            corners = F.interpolate(corners, size=(h, w), mode="bilinear", align_corners=False)
        box = aggregate_box(corners, torch.sigmoid(mask_logits))
        return {"mask_logits": mask_logits, "corners": corners, "box": box}


def aggregate_box(corners, prob):
    """Average the per-pixel corners weighted by foreground probability -> (x, y, w, h) [B, 4].

    Pixels under 0.5 only count when an image has no confident pixel, so the box never comes from
    background votes while an object is visible, and an empty prediction still yields a box.
    """
    confident = prob * (prob > 0.5)
    has_conf = confident.flatten(1).sum(1) > 0
    weight = torch.where(has_conf.view(-1, 1, 1, 1), confident, prob + 1e-6)
    weight = weight / weight.flatten(1).sum(1).view(-1, 1, 1, 1)
    c = (corners * weight).flatten(2).sum(2)  # [B, 4] x1 y1 x2 y2
    x1 = c[:, 0].clamp(0, 1)
    y1 = c[:, 1].clamp(0, 1)
    x2 = torch.maximum(c[:, 2].clamp(0, 1), x1)
    y2 = torch.maximum(c[:, 3].clamp(0, 1), y1)
    return torch.stack([x1, y1, x2 - x1, y2 - y1], 1)


def box_to_corners(box):
    """(x, y, w, h) [..., 4] -> (x1, y1, x2, y2) [..., 4]."""
    x, y, w, h = box.unbind(-1)
    return torch.stack([x, y, x + w, y + h], -1)


def box_iou(a, b):
    """IoU of (x, y, w, h) boxes, elementwise over the leading dims -> [...]."""
    a1, b1 = box_to_corners(a), box_to_corners(b)
    iw = (torch.minimum(a1[..., 2], b1[..., 2]) - torch.maximum(a1[..., 0], b1[..., 0])).clamp(min=0)
    ih = (torch.minimum(a1[..., 3], b1[..., 3]) - torch.maximum(a1[..., 1], b1[..., 1])).clamp(min=0)
    inter = iw * ih
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union.clamp(min=1e-12)


def mask_iou(pred, target, threshold=0.5):
    """Per-image IoU of binarised masks [B, 1, H, W] -> [B]; two empty masks count as IoU 1."""
    p = pred > threshold
    t = target > 0.5
    inter = (p & t).flatten(1).sum(1).float()
    union = (p | t).flatten(1).sum(1).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def segmenter_loss(out, mask, box, box_beta=0.02, box_weight=0.5, dice_weight=1.0):
    """BCE (+ soft Dice) on the mask + Smooth L1 on the per-pixel corners (true foreground pixels)
    and on the aggregated box. Returns (total, dict of parts).

    The Dice term is normalised by the object's area like the box terms are; plain BCE, averaged
    over all pixels, gives a small bird's pixels a weight ~1/area(image) and learns them slowly.
    """
    bce = F.binary_cross_entropy_with_logits(out["mask_logits"], mask)
    p = torch.sigmoid(out["mask_logits"]).flatten(1)
    t = mask.flatten(1)
    dice = (1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)).mean()
    target = box_to_corners(box).view(-1, 4, 1, 1)
    fg = (mask > 0.5).float()
    per_pixel = F.smooth_l1_loss(out["corners"], target.expand_as(out["corners"]), beta=box_beta,
                                 reduction="none").sum(1, keepdim=True)
    pix = ((per_pixel * fg).flatten(1).sum(1) / fg.flatten(1).sum(1).clamp(min=1)).mean()
    agg = F.smooth_l1_loss(box_to_corners(out["box"]), box_to_corners(box), beta=box_beta,
                           reduction="none").sum(1).mean()
    total = bce + dice_weight * dice + box_weight * (pix + agg)
    return total, {"bce": bce.detach(), "dice": dice.detach(), "box_pixel": pix.detach(),
                   "box_agg": agg.detach()}


def zoom_windows(boxes, margin, min_side):
    """Square windows (x0, y0, side) [B, 3], normalised, around boxes (x, y, w, h) [B, 4]: side =
    margin x the longer box side, clamped to [min_side, 1], centred on the box and then shifted to
    lie inside the image (so the crop never samples outside it: the network never saw padding)."""
    side = (boxes[:, 2:].amax(1) * margin).clamp(min=min_side, max=1.0)
    centre = boxes[:, :2] + boxes[:, 2:] / 2
    half = side[:, None] / 2
    centre = torch.minimum(torch.maximum(centre, half), 1 - half)
    return torch.cat([centre - half, side[:, None]], 1)


def _window_grid(windows, h, w, dtype):
    """grid_sample grid [B, h, w, 2] sampling each window at an h x w output's pixel centres."""
    u, v = pixel_centres(h, w, windows.device, dtype)  # [1, 1, h, w] in [0, 1]
    x0, y0, side = (windows[:, k].to(dtype).view(-1, 1, 1) for k in range(3))
    gx = x0 + side * u[0]
    gy = y0 + side * v[0]
    return torch.stack([gx, gy], -1) * 2 - 1  # align_corners=False coordinates


def crop_windows(images, windows, size):
    """Resample each window of images [B, C, H, W] to [B, C, size, size] (bilinear)."""
    grid = _window_grid(windows, size, size, images.dtype)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def uncrop_windows(crops, windows, out_hw):
    """Inverse of crop_windows: crops [B, C, s, s] warped back into an out_hw frame. Returns
    (values [B, C, H, W], inside [B, 1, H, W] bool: the output pixels whose centre is in the window).
    """
    h, w = out_hw
    u, v = pixel_centres(h, w, crops.device, crops.dtype)
    x0, y0, side = (windows[:, k].to(crops.dtype).view(-1, 1, 1, 1) for k in range(3))
    cu = (u - x0) / side  # the output pixel centres in window coordinates, [B, 1, h, w]
    cv = (v - y0) / side
    inside = (cu >= 0) & (cu <= 1) & (cv >= 0) & (cv <= 1)
    grid = torch.cat([cu, cv], 1).permute(0, 2, 3, 1) * 2 - 1
    vals = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return vals, inside


def window_box_to_image(box, windows):
    """Boxes (x, y, w, h) in window coordinates -> image coordinates."""
    x0y0, side = windows[:, :2], windows[:, 2:3]
    return torch.cat([x0y0 + box[:, :2] * side, box[:, 2:] * side], 1)


def image_box_to_window(box, windows):
    """Boxes (x, y, w, h) in image coordinates -> window coordinates, clipped to the window."""
    c = box_to_corners(box)
    x0y0 = windows[:, :2].repeat(1, 2)
    c = ((c - x0y0) / windows[:, 2:3]).clamp(0, 1)
    return torch.cat([c[:, :2], c[:, 2:] - c[:, :2]], 1)


def _pass(model, x):
    out = model(x)
    return torch.sigmoid(out["mask_logits"]), out["box"]


def two_pass(model, images, out_hw, margin, min_side, outside="pass1"):
    """Pass 1 on the whole image, pass 2 on the zoomed window around pass 1's box (see module doc).

    images [B, 3, H, W] in [0, 1]. Returns (prob [B, 1, *out_hw], box [B, 4], windows [B, 3],
    pass-1 prob at out_hw, pass-1 box). `outside` = "pass1" keeps pass 1's probability outside the
    window, "zero" clears it.
    """
    size = model.config.input_size
    h, w = images.shape[-2:]
    x = images if (h, w) == (size, size) else F.interpolate(
        images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    prob1, box1 = _pass(model, x)
    if prob1.shape[-2:] != tuple(out_hw):
        prob1 = F.interpolate(prob1, size=out_hw, mode="bilinear", align_corners=False).clamp(0, 1)
    if not margin:
        return prob1, box1, None, prob1, box1
    windows = zoom_windows(box1, margin, min_side)
    # Crop from the caller's pixels when they are no finer than the network's input (a 64-px
    # canvas: one bilinear step, not two); finer ones from the antialiased resize (no aliasing).
    src = images if max(h, w) <= size else x
    prob2, box2 = _pass(model, crop_windows(src, windows, size))
    back, inside = uncrop_windows(prob2, windows, out_hw)
    rest = prob1 if outside == "pass1" else torch.zeros_like(prob1)
    prob = torch.where(inside, back, rest).clamp(0, 1)
    return prob, window_box_to_image(box2, windows), windows, prob1, box1


@torch.no_grad()
def predict(model, images, out_size=None):
    """Run Ψ at its configured size. images [B, 3, H, W] in [0, 1] at any size.

    Returns (soft mask [B, 1, out, out] in [0, 1], boxes [B, 4] normalised (x, y, w, h)); out_size
    defaults to the input side. Boxes are normalised, so they do not depend on the resizing. With
    config.refine_margin > 0 both come from the zoomed second pass (two_pass); with
    config.flip_average they are the mean of the image's and its mirror image's predictions.
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"predict: images must be [B, 3, H, W], got {tuple(images.shape)}")
    out_hw = tuple(images.shape[-2:]) if out_size is None else (out_size, out_size)
    cfg = model.config
    prob, box, *_ = two_pass(model, images, out_hw, cfg.refine_margin, cfg.refine_min_side)
    if cfg.flip_average:
        prob_f, box_f, *_ = two_pass(model, images.flip(-1), out_hw, cfg.refine_margin,
                                     cfg.refine_min_side)
        prob = (prob + prob_f.flip(-1)) / 2
        box = (box + mirror_boxes(box_f)) / 2
    return prob, box


def load_segmenter(path, map_location="cpu"):
    """Build Ψ from an fp16 weights file (sgfast.io.save_weights_fp16) or a training checkpoint."""
    from sgfast.io import check_finite, load_checkpoint, load_weights
    from sgfast.models.checked_build import build_checked
    ckpt = load_checkpoint(path, map_location)
    if isinstance(ckpt, dict) and "model" in ckpt and "config" in ckpt:  # a training checkpoint
        sd, meta = ckpt["model"], {"config": ckpt["config"], "kind": ckpt.get("kind")}
    else:
        sd, meta = load_weights(path, map_location)
    if meta.get("kind") != "segmenter":
        raise ValueError(f"{path} is not a segmenter weights file (kind={meta.get('kind')!r})")
    try:
        sd = {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}
        check_finite(sd, path)
        model = build_checked(lambda: Segmenter(SegmenterConfig.from_dict(meta.get("config", {}))), sd, path,
                              "segmenter")
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ValueError(f"{path}: the segmenter weights do not match their config "
                         f"{meta.get('config')}: {exc}") from exc
    model.eval()
    return model, meta
