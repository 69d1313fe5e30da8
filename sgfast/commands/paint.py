"""`sgfast paint IMG... --out DIR`: paint images with a trained agent and write, per image, a folder
DIR/<name>/ with painting.png, fg.png / bg.png (sg mode: each layer's strokes alone on a blank
canvas), target.png, mask.png (the S the strokes were gated by; mask_<i>.png per instance),
progress.gif (Pillow, one adaptive palette), progress.mp4 (H.264, plays in browsers), strokes.json,
strokes.svg and, with --size N, painting_<N>.png (the strokes re-rendered exactly at N px). Each
folder is written to a temporary name and renamed when complete (a failed write, the MP4's included,
raises and leaves no partial folder); files and folders get the permissions the umask gives. See
sgfast/paint.py for the Python API.
"""
from __future__ import annotations

import os
import sys
import tempfile

from sgfast.paint.instances import DEFAULT_MIN_GAIN, check_min_gain


def _min_gain(text):
    """--min-gain: a fraction in [0, 1), or 'off' (plain Eq. 16)."""
    import argparse

    if text.strip().lower() == "off":
        return None
    try:
        return check_min_gain(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) or 'off', got {text!r}") from None


def configure(parser):
    parser.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    parser.add_argument("--out", default="out/paint", help="output folder (default: %(default)s)")
    parser.add_argument("--mode", choices=("sg", "baseline"), default="sg",
                        help="semantic guidance (fg/bg strokes) or the Learning-to-Paint baseline")
    parser.add_argument("--steps", type=int, default=None, help="agent steps (default: the agent's episode)")
    parser.add_argument("--actor", default=None, help="agent weights (default: the shipped agent_<mode>_tiny.pt)")
    parser.add_argument("--renderer", default=None, help="renderer weights (default: the shipped renderer_tiny.pt)")
    parser.add_argument("--segmenter", default=None, help="Ψ weights (default: the shipped segmenter_tiny.pt)")
    parser.add_argument("--expert", default=None, help="expert weights (default: the shipped expert_tiny.pt)")
    parser.add_argument("--mask", nargs="+", default=None, metavar="FILE",
                        help="one foreground mask per image (instead of Ψ); '-' = predict that one")
    parser.add_argument("--box", nargs="+", default=None, metavar="FILE",
                        help="one box file per image: 'x y w h' normalised, x horizontal; '-' = default")
    parser.add_argument("--instances", nargs="+", default=None, metavar="A.png,B.png",
                        help="per image, comma-separated instance masks (Eq. 16: each step paints the "
                             "instance with the largest remaining error)")
    parser.add_argument("--bg-gate", choices=("chosen", "union"), default="chosen",
                        help="with --instances, what background strokes keep off: the step's instance "
                             "(default; the others count as background) or every instance "
                             "(docs/painting.md)")
    parser.add_argument("--min-gain", type=_min_gain, default=DEFAULT_MIN_GAIN, metavar="F|off",
                        help="with --instances, an instance whose painting lowered its error by less than "
                             f"this fraction of its lowest so far is not chosen again while others are "
                             f"(default {DEFAULT_MIN_GAIN}); 'off' = plain Eq. 16 (docs/painting.md)")
    parser.add_argument("--size", type=int, default=None,
                        help="also re-render the strokes exactly at this side (painting_<N>.png)")
    parser.add_argument("--supersample", type=int, default=4, help="exact re-render samples per pixel side")
    parser.add_argument("--frames", choices=("step", "stroke"), default="step",
                        help="one progress frame per step (default) or per stroke")
    parser.add_argument("--frame-size", type=int, default=128, help="GIF/MP4 frame side (nearest upscale)")
    parser.add_argument("--no-video", action="store_true", help="skip the GIF and MP4")
    parser.add_argument("--batch-size", type=int, default=8, help="images painted together (default 8)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--ops", choices=("fused", "eager"), default="fused",
                        help="fused sgfast ops or the eager references")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--method", choices=("agent", "optimize"), default="agent",
                        help="paint with the agent, or optimise --strokes strokes directly by Adam through the "
                             "renderer (Neural Painters; no agent needed)")
    parser.add_argument("--divide", type=int, default=1, metavar="D",
                        help="grid refinement (Learning to Paint's test.py): the second half of the steps paint "
                             "D x D patches of the canvas upscaled to D x the agent's size (sg mode: with each "
                             "patch's crops of S and G); D in 1..16")
    parser.add_argument("--strokes", type=int, default=100, help="--method optimize: number of strokes")
    parser.add_argument("--iters", type=int, default=200, help="--method optimize: Adam iterations")
    parser.add_argument("--lr", type=float, default=0.1, help="--method optimize: Adam learning rate")
    parser.add_argument("--nu", type=float, default=0.0,
                        help="--method optimize: weight of the focus term (Eq. 14; G from Ψ + the expert)")


def _per_image(values, n, flag):
    if values is None:
        return None
    if len(values) != n:
        raise SystemExit(f"sgfast paint: {flag}: {len(values)} given for {n} images (one per image, '-' to skip)")
    return [None if v == "-" else v for v in values]


def unique_names(results):
    seen = {}
    names = []
    for r in results:
        n = r.name
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return names


def run(args):
    import torch

    from sgfast import metrics
    from sgfast.paint import PaintError, paint
    from sgfast.paint.export import write_result

    if args.threads:
        torch.set_num_threads(args.threads)
    n = len(args.images)
    masks = _per_image(args.mask, n, "--mask")
    boxes = _per_image(args.box, n, "--box")
    inst = _per_image(args.instances, n, "--instances")
    if inst is not None:
        inst = [None if v is None else [p for p in v.split(",") if p] for v in inst]
    if args.size is not None and not 8 <= args.size <= 16384:
        raise SystemExit(f"sgfast paint: --size must be in [8, 16384], got {args.size}")
    # Refuse an unwritable output folder before spending time painting.
    try:
        os.makedirs(args.out, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=args.out, prefix=".probe", delete=True)
        probe.close()
    except OSError as exc:
        print(f"sgfast paint: error: cannot write to --out {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    try:
        results = paint(args.images, mode=args.mode, steps=args.steps, actor=args.actor,
                        renderer=args.renderer, segmenter=args.segmenter, expert=args.expert, masks=masks,
                        boxes=boxes, instances=inst, device=args.device, ops=args.ops,
                        batch_size=args.batch_size, frames="none" if args.no_video else args.frames,
                        progress=not args.no_progress, method=args.method, strokes=args.strokes,
                        iters=args.iters, lr=args.lr, nu=args.nu, divide=args.divide, bg_gate=args.bg_gate,
                        min_gain=args.min_gain)
    except PaintError as exc:
        print(f"sgfast paint: error: {exc}", file=sys.stderr)
        return 2
    failed = 0
    for r, name in zip(results, unique_names(results)):
        if not r.ok:
            failed += 1
            print(f"sgfast paint: skipped {r.name}: {r.error}", file=sys.stderr)
            continue
        folder = os.path.join(args.out, name)
        try:
            write_result(r, folder, args.size, args.supersample, args.frame_size, not args.no_video, args.device,
                         args.ops)
        except Exception as exc:  # noqa: BLE001 (one image's outputs failing must not cost the batch's)
            failed += 1
            print(f"sgfast paint: could not write {folder}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        l2 = float(metrics.l2(r.target[None], r.canvas[None]))
        print(f"{folder}: {len(r.strokes)} strokes, L2 {l2:.4f}")
    print(f"sgfast paint: {n - failed} of {n} images painted -> {args.out}", file=sys.stderr)
    return 1 if failed else 0
