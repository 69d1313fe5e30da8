"""`sgfast evaluate DATASET --actor A [--baseline-actor B]`: compare agents at equal stroke counts on
a test split (CUB layout, e.g. `sgfast make-dataset birds`; a data set without test-split images,
such as the bundled samples, is evaluated on all its images, said in one line, unless --split says
otherwise). Prints the table and writes DIR/evaluate.csv, DIR/evaluate.md and, with --grid N,
DIR/grid.png (rows: images; columns: target, then each agent). See sgfast/evaluate.py for the
metrics."""
from __future__ import annotations

import os
import sys

from sgfast.cli_errors import UsageError, reports_errors
from sgfast.commands.options import at_least, check_ops, check_threads, reason, refuse_ignored, writable_folder


def configure(parser):
    parser.add_argument("dataset", help="dataset folder in the CUB layout (e.g. from `sgfast make-dataset birds`)")
    parser.add_argument("--actor", action="append", default=None, metavar="WEIGHTS",
                        help="agent weights (repeatable; default: the shipped agent_sg_tiny.pt)")
    parser.add_argument("--baseline-actor", default=None, metavar="WEIGHTS",
                        help="the baseline agent to compare with (e.g. the shipped agent_baseline_tiny.pt)")
    parser.add_argument("--optimize", action="store_true",
                        help="also evaluate the agent-free optimisation painter (paint --method optimize)")
    parser.add_argument("--optimize-iters", type=int, default=None, help="Adam iterations of --optimize (default 200)")
    parser.add_argument("--steps", type=int, default=None,
                        help="agent steps (default: the agents' episode); strokes = steps x strokes per step")
    parser.add_argument("--num", type=int, default=None, help="evaluate the first N images of the split (default: all)")
    parser.add_argument("--split", choices=("test", "train", "all"), default=None,
                        help="images to evaluate (default: test, or all when the data set has no "
                             "test-split images, e.g. the bundled samples)")
    parser.add_argument("--out", default="out/evaluate", help="output folder (default: %(default)s)")
    parser.add_argument("--grid", type=int, default=0, metavar="N", help="write grid.png of the first N images")
    parser.add_argument("--true-masks", action="store_true",
                        help="give the sg agent the true masks instead of Ψ's (the paper uses Ψ)")
    parser.add_argument("--rerender", action="store_true",
                        help="score the agents' strokes re-rendered exactly (what `paint --size N` shows) "
                             "instead of their canvas (a neural agent's is its renderer's approximation)")
    parser.add_argument("--segmenter", default=None, help="Ψ weights (default: the shipped segmenter_tiny.pt)")
    parser.add_argument("--renderer", default=None, help="renderer weights (default: the shipped renderer_tiny.pt)")
    parser.add_argument("--expert", default=None, help="expert weights (default: the shipped expert_tiny.pt)")
    parser.add_argument("--batch-size", type=int, default=16, help="images painted together (default 16)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default: cpu)")
    parser.add_argument("--ops", choices=("fused", "eager"), default="fused",
                        help="fused sgfast ops or the eager references")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads, >= 1")
    parser.add_argument("--no-progress", action="store_true")


@reports_errors("evaluate")
def run(args):
    from sgfast.device import pick_device
    from sgfast.evaluate import as_numpy_u8, evaluate, table_csv, table_markdown, table_text
    from sgfast.io import atomic_write_bytes
    from sgfast.paint import DEFAULT_ACTOR, PaintError

    check_threads(args.threads)
    at_least("num", args.num, 1)
    at_least("steps", args.steps, 1)
    at_least("grid", args.grid, 0)
    at_least("batch_size", args.batch_size, 1)
    at_least("optimize_iters", args.optimize_iters, 0)
    if not args.optimize:
        refuse_ignored(args, ["optimize_iters"], "without --optimize")
    if args.optimize and args.rerender:
        raise UsageError("--rerender applies to agents only: --optimize's painter keeps no strokes to re-render")
    optimize_iters = 200 if args.optimize_iters is None else args.optimize_iters
    device = str(pick_device(args.device))
    check_ops(args.ops, device)
    if not os.path.isdir(args.dataset):
        raise UsageError(f"DATASET: folder not found: {args.dataset}")
    actors = [(os.path.splitext(os.path.basename(p))[0], p) for p in (args.actor or [DEFAULT_ACTOR["sg"]])]
    if args.baseline_actor:
        actors.insert(0, (os.path.splitext(os.path.basename(args.baseline_actor))[0], args.baseline_actor))
    if len({a for a, _ in actors}) < len(actors):  # same file name twice: number them
        actors = [(f"{a} #{i + 1}", p) for i, (a, p) in enumerate(actors)]
    painters = []
    if args.optimize:
        from sgfast.paint.optimize_painter import batch_painter
        try:
            painters.append((f"optimize ({optimize_iters} iters)",
                             batch_painter(args.renderer, optimize_iters, device=device)))
        except (OSError, RuntimeError, ValueError, KeyError) as exc:
            raise UsageError(f"--renderer: {reason(exc)}") from None
    writable_folder("--out", args.out)
    try:
        rows, grid = evaluate(args.dataset, actors, args.steps, args.num, args.split, args.batch_size,
                              args.segmenter, args.renderer, args.expert, args.true_masks, device, args.ops,
                              args.grid, not args.no_progress, painters,
                              log=lambda line: print(f"sgfast evaluate: {line}", file=sys.stderr),
                              rerender=args.rerender)
    except PaintError as exc:
        raise UsageError(reason(exc)) from None
    print(table_text(rows), end="")
    atomic_write_bytes(os.path.join(args.out, "evaluate.csv"), table_csv(rows).encode())
    atomic_write_bytes(os.path.join(args.out, "evaluate.md"), table_markdown(rows).encode())
    written = ["evaluate.csv", "evaluate.md"]
    if grid is not None:
        from sgfast.paint.export import png_bytes

        atomic_write_bytes(os.path.join(args.out, "grid.png"), png_bytes(as_numpy_u8(grid)))
        written.append("grid.png")
    print(f"sgfast evaluate: wrote {', '.join(written)} -> {args.out}", file=sys.stderr)
    return 0
