"""The `sgfast` command line. Subcommands are imported lazily so `sgfast --help` stays fast."""
import argparse
import importlib
import sys

from sgfast.cli_errors import reports_errors

# name -> (module, one-line help). A module defines configure(parser) and run(args) -> int.
# A user's mistake is one line "sgfast <command>: error: <message>" on stderr and exit status 2
# (sgfast/cli_errors.py): argparse reports its own that way (after a usage line), and main() turns a UsageError (or any
# SystemExit carrying a message) raised below run(args) into that line, so no command can forget.
COMMANDS = {
    "demo": ("sgfast.commands.demo", "the README's first command: paint the bundled samples with the shipped agents"),
    "rasterize": ("sgfast.commands.rasterize", "render stroke parameters (.npy/.json) to PNG images"),
    "train-renderer": ("sgfast.train.renderer", "train the neural stroke renderer on rasterizer labels"),
    "train-agent": ("sgfast.train.agent", "train the painting agent (model-based DDPG): semantic guidance or baseline"),
    "make-dataset": ("sgfast.commands.make_dataset", "write the synthetic birds / multi-object scenes data sets"),
    "train-segmenter": ("sgfast.train.segmenter", "train Ψ, the foreground mask and box network"),
    "train-expert": ("sgfast.train.expert", "train the expert classifier behind the guided-backprop maps"),
    "prepare": ("sgfast.commands.prepare", "compute masks, boxes and GBP maps for a dataset into one file"),
    "paint": ("sgfast.commands.paint", "paint images (exact stroke optimisation by default, or a trained agent): "
                                        "PNG, layers, GIF/MP4, stroke JSON/SVG"),
    "render": ("sgfast.commands.render", "re-render an exported strokes.json exactly at any size"),
    "evaluate": ("sgfast.commands.evaluate", "compare painting agents on a test split: L2, PSNR, fg/parts L2, Ψ on the canvas"),
}


def build_parser(load_all=True):
    parser = argparse.ArgumentParser(
        prog="sgfast",
        description="Fast Semantic Guidance painting: fused stroke kernels, training and painting.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if load_all:
            importlib.import_module(module).configure(p)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    # Only the chosen subcommand's module is imported (the others may pull in heavy dependencies).
    chosen = next((a for a in argv if not a.startswith("-")), None)
    if chosen not in COMMANDS:
        parser = build_parser(load_all=False)
        if not argv or chosen is None:
            parser.print_help() if not argv else parser.parse_args(argv)
            return 0 if argv else 1
        parser.parse_args(argv)  # reports the unknown command and exits with 2
        return 2
    module = importlib.import_module(COMMANDS[chosen][0])
    parser = argparse.ArgumentParser(prog="sgfast")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser(chosen, help=COMMANDS[chosen][1], description=COMMANDS[chosen][1])
    module.configure(p)
    args = parser.parse_args(argv)
    run = reports_errors(chosen)(module.run)  # a no-op around a run that is already decorated
    try:
        return int(run(args) or 0)
    except KeyboardInterrupt:
        print("sgfast: interrupted", file=sys.stderr)
        return 130
