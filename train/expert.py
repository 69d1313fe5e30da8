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

import math
import os
import time

import torch
import torch.nn.functional as F

from sgfast.device import pick_device
from sgfast.io import save_weights_fp16
from sgfast.models.expert import Expert, ExpertConfig, expert_input
from train import semantic_common as common

DEFAULTS = dict(epochs=15, batch_size=64, lr=2e-3, weight_decay=5e-4)


def configure(parser):
    common.add_common_args(parser, "runs/expert", DEFAULTS)
    parser.add_argument("--image-size", type=int, default=128,
                        help="side images are loaded at before the box crop (default 128)")
    parser.add_argument("--crop", type=int, default=64,
                        help="side of the square box crop the classifier sees (default 64)")
    parser.add_argument("--widths", default="16,32,64,128",
                        help="channels per stage, two convs each (default 16,32,64,128)")
    parser.add_argument("--pool", choices=["max", "avg"], default="avg",
                        help="global pooling before the classifier (default avg; max gave no "
                             "more focused GBP maps on the synthetic birds: 4.0x vs 4.2x)")
    parser.add_argument("--box-jitter", type=float, default=0.08,
                        help="random move of each box edge, fraction of the box side (default 0.08)")
    parser.add_argument("--blur", type=float, default=0.0, metavar="P",
                        help="blur this fraction of the training crops (Gaussian, sigma uniform in "
                             "--blur-sigma); default 0. Without edges to go by, the expert has to "
                             "use the colour of a part's whole area (see docs/semantic_models.md)")
    parser.add_argument("--blur-sigma", default="0.5,1.5", metavar="LO,HI",
                        help="sigma range of --blur in crop pixels (default 0.5,1.5)")
    parser.add_argument("--segmenter", default=None, metavar="W",
                        help="Ψ weights: also report test accuracy on predicted masks and boxes")
    parser.add_argument("--init", default=None, metavar="W",
                        help="start from these expert weights (widths, pool and classes from the "
                             "file, --crop from the command line): fine-tune at a larger crop")
    parser.add_argument("--gbp-images", type=int, default=256,
                        help="test images for the GBP part-concentration figure (0 = skip)")


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
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise SystemExit(f"sgfast: {name} must be two comma-separated numbers, got {text!r}")
    if not 0 <= lo <= hi:
        raise SystemExit(f"sgfast: {name} must satisfy 0 <= LO <= HI, got {text!r}")
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


def run(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size < 1:
        raise SystemExit(f"sgfast: --batch-size must be >= 1, got {args.batch_size}")
    if not 0 <= args.box_jitter < 0.5:
        raise SystemExit(f"sgfast: --box-jitter must be in [0, 0.5), got {args.box_jitter}")
    if not 0 <= args.blur <= 1:
        raise SystemExit(f"sgfast: --blur must be in [0, 1], got {args.blur}")
    blur_lo, blur_hi = parse_range(args.blur_sigma, "--blur-sigma")
    device = pick_device(args.device)
    segmenter = None
    if args.segmenter:
        from sgfast.models.segmenter import load_segmenter
        segmenter, _ = load_segmenter(args.segmenter)
        segmenter.to(device)
    ckpt = None
    rpath = common.resume_path(args)
    if rpath:
        ckpt = common.load_training_state(rpath, "expert")
        image_size = int(ckpt.get("image_size", args.image_size))
    else:
        image_size = args.image_size

    torch.manual_seed(args.seed)
    progress = not args.no_progress
    train = common.load_split(args.dataset, "train", image_size, args.limit, progress=progress)
    want_parts = args.gbp_images > 0
    try:
        test = common.load_split(args.dataset, "test", image_size, args.limit, parts=want_parts,
                                 progress=progress)
    except common.NoParts:
        want_parts = False
        test = common.load_split(args.dataset, "test", image_size, args.limit, progress=progress)
    init_state = None
    if ckpt:
        config = ExpertConfig.from_dict(ckpt["config"])
    elif args.init:
        from dataclasses import replace
        from sgfast.models.expert import load_expert
        try:
            init_model, _ = load_expert(args.init)
        except (OSError, ValueError) as exc:
            raise SystemExit(f"sgfast: --init {args.init}: {exc}") from exc
        if args.crop < 2 ** (len(init_model.config.widths) - 1):
            raise SystemExit(f"sgfast: --crop {args.crop} is too small for "
                             f"{len(init_model.config.widths)} stages")
        # The network is fully convolutional with global pooling, so the weights fit any crop.
        config = replace(init_model.config, crop=args.crop)
        init_state = init_model.state_dict()
    else:
        try:
            widths = tuple(int(w) for w in args.widths.split(","))
        except ValueError:
            raise SystemExit(f"sgfast: --widths must be comma-separated integers, got {args.widths!r}")
        if args.crop < 2 ** (len(widths) - 1):
            raise SystemExit(f"sgfast: --crop {args.crop} is too small for {len(widths)} stages")
        config = ExpertConfig(num_classes=int(train["num_classes"]), crop=args.crop, widths=widths,
                              class_names=tuple(train["class_names"]), pool=args.pool)
    bad = int(max(train["labels"].max(), test["labels"].max()))
    if bad >= config.num_classes or int(min(train["labels"].min(), test["labels"].min())) < 0:
        raise SystemExit(f"sgfast: labels must be in [0, {config.num_classes}), found {bad}")

    model = Expert(config)
    if init_state is not None:
        model.load_state_dict(init_state)
    s = common.setup_training(model, args, train["images"].shape[0], ckpt, rpath, device)
    model, opt, order, step, total = s.model, s.opt, s.order, s.step, s.total
    batch_size, memory_format, ckpt_path = s.batch_size, s.memory_format, s.ckpt_path
    peak_lr, jitter = args.lr, args.box_jitter
    blur, blur_sigma = args.blur, (blur_lo, blur_hi)
    if ckpt:  # the resumed run's own settings
        peak_lr = float(ckpt.get("peak_lr", args.lr))
        jitter = float(ckpt.get("box_jitter", args.box_jitter))
        blur = float(ckpt.get("blur", 0.0))
        blur_sigma = tuple(float(v) for v in ckpt.get("blur_sigma", blur_sigma))
    writer = common.make_writer(args.log_dir)

    def checkpoint(step):
        common.save_training_state(ckpt_path, "expert", model, opt, step, total, config.to_dict(),
                                   order, {"peak_lr": peak_lr, "box_jitter": jitter,
                                           "image_size": image_size, "blur": blur,
                                           "blur_sigma": list(blur_sigma)})

    def train_step(step):
        idx, x, m, b = common.draw_batch(train, order)
        b = jitter_boxes(b, jitter)
        inp = expert_input(x.to(device), m.to(device), b.to(device), config.crop)
        if blur > 0:
            pick = torch.rand(len(idx)) < blur
            sigma = torch.where(pick, torch.empty(len(idx)).uniform_(*blur_sigma),
                                torch.zeros(len(idx)))
            inp = gaussian_blur(inp, sigma.to(device))
        inp = inp.contiguous(memory_format=memory_format)
        y = train["labels"][idx].to(device)
        logits = model(inp)
        loss = F.cross_entropy(logits, y, label_smoothing=0.05)
        lr = common.optimiser_step(opt, loss, common.cosine_lr(step, total, peak_lr))
        return {"loss": loss.detach(), "accuracy": (logits.detach().argmax(1) == y).float().mean(), "lr": lr}

    model.train()
    t0 = time.time()
    step, stopped = common.training_loop(
        step, total, train_step, checkpoint, desc="expert", progress=progress, writer=writer,
        eval_every=args.eval_every, ckpt_every=args.ckpt_every,
        test_metrics=lambda: {"accuracy": accuracy(model, test, device)}, ckpt_path=ckpt_path)
    if stopped:
        return 130
    train_seconds = round(time.time() - t0, 1)
    metrics = {"accuracy": accuracy(model, test, device), "test_images": int(test["images"].shape[0])}
    if segmenter is not None:
        pm, pb = predicted_masks_boxes(segmenter, test, device)
        metrics["accuracy_predicted_masks"] = accuracy(model, test, device, pm, pb)
    if want_parts:
        metrics["gbp_part_concentration"] = gbp_concentration(model, test, device, args.gbp_images)
    metrics["train_seconds"] = train_seconds
    metrics["steps"] = step
    common.report_test(metrics, writer, step)
    if args.export:
        meta = {"kind": "expert", "config": config.to_dict(), "test_metrics": metrics,
                "image_size": image_size, "dataset": os.path.abspath(args.dataset), "steps": step,
                "batch_size": batch_size, "lr": peak_lr, "box_jitter": jitter, "seed": args.seed,
                "blur": blur, "blur_sigma": list(blur_sigma)}
        save_weights_fp16(args.export, model.state_dict(), meta)
        print(f"wrote {args.export}")
    return 0
