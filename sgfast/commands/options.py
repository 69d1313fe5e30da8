"""Checks the non-training commands share, all in sgfast/cli_errors.py's convention: a value the user
got wrong raises UsageError (one line "sgfast <command>: error: ...", exit status 2), before any work.

    check_threads(args.threads)               --threads N >= 1 (None: torch's choice), then applied
    device = pick_device(args.device)         sgfast/device.py: --device cuda on a CPU-only torch etc.
    check_ops(args.ops, device)               --ops fused needs the compiled extension (says how to build it)
    refuse_ignored(args, ["mask"], "...")     an option the user gave that this mode would ignore
    writable_folder("--out", args.out)        an output folder (writable_file: an output file)

Options whose use depends on another option default to None in argparse, so that "given" can be
told from "left at its default"; the command fills in the real default after these checks.
"""
from __future__ import annotations

import os

from sgfast.cli_errors import UsageError


def reason(exc: BaseException) -> str:
    """An exception's message for the error line, without the "sgfast: " some library errors start
    with (the line has its own "sgfast <command>: error:" prefix)."""
    return str(exc).replace("sgfast: ", "")


def flag(dest: str) -> str:
    """argparse's dest -> the option as typed ("bg_gate" -> "--bg-gate")."""
    return "--" + dest.replace("_", "-")


def check_threads(threads):
    """--threads: refuse N < 1, else set torch's CPU threads (None leaves torch's choice)."""
    if threads is None:
        return
    if threads < 1:
        raise UsageError(f"--threads must be >= 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def at_least(dest: str, value, low):
    """Refuse a numeric option below `low` (None = not given, accepted)."""
    if value is not None and value < low:
        raise UsageError(f"{flag(dest)} must be >= {low}, got {value}")


def within(dest: str, value, low, high):
    """Refuse a numeric option outside [low, high] (None = not given, accepted)."""
    if value is not None and not low <= value <= high:
        raise UsageError(f"{flag(dest)} must be in [{low}, {high}], got {value}")


def check_ops(ops: str | None, device=None, option: str | None = "--ops"):
    """The fused ops are the compiled extension: refuse them, with how to build it, when it is not
    built, and on a device it has no kernels for. `option` None: the command has no --ops choice
    (it always runs the fused ops)."""
    if ops != "fused":
        return
    import sgfast.ops as fused

    what = f"{option} fused" if option else "the fused ops"
    alternative = f"; or pass {option} eager" if option else ""
    try:
        fused.require_ext()
    except RuntimeError as exc:
        # sgfast.ops' build hint, less its last sentence (about the Python API's sgfast.reference)
        hint = str(exc).split(" The eager references")[0].rstrip(".")
        raise UsageError(f"{option} fused: {hint}{alternative}, which needs no build" if option else hint) from None
    if device is None:
        return
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda" and not fused.cuda_compiled():
        raise UsageError(f"{what}: the compiled extension was built without its CUDA kernels (--device {device}); "
                         f"rebuild it where nvcc is available (`pip install --no-build-isolation -e .`){alternative}")
    if kind not in ("cpu", "cuda"):
        raise UsageError(f"{what}: the compiled extension has no kernels for --device {device} (cpu and cuda "
                         f"only){alternative}")


def refuse_ignored(args, dests, why: str):
    """Refuse the first option of `dests` (argparse dest names, default None) that the user gave:
    it would be ignored `why` (e.g. "with --mode baseline (it guides --mode sg)")."""
    for dest in dests:
        if getattr(args, dest) is not None:
            raise UsageError(f"{flag(dest)} is ignored {why}; leave it out")


def _probe(folder: str):
    import tempfile

    os.makedirs(folder, exist_ok=True)
    tempfile.NamedTemporaryFile(dir=folder, prefix=".probe").close()


def writable_folder(option: str, folder: str):
    """Create `folder` if needed and make sure a file can be written in it, before any work."""
    try:
        _probe(folder)
    except OSError as exc:
        raise UsageError(f"cannot write to {option} {folder}: {exc.strerror or exc}") from None


def writable_file(option: str, path: str):
    """The same for an output file: its folder must be writable and the path not a folder."""
    if os.path.isdir(path):
        raise UsageError(f"{option} {path} is a folder: give a file name")
    try:
        _probe(os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise UsageError(f"cannot write {option} {path}: {exc.strerror or exc}") from None
