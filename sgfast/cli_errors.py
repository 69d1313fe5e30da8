"""How `sgfast` commands report a user's mistake: one line on stderr, exit status 2.

argparse's convention, which every command follows:

    sgfast train-renderer: error: --threads must be >= 1, got 0

argparse itself reports the errors it finds while parsing (an unknown option, a value of the wrong
type) the same way, after a usage line. Errors found later (a value out of range, a missing
checkpoint, a dataset that is not there) are raised as `UsageError(message)` anywhere below a
command's run(args) and turned into that line by `reports_errors`. No traceback is shown for them;
a traceback always means a bug.

    from sgfast.cli_errors import UsageError, reports_errors

    @reports_errors("train-renderer")
    def run(args):
        if args.threads < 1:
            raise UsageError(f"--threads must be >= 1, got {args.threads}")

UsageError is a SystemExit (carrying its message), so code that raises it needs no wrapper to stop
without a traceback; the wrapper adds the "sgfast <command>: error:" prefix and the status 2.
sgfast.cli.main also wraps every command's run this way, so a command that forgets the decorator
still follows the convention (the decorator keeps run(args) right when called directly).
"""
from __future__ import annotations

import functools
import sys

EXIT_USAGE = 2  # argparse's status for a usage error


class UsageError(SystemExit):
    """A mistake of the user's (an option value, a missing or wrong file): `str(exc)` is the message,
    one line, without a "sgfast ...:" prefix."""

    def __init__(self, message: str):
        super().__init__(str(message))

    def __str__(self):
        return str(self.code)


def error_line(command: str, message: str) -> str:
    """"sgfast <command>: error: <message>" (command "" gives "sgfast: error: ...")."""
    prog = f"sgfast {command}" if command else "sgfast"
    return f"{prog}: error: {' '.join(str(message).split())}"


def fail(command: str, message: str):
    """Print the error line to stderr and exit with status 2 (what argparse's parser.error does,
    without the usage line)."""
    print(error_line(command, message), file=sys.stderr, flush=True)
    raise SystemExit(EXIT_USAGE)


def _strip_prefix(message: str, command: str) -> str:
    """Drop a "sgfast: " or "sgfast <command>: " (and "error: ") the message already carries."""
    for prefix in (f"sgfast {command}: ", "sgfast: "):
        if message.startswith(prefix):
            message = message[len(prefix):]
            break
    return message[len("error: "):] if message.startswith("error: ") else message


def reports_errors(command: str):
    """Decorator for a command's run(args): a UsageError, or a SystemExit carrying a message (the
    older way of stopping with one, e.g. sgfast.device.pick_device), becomes the one-line error and
    exit status 2. SystemExit with a number (a finished command, argparse's own exit) passes through."""

    def wrap(run):
        @functools.wraps(run)
        def wrapped(*args, **kwargs):
            try:
                return run(*args, **kwargs)
            except SystemExit as exc:
                if exc.code is None or isinstance(exc.code, int):
                    raise
                fail(command, _strip_prefix(str(exc.code), command))
        return wrapped

    return wrap
