"""`sgfast train-expert`: train the expert classifier whose guided-backprop maps drive the focus
reward.

Input, as in the authors' preprocess.py: the image multiplied by the foreground mask and cropped to
the object's box, resized to a square (`--crop`, 64 px). Images are loaded at `--image-size`
(default 128, the paper's canvas) before cropping so small birds keep their detail. Training uses
the true masks and boxes with augmentation: horizontal flips and box jitter (each edge moved by
up to `--box-jitter` of the box side), which makes the expert robust to the predicted boxes that
`sgfast prepare` feeds it. With `--segmenter W` the test accuracy is also measured on Ψ's
predicted masks and boxes (the pipeline's setting); with part masks in the dataset the GBP
concentration on the distinguishing parts is measured too (sgfast.models.gbp.part_concentration).
"""
from __future__ import annotations

import dataclasses
import math
import os
import time

import torch
import torch.nn.functional as F

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.device import pick_device
from sgfast.io import save_weights_fp16
from sgfast.models.expert import Expert, ExpertConfig, expert_input
from sgfast.train import semantic_common as common
from sgfast.train.loop import STOPPED_EXIT, Periodic, run_loop, tensorboard
from sgfast.train.options import apply_threads, at_least, int_list, within

COMMAND = "train-expert"

# Training presets (--config); every key is also an option that overrides it.
PRESETS = {
    "tiny": dict(epochs=15, steps=None, batch_size=64, lr=2e-3, weight_decay=5e-4, ckpt_every=200,
                 eval_every=0, limit=None, image_size=128, crop=64, widths="16,32,64,128", pool="avg",
                 box_jitter=0.08, blur=0.0, blur_sigma="0.5,1.5", gbp_images=256),
    "smoke": dict(epochs=1, steps=4, batch_size=4, lr=2e-3, weight_decay=5e-4, ckpt_every=2,
                  eval_every=0, limit=None, image_size=32, crop=16, widths="8,12", pool="avg",
                  box_jitter=0.08, blur=0.0, blur_sigma="0.5,1.5", gbp_images=4),
}


@dataclasses.dataclass(frozen=True)
class ExpertTraining(common.SupervisedOptions):
    """Everything a train-expert run uses, built once from the command line (from_args)."""
    image_size: int
    crop: int
    widths: tuple
    pool: str
    box_jitter: float
    blur: float
    blur_sigma: tuple
    gbp_images: int
    segmenter: str | None
    init: str | None

    @classmethod
    def from_args(cls, args) -> "ExpertTraining":
        v = common.common_values(args, PRESETS, COMMAND)
        v["widths"] = int_list("widths", v["widths"])
        at_least("image_size", v["image_size"], 8)
        at_least("crop", v["crop"], 1)
        within("box_jitter", v["box_jitter"], 0, 0.5, high_open=True)
        within("blur", v["blur"], 0, 1)
        v["blur_sigma"] = parse_range(v["blur_sigma"], "--blur-sigma")
        at_least("gbp_images", v["gbp_images"], 0)
        return cls(**v, segmenter=args.segmenter, init=args.init)


def configure(parser):
    tiny = PRESETS["tiny"]
    common.add_common_args(parser, command=COMMAND, default_out="runs/expert", presets=PRESETS)
    parser.add_argument("--image-size", type=int, default=None,
                        help=f"side images are loaded at before the box crop (default {tiny['image_size']})")
    parser.add_argument("--crop", type=int, default=None,
                        help=f"side of the square box crop the classifier sees (default {tiny['crop']})")
    parser.add_argument("--widths", default=None,
                        help=f"channels per stage, two convs each (default {tiny['widths']})")
    parser.add_argument("--pool", choices=["max", "avg"], default=None,
                        help="global pooling before the classifier (default avg; max gave no "
                             "more focused GBP maps on the synthetic birds: 4.0x vs 4.2x)")
    parser.add_argument("--box-jitter", type=float, default=None,
                        help="random move of each box edge, fraction of the box side (default "
                             f"{tiny['box_jitter']})")
    parser.add_argument("--blur", type=float, default=None, metavar="P",
                        help="blur this fraction of the training crops (Gaussian, sigma uniform in "
                             "--blur-sigma); default 0. Without edges to go by, the expert has to "
                             "use the colour of a part's whole area (see docs/semantic_models.md)")
    parser.add_argument("--blur-sigma", default=None, metavar="LO,HI",
                        help=f"sigma range of --blur in crop pixels (default {tiny['blur_sigma']})")
    parser.add_argument("--segmenter", default=None, metavar="W",
                        help="Ψ weights: also report test accuracy on predicted masks and boxes")
    parser.add_argument("--init", default=None, metavar="W",
                        help="start from these expert weights (widths, pool and classes from the "
                             "file, --crop from the command line): fine-tune at a larger crop")
    parser.add_argument("--gbp-images", type=int, default=None,
                        help=f"test images for the GBP part-concentration figure (default "
                             f"{tiny['gbp_images']}; 0 = skip)")


def jitter_boxes(boxes, amount, gen=None):
    """Move each edge of (x, y, w, h) boxes by U(-amount, amount) x the box side, kept in [0, 1]."""
    if amount <= 0:
        return boxes
    x1, y1, w, h = boxes.unbind(1)
    d = (torch.rand(boxes.shape[0], 4, generator=gen) * 2 - 1) * amount
    nx1 = (x1 + d[:, 0] * w).clamp(0, 1)
    ny1 = (y1 + d[:, 1] * h).clamp(0, 1)
    nx2 = (x1 + w + d[:, 2] * w).clamp(0, 1)
    ny2 = (y1 + h + d[:, 3] * h).clamp(0, 1)
    nx2 = torch.maximum(nx2, nx1 + 1e-3)
    ny2 = torch.maximum(ny2, ny1 + 1e-3)
    return torch.stack([nx1, ny1, nx2 - nx1, ny2 - ny1], 1)


def gaussian_blur(images, sigma):
    """Blur each image [B, C, H, W] with its own Gaussian sigma [B] (pixels; 0 = unchanged).

    Separable, replicate padding, kernel radius ceil(3 * max sigma)."""
    smax = float(sigma.max()) if sigma.numel() else 0.0
    if smax <= 0:
        return images
    r = max(1, math.ceil(3 * smax))
    t = torch.arange(-r, r + 1, dtype=images.dtype, device=images.device)
    s = sigma.to(images).clamp(min=1e-3).view(-1, 1)
    k = torch.exp(-0.5 * (t.view(1, -1) / s) ** 2)
    k = torch.where(sigma.view(-1, 1) > 0, k, (t == 0).to(k).expand_as(k))  # sigma 0: identity
    k = k / k.sum(1, keepdim=True)
    b, c, h, w = images.shape
    # One group per (image, channel): each image gets its own kernel.
    kc = k.repeat_interleave(c, 0)
    x = images.reshape(1, b * c, h, w)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), kc.view(b * c, 1, 1, -1), groups=b * c)
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), kc.view(b * c, 1, -1, 1), groups=b * c)
    return x.view(b, c, h, w)


def parse_range(text, name):
    try:
        lo, hi = (float(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"{name} must be two comma-separated numbers, got {text!r}") from None
    if not 0 <= lo <= hi:
        raise UsageError(f"{name} must satisfy 0 <= LO <= HI, got {text!r}")
    return lo, hi


@torch.no_grad()
def accuracy(model, data, device, masks=None, boxes=None, batch_size=128):
    """Top-1 accuracy on the split, with the given (predicted) masks/boxes or the true ones."""
    was = model.training
    model.eval()
    correct = 0
    n = data["images"].shape[0]
    for s in range(0, n, batch_size):
        x = common.to_float(data["images"][s:s + batch_size]).to(device)
        m = (masks[s:s + batch_size] if masks is not None
             else common.to_float(data["masks"][s:s + batch_size])).to(device)
        b = (boxes[s:s + batch_size] if boxes is not None else data["boxes"][s:s + batch_size]).to(device)
        logits = model(expert_input(x, m, b, model.config.crop))
        correct += (logits.argmax(1).cpu() == data["labels"][s:s + batch_size]).sum().item()
    model.train(was)
    return correct / max(n, 1)


@torch.no_grad()
def predicted_masks_boxes(segmenter, data, device, batch_size=128):
    from sgfast.models.segmenter import predict
    ms, bs = [], []
    for s in range(0, data["images"].shape[0], batch_size):
        x = common.to_float(data["images"][s:s + batch_size]).to(device)
        m, b = predict(segmenter, x)
        ms.append(m.cpu())
        bs.append(b.cpu())
    return torch.cat(ms), torch.cat(bs)


def gbp_concentration(model, data, device, n):
    """Part concentration of G (sgfast.models.gbp.part_concentration) on n test images."""
    from sgfast.models.gbp import gbp_maps, part_concentration
    total = data["images"].shape[0]
    # Evenly spaced test images: the ids (and so the splits) are sorted by class.
    idx = torch.linspace(0, total - 1, min(n, total)).round().long().unique()
    x = common.to_float(data["images"][idx]).to(device)
    m = common.to_float(data["masks"][idx]).to(device)
    b = data["boxes"][idx].to(device)
    maps, _ = gbp_maps(model, x, m, b)
    return part_concentration(maps.cpu(), m.cpu(), common.to_float(data["parts"][idx]))


def model_config(cfg: ExpertTraining, ckpt, train_data):
    """The expert's config and the weights to start from: the checkpoint's (--resume), --init's at
    --crop, or the options' (classes from the train split)."""
    from dataclasses import replace

    if ckpt:
        return ExpertConfig.from_dict(ckpt["config"]), None
    if cfg.init:
        from sgfast.models.expert import load_expert
        try:
            init_model, _ = load_expert(cfg.init)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--init {cfg.init}: {exc}".replace("sgfast: ", "")) from None
        if cfg.crop < 2 ** (len(init_model.config.widths) - 1):
            raise UsageError(f"--crop {cfg.crop} is too small for {len(init_model.config.widths)} stages")
        # The network is fully convolutional with global pooling, so the weights fit any crop.
        return replace(init_model.config, crop=cfg.crop), init_model.state_dict()
    if cfg.crop < 2 ** (len(cfg.widths) - 1):
        raise UsageError(f"--crop {cfg.crop} is too small for {len(cfg.widths)} stages")
    return ExpertConfig(num_classes=int(train_data["num_classes"]), crop=cfg.crop, widths=cfg.widths,
                        class_names=tuple(train_data["class_names"]), pool=cfg.pool), None


@reports_errors(COMMAND)
def run(args):
    return train(ExpertTraining.from_args(args))


def train(cfg: ExpertTraining) -> int:
    run_opts = cfg.run
    apply_threads(run_opts)
    device = pick_device(run_opts.device)
    segmenter = None
    if cfg.segmenter:
        from sgfast.models.segmenter import load_segmenter
        try:
            segmenter, _ = load_segmenter(cfg.segmenter)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--segmenter {cfg.segmenter}: {exc}".replace("sgfast: ", "")) from None
        segmenter.to(device)
    ckpt = common.load_state(cfg, "expert")
    image_size = int(ckpt.get("image_size", cfg.image_size)) if ckpt else cfg.image_size

    torch.manual_seed(run_opts.seed)
    progress = run_opts.progress
    train_data = common.load_split(cfg.dataset, "train", image_size, cfg.limit, progress=progress)
    want_parts = cfg.gbp_images > 0
    try:
        test_data = common.load_split(cfg.dataset, "test", image_size, cfg.limit, parts=want_parts,
                                      progress=progress)
    except common.NoParts:
        want_parts = False
        test_data = common.load_split(cfg.dataset, "test", image_size, cfg.limit, progress=progress)
    config, init_state = model_config(cfg, ckpt, train_data)
    bad = int(max(train_data["labels"].max(), test_data["labels"].max()))
    if bad >= config.num_classes or int(min(train_data["labels"].min(), test_data["labels"].min())) < 0:
        raise UsageError(f"labels must be in [0, {config.num_classes}), found {bad}")

    model = Expert(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    s = common.setup_training(model, cfg, train_data["images"].shape[0], ckpt, device, COMMAND)
    model, opt, order, total = s.model, s.opt, s.order, s.total
    peak_lr, jitter = cfg.lr, cfg.box_jitter
    blur, blur_sigma = cfg.blur, cfg.blur_sigma
    if ckpt:  # the resumed run's own settings
        peak_lr = float(ckpt.get("peak_lr", cfg.lr))
        jitter = float(ckpt.get("box_jitter", cfg.box_jitter))
        blur = float(ckpt.get("blur", 0.0))
        blur_sigma = tuple(float(v) for v in ckpt.get("blur_sigma", blur_sigma))

    def checkpoint(step):
        common.save_state(run_opts.checkpoint, "expert", model, opt, step, total, config.to_dict(), order,
                          {"peak_lr": peak_lr, "box_jitter": jitter, "image_size": image_size,
                           "blur": blur, "blur_sigma": list(blur_sigma)})

    def train_step(step):
        idx, x, m, b = common.draw_batch(train_data, order)
        b = jitter_boxes(b, jitter)
        inp = expert_input(x.to(device), m.to(device), b.to(device), config.crop)
        if blur > 0:
            pick = torch.rand(len(idx)) < blur
            sigma = torch.where(pick, torch.empty(len(idx)).uniform_(*blur_sigma),
                                torch.zeros(len(idx)))
            inp = gaussian_blur(inp, sigma.to(device))
        inp = inp.contiguous(memory_format=s.memory_format)
        y = train_data["labels"][idx].to(device)
        logits = model(inp)
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        lr = common.optimiser_step(opt, loss, common.cosine_lr(step, total, peak_lr))
        return {"loss": loss.detach(), "accuracy": (logits.detach().argmax(1) == y).float().mean(), "lr": lr}

    with tensorboard(run_opts.tensorboard, s.step) as writer:
        def test_accuracy(step):
            if writer is not None:
                writer.add_scalar("test/accuracy", accuracy(model, test_data, device), step)

        model.train()
        t0 = time.time()
        result = run_loop(COMMAND, start=s.step, total=total, step=train_step, save=checkpoint,
                          ckpt_every=cfg.ckpt_every, ckpt_path=run_opts.checkpoint,
                          periodic=[Periodic(cfg.eval_every, test_accuracy, skip_last=True)],
                          writer=writer, progress=progress, desc="expert", time_limit=run_opts.time_limit)
        if result.stopped:
            return STOPPED_EXIT
        train_seconds = round(time.time() - t0, 1)
        metrics = {"accuracy": accuracy(model, test_data, device),
                   "test_images": int(test_data["images"].shape[0])}
        if segmenter is not None:
            pm, pb = predicted_masks_boxes(segmenter, test_data, device)
            metrics["accuracy_predicted_masks"] = accuracy(model, test_data, device, pm, pb)
        if want_parts:
            metrics["gbp_part_concentration"] = gbp_concentration(model, test_data, device, cfg.gbp_images)
        metrics["train_seconds"] = train_seconds
        metrics["steps"] = result.step
        common.report_test(metrics, writer, result.step)
    if cfg.export:
        meta = {"kind": "expert", "config": config.to_dict(), "test_metrics": metrics,
                "image_size": image_size, "dataset": os.path.abspath(cfg.dataset), "steps": result.step,
                "batch_size": s.batch_size, "lr": peak_lr, "box_jitter": jitter, "seed": run_opts.seed,
                "blur": blur, "blur_sigma": list(blur_sigma)}
        save_weights_fp16(cfg.export, model.state_dict(), meta)
        print(f"wrote {cfg.export}")
    return 0
