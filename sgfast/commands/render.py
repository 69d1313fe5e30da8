"""`sgfast render strokes.json --size N --out FILE`: re-render a painting exported by `sgfast paint`
exactly (rasterize_strokes mode "exact" + composite) at any size."""
from __future__ import annotations

import os
import sys


def configure(parser):
    parser.add_argument("strokes", help="strokes.json written by `sgfast paint`")
    parser.add_argument("--size", type=int, default=512, help="output side in pixels (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output PNG file")
    parser.add_argument("--supersample", type=int, default=4, help="samples per pixel side (default 4)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--ops", choices=("fused", "eager"), default="fused",
                        help="rasterize/composite ops: fused (sgfast.ops) or eager (sgfast.reference)")


def run(args):
    from sgfast.data.tensor_images import to_u8_hwc
    from sgfast.io import atomic_write_bytes
    from sgfast.paint import render_exact
    from sgfast.paint.export import StrokeDocError, png_bytes, read_strokes_document

    if not 1 <= args.size <= 16384:
        print(f"sgfast render: error: --size must be in [1, 16384], got {args.size}", file=sys.stderr)
        return 2
    try:
        doc, strokes, layers, mask_ids, masks = read_strokes_document(args.strokes)
        image = render_exact(strokes, layers, mask_ids, masks, args.size, args.supersample,
                             tuple(doc.get("background", (0, 0, 0))), args.device, ops=args.ops)
    except (StrokeDocError, OSError, ValueError) as exc:
        print(f"sgfast render: error: {exc}", file=sys.stderr)
        return 2
    u8 = to_u8_hwc(image)
    try:
        atomic_write_bytes(args.out, png_bytes(u8))
    except OSError as exc:
        print(f"sgfast render: error: cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    print(f"sgfast render: {len(strokes)} strokes at {args.size} px -> {os.path.abspath(args.out)}")
    return 0
