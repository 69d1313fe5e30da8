"""Atomic file writes and pickle-free checkpoints.

Checkpoints are written with torch.save to a temporary file in the same folder, fsynced, then
renamed over the target, so an interruption never leaves a half-written file. They are read with
`torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts only; no code runs.

The temporary files and folders are created with modes 0666 / 0777 less the umask (what open() and
os.mkdir() give), not tempfile's private 0600 / 0700, so the outputs renamed into place get the
permissions of any normally created file or folder (0644 / 0755 under umask 022).
"""
import contextlib
import os
import secrets

import torch

_TEMP_ATTEMPTS = 100


def _temp_name(folder, prefix, suffix):
    return os.path.join(folder, f"{prefix}{secrets.token_hex(4)}{suffix}")


def make_temp_file(folder, prefix="", suffix=".tmp") -> str:
    """Create a new empty file in `folder` (exclusively, as tempfile.mkstemp) with mode 0666 less the
    umask, and return its path."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(_TEMP_ATTEMPTS):
        name = _temp_name(folder, prefix, suffix)
        try:
            os.close(os.open(name, flags, 0o666))
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"no free temporary name in {folder}")


def make_temp_dir(folder, prefix="", suffix=".tmp") -> str:
    """Create a new folder in `folder` (as tempfile.mkdtemp) with mode 0777 less the umask, and return
    its path."""
    for _ in range(_TEMP_ATTEMPTS):
        name = _temp_name(folder, prefix, suffix)
        try:
            os.mkdir(name, 0o777)
        except FileExistsError:
            continue
        return name
    raise FileExistsError(f"no free temporary name in {folder}")


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yield a temporary path next to `path` (ending in `suffix`, for writers that go by the file
    extension); on success it replaces `path` atomically."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = make_temp_file(folder, prefix="." + os.path.basename(path) + ".", suffix=suffix)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path, data: bytes):
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def save_checkpoint(path, state: dict):
    """Write a dict of tensors / plain Python values atomically."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint without executing code (weights_only unpickler)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"sgfast: checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a corrupt file or one holding arbitrary objects
        raise RuntimeError(f"sgfast: cannot read checkpoint {path}: {exc}") from exc


def save_weights_fp16(path, state_dict: dict, meta: dict | None = None):
    """Ship-size weights: floating tensors as float16, with a `meta` dict (config, metrics)."""
    half = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
            for k, v in state_dict.items()}
    save_checkpoint(path, {"state_dict": half, "meta": dict(meta or {})})


def load_weights(path, map_location="cpu"):
    """Inverse of save_weights_fp16: (float32 state_dict, meta)."""
    ckpt = load_checkpoint(path, map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise RuntimeError(f"sgfast: {path} is not an sgfast weights file (no 'state_dict')")
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    return sd, ckpt.get("meta", {})
