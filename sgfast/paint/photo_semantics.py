"""The guidance of an exact painting (`--method exact`, mode sg) at the photo's own shape: the soft
foreground mask S that gates foreground and background strokes, and the focus map G of the optional
focus term (Eq. 14).

Per image, the first source that applies:

    S   a --mask file; --segmenter: sgfast Ψ weights (trained on the synthetic birds), or
        `torchvision:NAME`, a torchvision segmentation model (S = 1 - P(background)) or detection
        model (the union of the masks it finds with score >= 0.5); otherwise the whole image is
        foreground (S = 1: every stroke is a foreground stroke, the background layer stays empty).
    G   --expert: sgfast expert weights (guided backprop of the masked box crop, as in training), or
        `torchvision:NAME`, an ImageNet classifier (guided backprop of its top class on the whole
        photo); otherwise image detail: the blurred gradient magnitude of the luminance, no weights.
        G is normalised per image (its 99th percentile is 1) and kept inside S (binarised at 0.5).

torchvision models load their DEFAULT weights from the torch hub cache (torch.hub.get_dir() /
checkpoints, where torchvision keeps what it downloads); nothing is ever downloaded here: a missing
file is an error that names it. torchvision itself is optional (not a dependency of sgfast).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import torch
import torch.nn.functional as F

from sgfast.data.tensor_images import on_uint8_levels, resize_square, resize_to
from sgfast.paint.result import PaintError

TORCHVISION = "torchvision:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DETECTION_SCORE = 0.5


@dataclasses.dataclass
class Guides:
    """Where S and G come from: callables on one image [1, 3, h, w] in [0, 1] (None: the
    weight-free default). segment(x) -> S [1, 1, h, w]; focus(x, S) -> G [1, 1, h, w]."""
    segment: Callable | None = None
    focus: Callable | None = None
    segmenter_name: str = "whole image"
    focus_name: str = "image detail"


def detail_map(image: torch.Tensor) -> torch.Tensor:
    """G without weights: |Sobel gradient| of the luminance of image [B, 3, h, w], blurred over
    about 2% of the long side, normalised per image (99th percentile -> 1). [B, 1, h, w]."""
    from sgfast.models.gbp import normalise_map

    lum = (image * image.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    kx = image.new_tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8
    k = torch.stack([kx, kx.t()])[:, None]
    g = F.conv2d(F.pad(lum, (1, 1, 1, 1), mode="replicate"), k).pow(2).sum(1, keepdim=True).sqrt()
    r = max(1, round(0.01 * max(image.shape[-2:])))
    g = F.avg_pool2d(g, 2 * r + 1, stride=1, padding=r, count_include_pad=False)
    return normalise_map(g)


def segmentation_foreground(output, height: int, width: int) -> torch.Tensor:
    """S [B, 1, h, w] from a torchvision model's output: a segmentation model's dict (its "out"
    logits [B, C, h', w'], class 0 the background) or a detection model's list of dicts (with
    "masks" [K, 1, h, w] and "scores" [K]: the union of the masks scoring >= DETECTION_SCORE)."""
    if isinstance(output, dict):
        prob = output["out"].softmax(1)
        s = 1 - prob[:, :1]
        return F.interpolate(s, size=(height, width), mode="bilinear", align_corners=False).clamp(0, 1)
    masks = []
    for det in output:
        keep = det["masks"][det["scores"] >= DETECTION_SCORE]
        masks.append(keep.amax(0) if len(keep) else det["masks"].new_zeros(1, height, width))
    return torch.stack(masks).clamp(0, 1)


def imagenet_normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)


def classifier_focus(model, x: torch.Tensor) -> torch.Tensor:
    """G of an ImageNet classifier: guided backprop of its top class on x [B, 3, h, w] (ImageNet
    normalisation), summed over channels, normalised per image. [B, 1, h, w]."""
    from sgfast.models.gbp import guided_gradients, normalise_map

    grad, _ = guided_gradients(model, imagenet_normalised(x))
    return normalise_map(grad.abs().sum(1, keepdim=True))


def hub_weights_path(url: str) -> str:
    """Where torch hub keeps the file of `url` (torchvision's own cache)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(url))


def torchvision_model(option: str, name: str, device, pretrained: bool = True):
    """torchvision's `name` in eval mode, its DEFAULT weights read from the hub cache (pretrained)
    or left random (pretrained=False: tests). Returns (model, kind) with kind "segmentation",
    "detection" or "classification"."""
    try:
        import torchvision.models as tvm
    except Exception as exc:  # noqa: BLE001 (a broken install raises anything)
        raise PaintError(f"{option} {TORCHVISION}{name} needs torchvision ({exc})") from None
    kinds = {"segmentation": tvm.segmentation, "detection": tvm.detection}
    kind = next((k for k, mod in kinds.items() if name in tvm.list_models(module=mod)), None)
    if kind is None:
        kind = "classification" if name in tvm.list_models(module=tvm) else None
    if kind is None:
        raise PaintError(f"{option}: torchvision has no model {name!r}")
    extra = {"weights_backbone": None} if kind != "classification" else {}
    model = tvm.get_model(name, weights=None, **extra)
    if pretrained:
        path = hub_weights_path(tvm.get_model_weights(name).DEFAULT.url)
        if not os.path.isfile(path):
            raise PaintError(f"{option}: no weights for {name} in the torch hub cache: {path} "
                             "(sgfast never downloads; fetch them once with torchvision)")
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        except (RuntimeError, ValueError, OSError) as exc:
            raise PaintError(f"{option}: cannot load {path}: {exc}") from None
    return model.to(device).eval(), kind


def load_guides(segmenter: str | None = None, expert: str | None = None, device="cpu",
                pretrained: bool = True) -> Guides:
    """The Guides of --segmenter / --expert (None: the weight-free defaults). A path is sgfast
    weights (Ψ, the expert); `torchvision:NAME` a torchvision model (module docstring)."""
    device = torch.device(device)
    guides = Guides()
    if segmenter:
        if segmenter.startswith(TORCHVISION):
            model, kind = torchvision_model("--segmenter", segmenter[len(TORCHVISION):], device, pretrained)
            if kind == "classification":
                raise PaintError(f"--segmenter: {segmenter} is a classifier, not a segmentation or detection model")
            guides.segment = _torchvision_segment(model, kind)
        else:
            guides.segment = _sgfast_segment(_load_sgfast("--segmenter", segmenter, "segmenter", device)[0])
        guides.segmenter_name = segmenter
    if expert:
        if expert.startswith(TORCHVISION):
            model, kind = torchvision_model("--expert", expert[len(TORCHVISION):], device, pretrained)
            if kind != "classification":
                raise PaintError(f"--expert: {expert} is a {kind} model, not an image classifier")
            guides.focus = lambda x, s: classifier_focus(model, x)
        else:
            model, meta = _load_sgfast("--expert", expert, "expert", device)
            guides.focus = _sgfast_focus(model, int(meta.get("image_size", model.config.crop)))
        guides.focus_name = expert
    return guides


def _load_sgfast(option, path, kind, device):
    from sgfast.models.expert import load_expert
    from sgfast.models.segmenter import load_segmenter

    if not os.path.isfile(path):
        raise PaintError(f"{option}: weights file not found: {path}")
    try:
        model, meta = (load_segmenter if kind == "segmenter" else load_expert)(path)
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise PaintError(f"{option}: cannot load {path}: {exc}") from None
    return model.to(device).eval(), meta


def _torchvision_segment(model, kind):
    @torch.no_grad()
    def segment(x):
        h, w = x.shape[-2:]
        out = model(imagenet_normalised(x)) if kind == "segmentation" else model(list(x))
        return segmentation_foreground(out, h, w)
    return segment


def _sgfast_segment(model):
    """Ψ sees the photo squeezed to its square input (it was trained on square images)."""
    from sgfast.models.segmenter import predict

    @torch.no_grad()
    def segment(x):
        prob, _ = predict(model, resize_square(x, model.config.input_size))
        return resize_to(prob, *x.shape[-2:]).clamp(0, 1)
    return segment


def _sgfast_focus(expert, side):
    """The bird expert as in training: the masked box crop of the photo squeezed to the expert's
    image size (`side`), pasted back."""
    from sgfast.models.gbp import gbp_maps
    from sgfast.paint.inputs import mask_box

    def focus(x, s):
        xs, ss = resize_square(x, side), resize_square(s, side)
        box = torch.stack([mask_box(m[0].cpu()) for m in ss]).to(x.device)
        g, _ = gbp_maps(expert, xs, ss, box)
        return resize_to(g, *x.shape[-2:]).clamp(0, 1)
    return focus


def photo_guidance(image: torch.Tensor, guides: Guides, mask=None, need_focus: bool = False):
    """(S [1, 1, h, w], G [1, 1, h, w] or None) of image [1, 3, h, w] in [0, 1]; mask: a --mask
    (path or array, any size; resized to the image) or None. S and G in uint8 steps, as mask.png
    stores S (so the painting re-renders identically from its files)."""
    from sgfast.paint.inputs import as_mask

    h, w = image.shape[-2:]
    if mask is not None:
        s = torch.from_numpy(as_mask(mask, 2 * max(h, w)))[None, None].to(image)
        s = resize_to(s, h, w).clamp(0, 1)
    elif guides.segment is not None:
        s = guides.segment(image).to(image)
    else:
        s = torch.ones_like(image[:, :1])
    s = on_uint8_levels(s)
    g = None
    if need_focus:
        g = (guides.focus(image, s) if guides.focus is not None else detail_map(image)).detach().to(image)
        g = on_uint8_levels(g * (s > 0.5).to(g))
    return s, g
