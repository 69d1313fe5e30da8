"""`sgfast render strokes.json --size N --out FILE`: re-render a painting exported by `sgfast paint`
exactly at any size: rasterize_strokes mode "exact" + composite, or, for a `--method exact`
painting, render_strokes at its own shape with the long side --size."""
from __future__ import annotations

import os

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import check_ops, check_threads, reason, within, writable_file


def configure(parser):
    parser.add_argument("strokes", help="strokes.json written by `sgfast paint`")
    parser.add_argument("--size", type=int, default=512, help="output side in pixels; the long side for a --method exact painting (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output PNG file")
    parser.add_argument("--supersample", type=int, default=4, help="samples per pixel side (default 4)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    parser.add_argument("--ops", choices=("fused", "eager"), default="fused",
                        help="rasterize/composite ops: fused (sgfast.ops) or eager (sgfast.reference)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, >= 1")


@reports_errors("render")
def run(args):
    from sgfast.data.tensor_images import to_u8_hwc
    from sgfast.device import pick_device
    from sgfast.io import atomic_write_bytes
    from sgfast.op_args import MAX_SUPERSAMPLE
    from sgfast.memory import OverBudget
    from sgfast.paint import render_exact
    from sgfast.paint.rerender import check_rerender_fits, render_painting_at
    from sgfast.paint.export import StrokeDocError, png_bytes, read_strokes_document

    check_threads(args.threads)
    within("size", args.size, 1, 16384)
    within("supersample", args.supersample, 1, MAX_SUPERSAMPLE)
    device = pick_device(args.device)
    check_ops(args.ops, device)
    try:
        doc, strokes, layers, mask_ids, masks = read_strokes_document(args.strokes)
    except (StrokeDocError, OSError, ValueError) as exc:
        raise UsageError(reason(exc)) from None
    writable_file("--out", args.out)
    exact = doc.get("renderer") == "render_strokes"  # a --method exact painting: its own shape
    try:
        check_rerender_fits(args.size, len({m for m in mask_ids if m is not None}))
    except (OverBudget, ValueError) as exc:
        raise UsageError(str(exc)) from None
    try:
        if exact:
            image = render_painting_at(strokes, tuple(doc.get("background", (0, 0, 0))), int(doc["height"]),
                                       int(doc["width"]), args.size, float(doc["softness"]), device, args.ops,
                                       mask=masks[0] if masks else None, layers=layers)
        else:
            image = render_exact(strokes, layers, mask_ids, masks, args.size, args.supersample,
                                 tuple(doc.get("background", (0, 0, 0))), device, ops=args.ops)
    except (ValueError, KeyError, TypeError) as exc:  # the file's content (e.g. its background colour)
        raise UsageError(f"{args.strokes}: {reason(exc)}") from None
    u8 = to_u8_hwc(image)
    try:
        atomic_write_bytes(args.out, png_bytes(u8))
    except OSError as exc:
        raise UsageError(f"cannot write --out {args.out}: {exc.strerror or exc}") from None
    print(f"sgfast render: {len(strokes)} strokes at {args.size} px -> {os.path.abspath(args.out)}")
    return 0
