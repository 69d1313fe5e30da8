"""`sgfast make-dataset birds|scenes`: write the procedural data sets (formats: docs/data.md)."""
import os
import re
import time

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import at_least

# The generators' parameter names in their ValueErrors -> the options a user typed.
_OPTION_OF = {"num_classes": "--classes", "num": "--num", "size": "--size", "test_fraction": "--test-fraction",
              "min_scale": "--min-scale", "max_scale": "--max-scale", "min_objects": "--min-objects",
              "max_objects": "--max-objects"}


def _common(p, default_size):
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num", type=int, required=True, help="number of images")
    p.add_argument("--size", type=int, default=default_size, help="image side in pixels (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1),
                   help="worker processes, >= 1 (default: %(default)s); the output does not depend on it")
    p.add_argument("--force", action="store_true", help="overwrite a dataset already in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def configure(parser):
    from sgfast.data import synthetic_birds as sb

    sub = parser.add_subparsers(dest="kind", metavar="KIND", required=True)
    b = sub.add_parser("birds", help="one bird per image, CUB-200-2011 layout plus part masks")
    _common(b, 128)
    b.add_argument("--classes", type=int, default=sb.DEFAULT_CLASSES,
                   help=f"number of classes, 2..{sb.MAX_CLASSES} (default: %(default)s)")
    b.add_argument("--test-fraction", type=float, default=0.2,
                   help="share of images marked is_train=0 (default: %(default)s)")
    b.add_argument("--min-scale", type=float, default=0.1,
                   help="smallest bird length as a share of the image side (default: %(default)s)")
    b.add_argument("--max-scale", type=float, default=0.95,
                   help="largest bird length as a share of the image side (default: %(default)s)")
    s = sub.add_parser("scenes", help="2-4 objects (birds and shapes) per image with instance masks")
    _common(s, 128)
    s.add_argument("--min-objects", type=int, default=2, help="(default: %(default)s)")
    s.add_argument("--max-objects", type=int, default=4, help="(default: %(default)s)")


def _as_options(message: str) -> str:
    """'num must be >= 1, got 0' -> '--num must be >= 1, got 0'."""
    names = "|".join(_OPTION_OF)
    return re.sub(rf"(?<![\w/.-])({names})(?![\w/.-])", lambda m: _OPTION_OF[m.group(1)], message)


@reports_errors("make-dataset")
def run(args):
    at_least("num", args.num, 1)
    at_least("workers", args.workers, 1)
    start = time.time()
    try:
        if args.kind == "birds":
            from sgfast.data.synthetic_birds import write_birds_dataset
            write_birds_dataset(args.out, args.num, args.size, args.seed, num_classes=args.classes,
                                test_fraction=args.test_fraction, min_scale=args.min_scale,
                                max_scale=args.max_scale, workers=args.workers,
                                progress=not args.no_progress, overwrite=args.force)
        else:
            from sgfast.data.synthetic_scenes import write_scenes_dataset
            write_scenes_dataset(args.out, args.num, args.size, args.seed, min_objects=args.min_objects,
                                 max_objects=args.max_objects, workers=args.workers,
                                 progress=not args.no_progress, overwrite=args.force)
    except ValueError as exc:
        raise UsageError(_as_options(str(exc))) from None
    except FileExistsError as exc:
        raise UsageError(str(exc).replace("overwrite=True / ", "")) from None
    except OSError as exc:
        raise UsageError(f"cannot write to --out {args.out}: {exc.strerror or exc}") from None
    dt = time.time() - start
    print(f"make-dataset {args.kind}: {args.num} images of {args.size}x{args.size} in {args.out} "
          f"({dt:.1f} s, {args.num / max(dt, 1e-9) * 60:.0f} images/min)")
    return 0
