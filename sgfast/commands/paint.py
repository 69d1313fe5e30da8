"""`sgfast paint IMG... --out DIR`: paint images (--method exact, the default: strokes optimised
coarse to fine through the exact renderer at the image's own shape; --method agent: a trained agent;
--method optimize: Adam through the neural renderer) and write, per image, a folder DIR/<name>/ with
painting.png, fg.png / bg.png (sg mode: each layer's strokes alone on a blank canvas), target.png,
mask.png (the S the strokes were gated by; mask_<i>.png per instance), progress.gif (Pillow, one
adaptive palette), progress.mp4 (H.264, plays in browsers), strokes.json, strokes.svg and, with
--size N and a method other than exact, painting_<N>.png (the strokes re-rendered exactly at N px).
Each folder is written to a temporary name and renamed when complete (a failed write, the MP4's
included, raises and leaves no partial folder); files and folders get the permissions the umask
gives. See sgfast/paint.py for the Python API.
"""
from __future__ import annotations

import os
import sys

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import (at_least, check_ops, check_threads, reason, refuse_ignored, within,
                                     writable_folder)
from sgfast.paint.exact_painter import DEFAULT_INIT, INITS
from sgfast.paint.instances import DEFAULT_MIN_GAIN, check_min_gain

OFF = "off"  # --min-gain off (plain Eq. 16); None means the option was not given

# The options whose use depends on --mode / --method default to None in argparse, so that an option
# the user gave can be told from one left at its default: one a mode would ignore is refused (one
# line, exit 2). These are the defaults they take otherwise.
DEFAULTS = {"mode": "sg", "bg_gate": "chosen", "min_gain": DEFAULT_MIN_GAIN, "divide": 1, "strokes": 100,
            "iters": 200, "lr": 0.1, "nu": 0.0, "supersample": 4, "frames": "step", "frame_size": 128}
SG_ONLY = ["mask", "box", "instances", "bg_gate", "min_gain", "segmenter", "expert"]
AGENT_ONLY = ["mode", "steps", "actor", "divide", "instances", "bg_gate", "min_gain"]
OPTIMIZE_ONLY = ["strokes", "iters", "lr", "nu"]
FOCUS_ONLY = ["mask", "box", "segmenter", "expert"]  # --method optimize: used by the focus term (--nu > 0)
INSTANCES_ONLY = ["bg_gate", "min_gain"]
EXACT_IGNORES = ["steps", "divide", "instances", "bg_gate", "min_gain", "iters", "lr", "supersample", "box"]
EXACT_SG_ONLY = ["mask", "segmenter", "expert", "nu"]  # --method exact: the guidance of mode sg
AGENT_INIT_ONLY = ["actor", "renderer"]  # --method exact: the agent that paints first (--init agent)


def _min_gain(text):
    """--min-gain: a fraction in [0, 1), or 'off' (plain Eq. 16)."""
    import argparse

    if text.strip().lower() == OFF:
        return OFF
    try:
        return check_min_gain(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1) or 'off', got {text!r}") from None


def configure(parser):
    parser.add_argument("images", nargs="+", help="image files (any format OpenCV reads)")
    parser.add_argument("--out", default="out/paint", help="output folder (default: %(default)s)")
    parser.add_argument("--mode", choices=("sg", "baseline"), default=None,
                        help="semantic guidance (fg/bg strokes; default) or the Learning-to-Paint baseline")
    parser.add_argument("--steps", type=int, default=None, help="agent steps (default: the agent's episode)")
    parser.add_argument("--actor", default=None, help="agent weights (default: the shipped agent_<mode>_tiny.pt)")
    parser.add_argument("--renderer", default=None, help="renderer weights (default: the shipped renderer_tiny.pt)")
    parser.add_argument("--segmenter", default=None,
                        help="--method exact: Ψ weights or torchvision:NAME (a segmentation or detection model, "
                             "weights from the torch hub cache; default: the whole image is foreground); "
                             "--method agent: Ψ weights (default: the shipped segmenter_tiny.pt)")
    parser.add_argument("--expert", default=None,
                        help="--method exact: expert weights or torchvision:NAME (an ImageNet classifier; default: "
                             "G from image detail); --method agent: expert weights (default: the shipped "
                             "expert_tiny.pt)")
    parser.add_argument("--mask", nargs="+", default=None, metavar="FILE",
                        help="one foreground mask per image (instead of Ψ); '-' = predict that one")
    parser.add_argument("--box", nargs="+", default=None, metavar="FILE",
                        help="one box file per image: 'x y w h' normalised, x horizontal; '-' = default")
    parser.add_argument("--instances", nargs="+", default=None, metavar="A.png,B.png",
                        help="per image, comma-separated instance masks (Eq. 16: each step paints the "
                             "instance with the largest remaining error)")
    parser.add_argument("--bg-gate", choices=("chosen", "union"), default=None,
                        help="with --instances, what background strokes keep off: the step's instance "
                             "(default; the others count as background) or every instance "
                             "(docs/painting.md)")
    parser.add_argument("--min-gain", type=_min_gain, default=None, metavar="F|off",
                        help="with --instances, an instance whose painting lowered its error by less than "
                             f"this fraction of its lowest so far is not chosen again while others are "
                             f"(default {DEFAULT_MIN_GAIN}); 'off' = plain Eq. 16 (docs/painting.md)")
    parser.add_argument("--size", type=int, default=None,
                        help="--method exact: the painting's long side (default 512; the image's shape is "
                             "kept); other methods: also re-render the strokes exactly at this side "
                             "(painting_<N>.png)")
    parser.add_argument("--preset", choices=("fast", "balanced", "quality"), default=None,
                        help="--method exact: iterations per stage, fast, balanced (default) or quality")
    parser.add_argument("--init", choices=INITS, default=None,
                        help="--method exact: start from a flat fill (none) or from the agent's strokes "
                             f"(agent: --actor, its strokes count in --strokes); default {DEFAULT_INIT}")
    parser.add_argument("--supersample", type=int, default=None,
                        help="with --size, exact re-render samples per pixel side (default 4)")
    parser.add_argument("--frames", choices=("step", "stroke"), default=None,
                        help="one progress frame per step (default) or per stroke")
    parser.add_argument("--frame-size", type=int, default=None, help="GIF/MP4 frame side: --method exact, the long side (default min(--size, 512)); other "
                             "methods, the square's side (nearest upscale; default 128)")
    parser.add_argument("--no-video", action="store_true", help="skip the GIF and MP4")
    parser.add_argument("--batch-size", type=int, default=8, help="images painted together (default 8)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    parser.add_argument("--ops", choices=("fused", "eager"), default="fused",
                        help="fused sgfast ops or the eager references")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, >= 1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--method", choices=("agent", "optimize", "exact"), default="exact",
                        help="paint the image at its own shape and --size by coarse-to-fine optimisation "
                             "through the exact renderer (exact, the default; 1000 strokes by default); paint "
                             "with the trained agent at its canvas size (agent); or optimise --strokes strokes "
                             "directly by Adam through the neural renderer at 64 px (optimize) "
                             "(docs/painting.md)")
    parser.add_argument("--divide", type=int, default=None, metavar="D",
                        help="grid refinement (Learning to Paint's test.py): the second half of the steps paint "
                             "D x D patches of the canvas upscaled to D x the agent's size (sg mode: with each "
                             "patch's crops of S and G); D in 1..16 (default 1)")
    parser.add_argument("--strokes", type=int, default=None,
                        help="--method optimize / exact: number of strokes (default 100 / 1000)")
    parser.add_argument("--iters", type=int, default=None, help="--method optimize: Adam iterations (default 200)")
    parser.add_argument("--lr", type=float, default=None, help="--method optimize: Adam learning rate (default 0.1)")
    parser.add_argument("--nu", type=float, default=None,
                        help="--method optimize / exact: weight of the focus term (Eq. 14; G from Ψ + the "
                             "expert, or as --expert says with --method exact; default 0)")


def check_options(args):
    """Refuse the options the chosen --method / --mode would ignore (only those the user gave), then
    fill in the defaults of the rest (DEFAULTS). Raises UsageError."""
    from sgfast.op_args import MAX_SIZE, MAX_SUPERSAMPLE

    if args.method != "exact":
        refuse_ignored(args, ["preset", "init"], "without --method exact")
    if args.method == "exact":
        refuse_ignored(args, EXACT_IGNORES, "with --method exact")
        if args.mode == "baseline":
            refuse_ignored(args, EXACT_SG_ONLY, "with --mode baseline (it is for --mode sg)")
        if args.init != "agent":
            refuse_ignored(args, AGENT_INIT_ONLY, "with --method exact unless --init agent")
        if args.strokes is None:
            args.strokes = 1000
        if args.frame_size is None and not args.no_video:  # the progress video at the painting's size, <= 512 px
            args.frame_size = min(args.size or 512, 512)
    elif args.method == "optimize":
        refuse_ignored(args, AGENT_ONLY, "with --method optimize (it is for --method agent)")
        if not args.nu:
            refuse_ignored(args, FOCUS_ONLY, "with --method optimize unless --nu > 0 (the focus term uses it)")
    else:
        refuse_ignored(args, OPTIMIZE_ONLY, "with --method agent (it is for --method optimize)")
        if args.mode == "baseline":
            refuse_ignored(args, SG_ONLY, "with --mode baseline (it is for --mode sg)")
        elif args.instances is None:
            refuse_ignored(args, INSTANCES_ONLY, "without --instances")
    if args.size is None:
        refuse_ignored(args, ["supersample"], "without --size (it is for the exact re-render)")
    if args.no_video:
        refuse_ignored(args, ["frames", "frame_size"], "with --no-video")
    within("divide", args.divide, 1, 16)
    within("size", args.size, 8, MAX_SIZE)
    within("supersample", args.supersample, 1, MAX_SUPERSAMPLE)
    within("frame_size", args.frame_size, 1, MAX_SIZE)
    for dest in ("steps", "batch_size", "strokes"):
        at_least(dest, getattr(args, dest), 1)
    for dest, value in DEFAULTS.items():
        if getattr(args, dest) is None:
            setattr(args, dest, value)
    if args.size is not None and args.method == "exact":  # the painting's memory, before any work
        from sgfast.memory import OverBudget
        from sgfast.paint.exact_painter import check_painting_fits
        try:
            check_painting_fits(args.size)
        except OverBudget as exc:
            raise UsageError(str(exc)) from None
    if args.size is not None and args.method != "exact":  # the exact re-render's memory, before any painting
        from sgfast.memory import OverBudget
        from sgfast.paint.rerender import check_rerender_fits
        try:
            gates = 1 + max((len(i.split(",")) for i in args.instances), default=0) if args.instances else 1
            check_rerender_fits(args.size, gates)
        except (OverBudget, ValueError) as exc:
            raise UsageError(str(exc)) from None
    if args.min_gain == OFF:
        args.min_gain = None


def _per_image(values, n, flag):
    if values is None:
        return None
    if len(values) != n:
        raise UsageError(f"{flag}: {len(values)} given for {n} images (one per image, '-' to skip)")
    return [None if v == "-" else v for v in values]


def unique_names(results):
    seen = {}
    names = []
    for r in results:
        n = r.name
        seen[n] = seen.get(n, 0) + 1
        names.append(n if seen[n] == 1 else f"{n}_{seen[n]}")
    return names


@reports_errors("paint")
def run(args):
    from sgfast import metrics
    from sgfast.device import pick_device
    from sgfast.paint import PaintError, paint
    from sgfast.paint.export import write_result

    # Everything the user can get wrong is checked before any work (models, painting, files).
    check_threads(args.threads)
    check_options(args)
    device = str(pick_device(args.device))
    check_ops(args.ops, device)
    n = len(args.images)
    masks = _per_image(args.mask, n, "--mask")
    boxes = _per_image(args.box, n, "--box")
    inst = _per_image(args.instances, n, "--instances")
    if inst is not None:
        inst = [None if v is None else [p for p in v.split(",") if p] for v in inst]
    missing = [p for p in args.images if not os.path.isfile(p)]
    if len(missing) == n:  # one missing among others is that image's warning, below
        raise UsageError(f"image not found: {missing[0]}" if n == 1 else
                         f"none of the {n} images exist (first: {missing[0]})")
    writable_folder("--out", args.out)
    try:
        results = paint(args.images, mode=args.mode, steps=args.steps, actor=args.actor,
                        renderer=args.renderer, segmenter=args.segmenter, expert=args.expert, masks=masks,
                        boxes=boxes, instances=inst, device=device, ops=args.ops,
                        batch_size=args.batch_size, frames="none" if args.no_video else args.frames,
                        progress=not args.no_progress, method=args.method, strokes=args.strokes,
                        iters=args.iters, lr=args.lr, nu=args.nu, divide=args.divide, bg_gate=args.bg_gate,
                        min_gain=args.min_gain, **({"size": args.size, "preset": args.preset, "init": args.init}
                                                    if args.method == "exact" else {}))
    except PaintError as exc:
        raise UsageError(reason(exc)) from None
    # An image that could not be read or written is a warning and the others are painted (exit
    # status 1); when none could be, the run is an error (one line, exit status 2).
    failed = []
    for r, name in zip(results, unique_names(results)):
        if not r.ok:
            failed.append((f"skipped {r.name}: {r.error}", f"cannot paint {r.name}: {r.error}"))
        else:
            folder = os.path.join(args.out, name)
            try:
                write_result(r, folder, None if args.method == "exact" else args.size, args.supersample,
                             args.frame_size, not args.no_video, device, args.ops)
            except Exception as exc:  # noqa: BLE001 (one image's outputs failing must not cost the batch's)
                why = f"could not write {folder}: {type(exc).__name__}: {exc}"
                failed.append((why, why))
            else:
                l2 = float(metrics.l2(r.target[None], r.canvas[None]))
                print(f"{folder}: {len(r.strokes)} strokes, L2 {l2:.4f}")
                continue
        if n > 1:
            print(f"sgfast paint: {' '.join(failed[-1][0].split())}", file=sys.stderr)
    if len(failed) == n:
        raise UsageError(failed[0][1] if n == 1 else f"none of the {n} images could be painted (reasons above)")
    print(f"sgfast paint: {n - len(failed)} of {n} images painted -> {args.out}", file=sys.stderr)
    return 1 if failed else 0
