"""`sgfast train-segmenter`: train Ψ (foreground mask + box) on a CUB-layout dataset.

Loss: binary cross-entropy on the per-pixel foreground logit plus Smooth L1 on the box corners
(per pixel on the true foreground, and on the aggregated box); see sgfast/models/segmenter.py.
Augmentation: random horizontal flips (boxes flipped with the image). AdamW with a cosine schedule.
With --zoom-pass M (Ψ's second, zoomed pass; sgfast/models/segmenter.py) a share of every batch
(--zoom-fraction) is replaced by windows around the jittered true box, resampled to the input size
as `predict` does around pass 1's box, so the same network learns birds that fill the frame.
The test split is evaluated at the end (mask IoU at threshold 0.5, mean over images and pooled;
mean box IoU); the figures go into the checkpoint and the exported weights' meta.
"""
from __future__ import annotations

import dataclasses
import os
import time

import torch

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.device import pick_device
from sgfast.io import save_weights_fp16
from sgfast.models.segmenter import (Segmenter, SegmenterConfig, box_iou, crop_windows,
                                     image_box_to_window, mask_iou, predict, segmenter_loss,
                                     zoom_windows)
from sgfast.train import semantic_common as common
from sgfast.train.loop import STOPPED_EXIT, Periodic, run_loop, tensorboard
from sgfast.train.options import apply_threads, at_least, int_list, within

COMMAND = "train-segmenter"

# Training presets (--config); every key is also an option that overrides it.
PRESETS = {
    "tiny": dict(epochs=12, steps=None, batch_size=32, lr=3e-3, weight_decay=1e-4, ckpt_every=200,
                 eval_every=0, limit=None, size=64, widths="16,32,48,64,96", input_scale=1, box_level=0,
                 zoom_fraction=0.5, zoom_jitter=0.1),
    "smoke": dict(epochs=1, steps=4, batch_size=4, lr=3e-3, weight_decay=1e-4, ckpt_every=2,
                  eval_every=0, limit=None, size=32, widths="8,12,16", input_scale=1, box_level=0,
                  zoom_fraction=0.5, zoom_jitter=0.1),
}


@dataclasses.dataclass(frozen=True)
class SegmenterTraining(common.SupervisedOptions):
    """Everything a train-segmenter run uses, built once from the command line (from_args)."""
    size: int
    widths: tuple
    input_scale: int
    box_level: int
    thin_top: bool
    zoom_pass: float | None       # None: not given (a fresh model has none; --init keeps its own)
    zoom_min_side: float | None
    flip_average: bool
    zoom_fraction: float
    zoom_jitter: float
    init: str | None

    @classmethod
    def from_args(cls, args) -> "SegmenterTraining":
        v = common.common_values(args, PRESETS, COMMAND)
        v["widths"] = int_list("widths", v["widths"])
        at_least("size", v["size"], 8)
        at_least("input_scale", v["input_scale"], 1)
        at_least("box_level", v["box_level"], 0)
        within("zoom_fraction", v["zoom_fraction"], 0, 1)
        at_least("zoom_jitter", v["zoom_jitter"], 0)
        return cls(**v, thin_top=args.thin_top, zoom_pass=args.zoom_pass, zoom_min_side=args.zoom_min_side,
                   flip_average=args.flip_average, init=args.init)


def configure(parser):
    tiny = PRESETS["tiny"]
    common.add_common_args(parser, command=COMMAND, default_out="runs/segmenter", presets=PRESETS)
    parser.add_argument("--size", type=int, default=None,
                        help=f"side the images are resized to and Ψ runs at (default {tiny['size']})")
    parser.add_argument("--input-scale", type=int, default=None,
                        help="read images at SIZE x this and fold each cell's pixels into channels "
                             "(masks stay at SIZE; default 1)")
    parser.add_argument("--widths", default=None,
                        help=f"U-Net channels per level (default {tiny['widths']})")
    parser.add_argument("--init", default=None, metavar="W",
                        help="start from these Ψ weights (widths and options from the file, "
                             "--size from the command line): e.g. train at 64 px, then at 128")
    parser.add_argument("--box-level", type=int, default=None,
                        help="box head on the decoder level this many halvings below full "
                             "resolution, corners upsampled (default 0: full resolution)")
    parser.add_argument("--thin-top", action="store_true",
                        help="one conv instead of two in the full-resolution level's blocks "
                             "(cheaper at --size 128)")
    parser.add_argument("--zoom-pass", type=float, default=None, metavar="M",
                        help="second, zoomed pass: predict reruns Ψ on a square window M x the "
                             "pass-1 box's longer side (e.g. 1.5; 0 = off, the default; stored in "
                             "the weights); training mixes such windows into the batches")
    parser.add_argument("--zoom-min-side", type=float, default=None, metavar="F",
                        help="smallest zoom window, as a fraction of the image side (default 0.25)")
    parser.add_argument("--flip-average", action="store_true",
                        help="predict (and so the test figures) averages the image's and its "
                             "mirror image's masks and boxes (stored in the weights; 2x the cost)")
    parser.add_argument("--zoom-fraction", type=float, default=None,
                        help="share of each batch replaced by zoomed windows (default 0.5)")
    parser.add_argument("--zoom-jitter", type=float, default=None,
                        help="true box edges moved by up to this x its longer side before the "
                             "window is cut, like pass 1's box errors (default 0.1)")


def zoom_batch(images, masks, boxes, margin, min_side, jitter, generator=None):
    """Windows around jittered true boxes, as predict's pass 2 cuts around pass 1's box: images
    at the input size, masks at the output size, boxes in window coordinates (clipped to it).
    Each box edge moves by up to jitter x the longer side and the margin by up to +-10 %."""
    n = images.shape[0]
    r = torch.rand(n, 5, generator=generator) * 2 - 1  # [-1, 1)
    longer = boxes[:, 2:].amax(1, keepdim=True)
    x1y1 = boxes[:, :2] + r[:, :2] * jitter * longer
    x2y2 = boxes[:, :2] + boxes[:, 2:] + r[:, 2:4] * jitter * longer
    x2y2 = torch.maximum(x2y2, x1y1 + 1e-3)
    jittered = torch.cat([x1y1, x2y2 - x1y1], 1)
    windows = zoom_windows(jittered, margin * (1 + 0.1 * r[:, 4]).clamp(min=1 / margin), min_side)
    return (crop_windows(images, windows, images.shape[-1]),
            crop_windows(masks, windows, masks.shape[-1]).clamp(0, 1),
            image_box_to_window(boxes, windows))


def load_data(dataset, split, config, limit=None, progress=False):
    """A split with masks and boxes at config.size and images at config.input_size."""
    data = common.load_split(dataset, split, config.size, limit, progress=progress)
    if config.input_scale > 1:
        data["images"] = common.load_split(dataset, split, config.input_size, limit,
                                           progress=progress)["images"]
    return data


@torch.no_grad()
def evaluate(model, data, device, batch_size=128):
    """Test metrics: mask_iou (mean per image), mask_iou_pooled, box_iou (mean), pixel_acc, from
    `predict` (so with the zoomed second pass when the model's config asks for it)."""
    was = model.training
    model.eval()
    ious, bious = [], []
    inter = union = correct = total = 0
    for s in range(0, data["images"].shape[0], batch_size):
        x = common.to_float(data["images"][s:s + batch_size]).to(device)
        m = common.to_float(data["masks"][s:s + batch_size]).to(device)
        b = data["boxes"][s:s + batch_size].to(device)
        # predict: the path every caller uses (with the zoomed pass when the config has it).
        p, box = predict(model, x, out_size=m.shape[-1])
        ious.append(mask_iou(p, m).cpu())
        bious.append(box_iou(box, b).cpu())
        pb, tb = p > 0.5, m > 0.5
        inter += (pb & tb).sum().item()
        union += (pb | tb).sum().item()
        correct += (pb == tb).sum().item()
        total += tb.numel()
    model.train(was)
    return {"mask_iou": torch.cat(ious).mean().item(), "mask_iou_pooled": inter / max(union, 1),
            "box_iou": torch.cat(bious).mean().item(), "pixel_acc": correct / max(total, 1),
            "test_images": int(data["images"].shape[0])}


def model_config(cfg: SegmenterTraining, ckpt):
    """Ψ's config and the weights to start from: the checkpoint's (--resume), --init's widths and
    options at --size, or the options'."""
    from dataclasses import replace

    init_state = None
    if ckpt:
        try:
            config = SegmenterConfig.from_dict(ckpt["config"])
        except ValueError as exc:
            raise UsageError(f"--resume {cfg.run.resume}: {exc}") from None
    elif cfg.init:
        from sgfast.models.segmenter import load_segmenter
        try:
            init_model, _ = load_segmenter(cfg.init)
        except (OSError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--init {cfg.init}: {exc}".replace("sgfast: ", "")) from None
        # Fully convolutional: the weights fit any size divisible by the stride.
        config = replace(init_model.config, size=cfg.size)
        if cfg.zoom_pass is not None:
            config = replace(config, refine_margin=cfg.zoom_pass)
        if cfg.zoom_min_side is not None:
            config = replace(config, refine_min_side=cfg.zoom_min_side)
        if cfg.flip_average:
            config = replace(config, flip_average=True)
        init_state = init_model.state_dict()
    else:
        if not cfg.box_level < len(cfg.widths):
            raise UsageError(f"--box-level must be in [0, {len(cfg.widths) - 1}] for "
                             f"--widths {','.join(map(str, cfg.widths))}, got {cfg.box_level}")
        config = SegmenterConfig(size=cfg.size, widths=cfg.widths, input_scale=cfg.input_scale,
                                 thin_top=cfg.thin_top, box_level=cfg.box_level,
                                 refine_margin=cfg.zoom_pass or 0.0,
                                 refine_min_side=0.25 if cfg.zoom_min_side is None else cfg.zoom_min_side,
                                 flip_average=cfg.flip_average)
    if config.refine_margin and config.refine_margin < 1:
        raise UsageError(f"--zoom-pass must be 0 (off) or >= 1, got {config.refine_margin}")
    if not 0 < config.refine_min_side <= 1:
        raise UsageError(f"--zoom-min-side must be in (0, 1], got {config.refine_min_side}")
    stride = 2 ** (len(config.widths) - 1)
    if config.size % stride:
        raise UsageError(f"--size {config.size} must be divisible by {stride} "
                         f"(2^(levels-1) for --widths {','.join(map(str, config.widths))})")
    return config, init_state


@reports_errors(COMMAND)
def run(args):
    return train(SegmenterTraining.from_args(args))


def train(cfg: SegmenterTraining) -> int:
    run_opts = cfg.run
    apply_threads(run_opts)
    device = pick_device(run_opts.device)
    ckpt = common.load_state(cfg, "segmenter")
    config, init_state = model_config(cfg, ckpt)

    torch.manual_seed(run_opts.seed)
    progress = run_opts.progress
    train_data = load_data(cfg.dataset, "train", config, cfg.limit, progress)
    test_data = load_data(cfg.dataset, "test", config, cfg.limit, progress)
    model = Segmenter(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    s = common.setup_training(model, cfg, train_data["images"].shape[0], ckpt, device, COMMAND)
    model, opt, order, total = s.model, s.opt, s.order, s.total
    peak_lr = float(ckpt.get("peak_lr", cfg.lr)) if ckpt else cfg.lr
    zoom_fraction, zoom_jitter = cfg.zoom_fraction, cfg.zoom_jitter

    def checkpoint(step):
        common.save_state(run_opts.checkpoint, "segmenter", model, opt, step, total, config.to_dict(),
                          order, {"peak_lr": peak_lr})

    def train_step(step):
        idx, x, m, b = common.draw_batch(train_data, order)
        if config.refine_margin:
            # The batch's first zoom_fraction become windows (the order is already random).
            k = round(zoom_fraction * len(idx))
            if k:
                zx, zm, zb = zoom_batch(x[:k], m[:k], b[:k], config.refine_margin,
                                        config.refine_min_side, zoom_jitter)
                x, m, b = torch.cat([zx, x[k:]]), torch.cat([zm, m[k:]]), torch.cat([zb, b[k:]])
        x, m, b = x.to(device).contiguous(memory_format=s.memory_format), m.to(device), b.to(device)
        loss, parts = segmenter_loss(model(x), m, b)
        lr = common.optimiser_step(opt, loss, common.cosine_lr(step, total, peak_lr))
        return {"loss": loss.detach(), "lr": lr, **parts}

    with tensorboard(run_opts.tensorboard, s.step) as writer:
        def test_figures(step):
            for k, v in evaluate(model, test_data, device).items():
                if writer is not None:
                    writer.add_scalar(f"test/{k}", v, step)

        model.train()
        t0 = time.time()
        result = run_loop(COMMAND, start=s.step, total=total, step=train_step, save=checkpoint,
                          ckpt_every=cfg.ckpt_every, ckpt_path=run_opts.checkpoint,
                          periodic=[Periodic(cfg.eval_every, test_figures, skip_last=True)],
                          writer=writer, progress=progress, desc="segmenter",
                          time_limit=run_opts.time_limit)
        if result.stopped:
            return STOPPED_EXIT
        metrics = evaluate(model, test_data, device)
        metrics["train_seconds"] = round(time.time() - t0, 1)
        metrics["steps"] = result.step
        common.report_test(metrics, writer, result.step)
    if cfg.export:
        meta = {"kind": "segmenter", "config": config.to_dict(), "test_metrics": metrics,
                "dataset": os.path.abspath(cfg.dataset), "steps": result.step,
                "batch_size": s.batch_size, "lr": peak_lr, "seed": run_opts.seed,
                "init": os.path.abspath(cfg.init) if cfg.init else None,
                "zoom_fraction": zoom_fraction if config.refine_margin else None,
                "zoom_jitter": zoom_jitter if config.refine_margin else None}
        save_weights_fp16(cfg.export, model.state_dict(), meta)
        print(f"wrote {cfg.export}")
    return 0
