"""`sgfast train-segmenter`: train Ψ (foreground mask + box) on a CUB-layout dataset.

Loss: binary cross-entropy on the per-pixel foreground logit plus Smooth L1 on the box corners
(per pixel on the true foreground, and on the aggregated box); see sgfast/models/segmenter.py.
Augmentation: random horizontal flips (boxes flipped with the image). Adam with a cosine schedule.
With --zoom-pass M (Ψ's second, zoomed pass; sgfast/models/segmenter.py) a share of every batch
(--zoom-fraction) is replaced by windows around the jittered true box, resampled to the input size
as `predict` does around pass 1's box, so the same network learns birds that fill the frame.
The test split is evaluated at the end (mask IoU at threshold 0.5, mean over images and pooled;
mean box IoU); the figures go into the checkpoint and the exported weights' meta.
"""
from __future__ import annotations

import os
import time

import torch

from sgfast.device import pick_device
from sgfast.io import save_weights_fp16
from sgfast.models.segmenter import (Segmenter, SegmenterConfig, box_iou, crop_windows,
                                     image_box_to_window, mask_iou, predict, segmenter_loss,
                                     zoom_windows)
from train import semantic_common as common

DEFAULTS = dict(epochs=12, batch_size=32, lr=3e-3, weight_decay=1e-4)


def configure(parser):
    common.add_common_args(parser, "runs/segmenter", DEFAULTS)
    parser.add_argument("--size", type=int, default=64,
                        help="side the images are resized to and Ψ runs at (default 64)")
    parser.add_argument("--input-scale", type=int, default=1,
                        help="read images at SIZE x this and fold each cell's pixels into channels "
                             "(masks stay at SIZE; default 1)")
    parser.add_argument("--widths", default="16,32,48,64,96",
                        help="U-Net channels per level (default 16,32,48,64,96)")
    parser.add_argument("--init", default=None, metavar="W",
                        help="start from these Ψ weights (widths and options from the file, "
                             "--size from the command line): e.g. train at 64 px, then at 128")
    parser.add_argument("--box-level", type=int, default=0,
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
    parser.add_argument("--zoom-fraction", type=float, default=0.5,
                        help="share of each batch replaced by zoomed windows (default 0.5)")
    parser.add_argument("--zoom-jitter", type=float, default=0.1,
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


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1:
        raise SystemExit(f"sgfast: --batch-size must be >= 1, got {args.batch_size}")
    device = pick_device(args.device)
    ckpt = init_state = None
    rpath = common.resume_path(args)
    if rpath:
        ckpt = common.load_training_state(rpath, "segmenter")
        try:
            config = SegmenterConfig.from_dict(ckpt["config"])
        except ValueError as exc:
            raise SystemExit(f"sgfast: {rpath}: {exc}") from exc
    elif args.init:
        from dataclasses import replace

        from sgfast.models.segmenter import load_segmenter
        try:
            init_model, _ = load_segmenter(args.init)
        except (OSError, ValueError, RuntimeError) as exc:
            raise SystemExit(f"sgfast: --init {args.init}: {exc}") from exc
        # Fully convolutional: the weights fit any size divisible by the stride.
        config = replace(init_model.config, size=args.size)
        if args.zoom_pass is not None:
            config = replace(config, refine_margin=args.zoom_pass)
        if args.zoom_min_side is not None:
            config = replace(config, refine_min_side=args.zoom_min_side)
        if args.flip_average:
            config = replace(config, flip_average=True)
        init_state = init_model.state_dict()
    else:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise SystemExit(f"sgfast: --widths must be comma-separated integers, got {args.widths!r}")
        if args.input_scale < 1:
            raise SystemExit(f"sgfast: --input-scale must be >= 1, got {args.input_scale}")
        config = SegmenterConfig(size=args.size, widths=widths, input_scale=args.input_scale,
                                 thin_top=args.thin_top, box_level=args.box_level,
                                 refine_margin=args.zoom_pass or 0.0,
                                 refine_min_side=(0.25 if args.zoom_min_side is None
                                                  else args.zoom_min_side),
                                 flip_average=args.flip_average)
        if not 0 <= args.box_level < len(widths):
            raise SystemExit(f"sgfast: --box-level must be in [0, {len(widths) - 1}] for "
                             f"--widths {args.widths}, got {args.box_level}")
    if config.refine_margin and config.refine_margin < 1:
        raise SystemExit(f"sgfast: --zoom-pass must be 0 (off) or >= 1, got {config.refine_margin}")
    if not 0 < config.refine_min_side <= 1:
        raise SystemExit(f"sgfast: --zoom-min-side must be in (0, 1], got {config.refine_min_side}")
    if not 0 <= args.zoom_fraction <= 1:
        raise SystemExit(f"sgfast: --zoom-fraction must be in [0, 1], got {args.zoom_fraction}")
    if args.zoom_jitter < 0:
        raise SystemExit(f"sgfast: --zoom-jitter must be >= 0, got {args.zoom_jitter}")
    stride = 2 ** (len(config.widths) - 1)
    if config.size % stride:
        raise SystemExit(f"sgfast: --size {config.size} must be divisible by {stride} "
                         f"(2^(levels-1) for --widths {','.join(map(str, config.widths))})")

    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train = load_data(args.dataset, "train", config, args.limit, progress)
    test = load_data(args.dataset, "test", config, args.limit, progress)
    model = Segmenter(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    s = common.setup_training(model, args, train["images"].shape[0], ckpt, rpath, device)
    model, opt, order, step, total = s.model, s.opt, s.order, s.step, s.total
    batch_size, memory_format, ckpt_path = s.batch_size, s.memory_format, s.ckpt_path
    peak_lr = float(ckpt.get("peak_lr", args.lr)) if ckpt else args.lr
    writer = common.make_writer(args.log_dir)

    def checkpoint(step):
        common.save_training_state(ckpt_path, "segmenter", model, opt, step, total,
                                   config.to_dict(), order, {"peak_lr": peak_lr})

    def train_step(step):
        idx, x, m, b = common.draw_batch(train, order)
        if config.refine_margin:
            # The batch's first zoom_fraction become windows (the order is already random).
            k = round(args.zoom_fraction * len(idx))
            if k:
                zx, zm, zb = zoom_batch(x[:k], m[:k], b[:k], config.refine_margin,
                                        config.refine_min_side, args.zoom_jitter)
                x, m, b = torch.cat([zx, x[k:]]), torch.cat([zm, m[k:]]), torch.cat([zb, b[k:]])
        x, m, b = x.to(device).contiguous(memory_format=memory_format), m.to(device), b.to(device)
        loss, parts = segmenter_loss(model(x), m, b)
        lr = common.optimiser_step(opt, loss, common.cosine_lr(step, total, peak_lr))
        return {"loss": loss.detach(), "lr": lr, **parts}

    model.train()
    t0 = time.time()
    step, stopped = common.training_loop(
        step, total, train_step, checkpoint, desc="segmenter", progress=progress, writer=writer,
        eval_every=args.eval_every, ckpt_every=args.ckpt_every,
        test_metrics=lambda: evaluate(model, test, device), ckpt_path=ckpt_path)
    if stopped:
        return 130
    metrics = evaluate(model, test, device)
    metrics["train_seconds"] = round(time.time() - t0, 1)
    metrics["steps"] = step
    common.report_test(metrics, writer, step)
    if args.export:
        meta = {"kind": "segmenter", "config": config.to_dict(), "test_metrics": metrics,
                "dataset": os.path.abspath(args.dataset), "steps": step,
                "batch_size": batch_size, "lr": peak_lr, "seed": args.seed,
                "init": os.path.abspath(args.init) if args.init else None,
                "zoom_fraction": args.zoom_fraction if config.refine_margin else None,
                "zoom_jitter": args.zoom_jitter if config.refine_margin else None}
        save_weights_fp16(args.export, model.state_dict(), meta)
        print(f"wrote {args.export}")
    return 0
