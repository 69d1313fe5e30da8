"""`sgfast demo`: what the README's first command runs.

Until the painting agent exists, the demo shows the two parts that do: the stroke rasterizer (the
bundled sample strokes in both modes) and a few seconds of neural-renderer training.
"""
import os

ASSETS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "assets")


def configure(parser):
    parser.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--strokes", default=os.path.join(ASSETS, "sample_strokes.json"),
                        help="stroke file to render (default: the bundled samples)")
    parser.add_argument("--renderer-steps", type=int, default=60,
                        help="steps of smoke renderer training (default: %(default)s)")


def run(args):
    from sgfast import cli

    if not os.path.exists(args.strokes):
        raise SystemExit(f"sgfast demo: stroke file not found: {args.strokes}")
    for mode, size in (("ltp", 128), ("exact", 512)):
        out = os.path.join(args.out, f"strokes_{mode}")
        print(f"demo: rasterizing {args.strokes} in mode {mode!r} at {size} px -> {out}")
        rc = cli.main(["rasterize", args.strokes, "--out", out, "--size", str(size), "--mode", mode])
        if rc:
            return rc
    out = os.path.join(args.out, "renderer_smoke")
    print(f"demo: training a smoke renderer for {args.renderer_steps} steps -> {out}")
    return cli.main(["train-renderer", "--config", "smoke", "--steps", str(args.renderer_steps), "--out", out,
                     "--export", os.path.join(out, "renderer_smoke.pt")])
