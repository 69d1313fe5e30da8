"""`sgfast demo`: what the README's first command runs.

Paints the bundled sample birds (sgfast/assets/samples/birds, with their true masks) and scenes
(sgfast/assets/samples/scenes, several objects each: sg paints them with their instance masks, Eq. 16 and
--min-gain's default) with the shipped semantic-guidance and baseline agents and writes, under
--out: sg/<image>/ and baseline/<image>/ (everything `sgfast paint` writes) and side_by_side.png
(one row per image; columns: target | baseline | sg | sg exactly re-rendered at 4x). A few seconds on 2 CPU cores.
"""
import glob
import os
import sys

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import check_ops, check_threads
from sgfast.resources import bundled_asset


def configure(parser):
    parser.add_argument("--out", default="out/demo", help="output folder (default: %(default)s)")
    parser.add_argument("--samples", default=bundled_asset("samples", "birds"),
                        help="sample data set in the CUB layout (default: the bundled birds)")
    parser.add_argument("--scenes", default=bundled_asset("samples", "scenes"),
                        help="a `make-dataset scenes` folder, painted with its instance masks (default: "
                             "the bundled scenes; '' = none)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads, >= 1 (default 1)")


@reports_errors("demo")
def run(args):
    import cv2
    import numpy as np

    from sgfast import metrics
    from sgfast.io import atomic_write_bytes
    from sgfast.paint import PaintError, paint, result_exact
    from sgfast.data.tensor_images import to_u8_hwc
    from sgfast.paint.export import png_bytes, write_result

    check_threads(args.threads)
    check_ops("fused", option=None)  # the demo paints with the fused ops
    if not os.path.isdir(args.samples):
        raise UsageError(f"--samples: folder not found: {args.samples}")
    images = sorted(glob.glob(os.path.join(args.samples, "images", "*", "*.jpg")))
    if not images:
        raise UsageError(f"--samples: no sample images under {os.path.join(args.samples, 'images')}")
    masks = [p.replace(os.sep + "images" + os.sep, os.sep + "segmentations" + os.sep)[:-4] + ".png"
             for p in images]
    masks = [m if os.path.isfile(m) else None for m in masks]
    instances = [None] * len(images)
    if args.scenes:
        from sgfast.data.datasets import DatasetFormatError, SyntheticScenes

        try:
            scenes = SyntheticScenes(args.scenes, split="all").records
        except (DatasetFormatError, OSError) as exc:
            raise UsageError(f"--scenes {args.scenes}: {exc}") from None
        for rec in scenes:
            images.append(rec.image)
            masks.append(None)
            instances.append([path for path, _, _ in rec.instances] or None)
    try:
        runs = {mode: paint(images, mode=mode, method="agent", masks=masks if mode == "sg" else None,
                            instances=instances if mode == "sg" else None, frames="step")
                for mode in ("baseline", "sg")}
    except PaintError as exc:
        raise UsageError(str(exc)) from None
    rows = []
    for i in range(len(images)):
        b, s = runs["baseline"][i], runs["sg"][i]
        if not (b.ok and s.ok):
            print(f"sgfast demo: skipped {images[i]}: {b.error or s.error}", file=sys.stderr)
            continue
        for mode, r in (("baseline", b), ("sg", s)):
            write_result(r, os.path.join(args.out, mode, r.name), frame_size=r.size)
        side = 4 * s.size
        big = lambda t: cv2.resize(to_u8_hwc(t), (side, side), interpolation=cv2.INTER_NEAREST)  # noqa: E731
        rows.append(np.concatenate([big(s.target), big(b.canvas), big(s.canvas), to_u8_hwc(result_exact(s, side, supersample=2))], 1))
        l2 = lambda r: float(metrics.l2(r.target[None], r.canvas[None]))  # noqa: E731
        inst = f", {s.masks.shape[0]} instances, {len(s.painted_instances)} painted" if s.masks.shape[0] > 1 else ""
        print(f"demo: {s.name}: L2 baseline {l2(b):.4f}, sg {l2(s):.4f} ({len(s.strokes)} strokes{inst})")
    if not rows:
        raise UsageError(f"none of the {len(images)} sample images could be painted (reasons above)")
    path = os.path.join(args.out, "side_by_side.png")
    atomic_write_bytes(path, png_bytes(np.concatenate(rows, 0)))
    print(f"demo: columns target | baseline | sg | sg re-rendered exactly at {4 * runs['sg'][0].size} px "
          f"-> {path}")
    return 0
