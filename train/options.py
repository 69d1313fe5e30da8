"""The options every `sgfast train-*` command takes the same way, and the pattern of their configs.

Each trainer has one frozen config dataclass, built once from the parsed arguments by its
`from_args(args)`: the values of the chosen `--config` preset, overridden by every option the user
gave, checked (a bad value raises sgfast.cli_errors.UsageError: one line, exit status 2). Everything
after that reads the dataclass, never `args`.

The shared options (RunOptions):

    --config NAME        preset of sizes and schedule (every trainer has `smoke`: seconds, tests)
    --out DIR            checkpoint.pt, TensorBoard logs (DIR/tb) and default exports
    --resume [CKPT]      continue from DIR/checkpoint.pt (or CKPT) exactly where it stopped
    --log-dir DIR        TensorBoard folder (default DIR/tb); --no-tensorboard: none
    --seed N, --threads N (>= 1), --device auto|cpu|cuda[:N], --no-progress
    --time-limit MIN     end the run after this many minutes of training, as if it had reached its
                         last step (checkpoint, exports, final figures); --resume continues it
"""
from __future__ import annotations

import dataclasses
import math
import os

import torch

from sgfast.cli_errors import UsageError
from sgfast.commands.options import writable_folder


@dataclasses.dataclass(frozen=True)
class RunOptions:
    out: str
    resume: str | None        # checkpoint to continue from (None: a fresh run)
    tensorboard: str | None   # TensorBoard folder (None: no logs)
    seed: int
    threads: int | None       # torch CPU threads (None: torch's choice)
    device: str
    progress: bool
    time_limit: float | None = None  # seconds of training after which the run ends (None: no limit)

    @property
    def checkpoint(self) -> str:
        """Where this run writes its checkpoint."""
        from sgfast.train.checkpoint import checkpoint_path
        return checkpoint_path(self.out)


def add_run_args(parser, *, configs, default_config, config_help, default_out, default_seed=0):
    """The shared options (module docstring). `configs`: the preset names."""
    parser.add_argument("--config", choices=sorted(configs), default=default_config,
                        help=f"{config_help} (default: {default_config})")
    parser.add_argument("--out", default=default_out,
                        help=f"folder for checkpoint.pt and the TensorBoard logs (default: {default_out})")
    parser.add_argument("--resume", nargs="?", const=True, default=False, metavar="CKPT",
                        help="continue from OUT/checkpoint.pt (or CKPT) exactly where it stopped")
    parser.add_argument("--log-dir", default=None, metavar="DIR",
                        help="TensorBoard folder (default: OUT/tb)")
    parser.add_argument("--no-tensorboard", action="store_true", help="write no TensorBoard logs")
    parser.add_argument("--seed", type=int, default=default_seed,
                        help=f"random seed; a CPU run is repeatable (default: {default_seed})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads, >= 1 (default: torch's choice)")
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--time-limit", type=float, default=None, metavar="MIN",
                        help="end the run after MIN minutes of training as if it had reached its last "
                             "step (checkpoint, exports); --resume continues it")


def run_options(args) -> RunOptions:
    from sgfast.train.checkpoint import checkpoint_path

    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads must be >= 1, got {args.threads}")
    time_limit = getattr(args, "time_limit", None)
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise UsageError(f"--time-limit must be a positive number of minutes, got {time_limit:g}")
    if args.no_tensorboard and args.log_dir:
        raise UsageError("--log-dir and --no-tensorboard contradict each other")
    resume = None
    if args.resume:
        resume = checkpoint_path(args.out) if args.resume is True else args.resume
    tensorboard = None if args.no_tensorboard else (args.log_dir or os.path.join(args.out, "tb"))
    # An unwritable --out (or --log-dir) is found now, not at the first checkpoint.
    writable_folder("--out", args.out)
    if args.log_dir and tensorboard:
        writable_folder("--log-dir", args.log_dir)
    return RunOptions(out=args.out, resume=resume, tensorboard=tensorboard, seed=args.seed,
                      threads=args.threads, device=args.device, progress=not args.no_progress,
                      time_limit=None if time_limit is None else 60.0 * time_limit)


def apply_threads(run: RunOptions):
    if run.threads is not None:
        torch.set_num_threads(run.threads)


def preset_values(presets: dict, name: str, args) -> dict:
    """The preset's values, each replaced by the option of the same name when the user gave it
    (argparse default None = not given)."""
    values = dict(presets[name])
    for key in values:
        given = getattr(args, key, None)
        if given is not None:
            values[key] = given
    return values


# -- checks, each raising UsageError with the option's name --------------------------------------

def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def at_least(name: str, value, low):
    if value is None or not value >= low:
        raise UsageError(f"{flag(name)} must be >= {low}, got {value}")
    return value


def positive(name: str, value):
    if value is None or not (value > 0 and math.isfinite(value)):
        raise UsageError(f"{flag(name)} must be a positive number, got {value}")
    return value


def within(name: str, value, low, high, *, high_open=False):
    ok = low <= value < high if high_open else low <= value <= high
    if not ok:
        raise UsageError(f"{flag(name)} must be in [{low}, {high}{')' if high_open else ']'}, got {value}")
    return value


def int_list(name: str, text: str) -> tuple:
    try:
        return tuple(int(v) for v in str(text).split(","))
    except ValueError:
        raise UsageError(f"{flag(name)} must be comma-separated integers, got {text!r}") from None
