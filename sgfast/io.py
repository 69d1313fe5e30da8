"""Atomic file writes and pickle-free checkpoints.

Checkpoints are written with torch.save to a temporary file in the same folder, fsynced, then
renamed over the target, so an interruption never leaves a half-written file. They are read with
`torch.load(weights_only=True)`: tensors, numbers, strings, lists and dicts only; no code runs.

The temporary files and folders are created with modes 0666 / 0777 less the umask (what open() and
os.mkdir() give), not tempfile's private 0600 / 0700, so the outputs renamed into place get the
permissions of any normally created file or folder (0644 / 0755 under umask 022). Their names carry
the writer's process id (".NAME.<pid>-<random>.tmp"): a temporary left by a killed writer (its
process gone) is removed the next time the same target is written.

A full disk is reported as such: OSError(ENOSPC) "no space left on device" with the path. Loading
checks the archive's CRCs (a corrupted file is refused, naming it) and shipped weights are refused
when they hold NaN or infinite values.
"""
import contextlib
import errno
import os
import re
import secrets
import shutil
import zipfile

import torch

_TEMP_ATTEMPTS = 100


class WeightsFileError(RuntimeError, ValueError):
    """A weights or checkpoint file that cannot be used (corrupt, not finite, not matching its meta).
    A RuntimeError and a ValueError, so the callers' existing handlers of either catch it."""


def _temp_name(folder, prefix, suffix):
    return os.path.join(folder, f"{prefix}{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


def remove_stale_temps(folder, prefix, suffix=".tmp"):
    """Remove temporary files and folders `prefix<pid>-<hex><suffix>` in `folder` whose writer process
    is gone (killed mid-write). Temporaries of live writers are left alone."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[0-9a-f]{8}" + re.escape(suffix) + "$")
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        m = pattern.match(name)
        if not m or _pid_alive(int(m.group(1))):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def disk_full_error(exc: OSError, path) -> OSError:
    """`exc` as an OSError that says what failed and where (ENOSPC: "no space left on device")."""
    code = exc.errno if exc.errno is not None else errno.EIO
    reason = "no space left on device" if code == errno.ENOSPC else (exc.strerror or str(exc))
    return OSError(code, f"cannot write {os.fspath(path)}: {reason}")


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
    prefix = "." + os.path.basename(path) + "."
    remove_stale_temps(folder, prefix, suffix)
    tmp = make_temp_file(folder, prefix=prefix, suffix=suffix)
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
    """Write a dict of tensors / plain Python values atomically. Saved through an open file, so a
    failed write is the OSError itself (ENOSPC named as such), and the archive's member names are
    fixed, not the temporary file's: the same state gives the same bytes."""
    try:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as f:
                torch.save(state, f)
    except OSError as exc:
        raise disk_full_error(exc, path) from exc
    except RuntimeError as exc:  # torch's zip writer reports some failed writes this way
        raise OSError(errno.EIO, f"cannot write {os.fspath(path)}: {exc}") from exc


def check_archive(path):
    """Refuse a torch zip archive whose stored CRCs do not match its data (bit rot, a bad copy)."""
    if not zipfile.is_zipfile(path):
        return  # not a zip (a legacy torch file): torch.load reports what is wrong with it
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise WeightsFileError(f"sgfast: {path} is corrupt: {exc}") from None
    if bad is not None:
        raise WeightsFileError(f"sgfast: {path} is corrupt: CRC mismatch in {bad}")


def load_checkpoint(path, map_location="cpu") -> dict:
    """Read a checkpoint without executing code (weights_only unpickler), its CRCs checked first."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"sgfast: checkpoint not found: {path}")
    check_archive(path)
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a corrupt file or one holding arbitrary objects
        raise WeightsFileError(f"sgfast: cannot read checkpoint {path}: {exc}") from exc


def check_finite(state_dict: dict, path):
    """Refuse weights holding NaN or infinite values, naming the file and the first such tensor."""
    for name, t in state_dict.items():
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise WeightsFileError(f"sgfast: {path} holds non-finite values in {name} (a corrupt or diverged "
                                   "weights file)")


def save_weights_fp16(path, state_dict: dict, meta: dict | None = None):
    """Ship-size weights: floating tensors as float16, with a `meta` dict (config, metrics)."""
    half = {k: (v.detach().to("cpu", torch.float16) if v.is_floating_point() else v.detach().cpu())
            for k, v in state_dict.items()}
    save_checkpoint(path, {"state_dict": half, "meta": dict(meta or {})})


def load_weights(path, map_location="cpu"):
    """Inverse of save_weights_fp16: (float32 state_dict, meta)."""
    ckpt = load_checkpoint(path, map_location)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise WeightsFileError(f"sgfast: {path} is not an sgfast weights file (no 'state_dict')")
    sd = {k: (v.float() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
    check_finite(sd, path)
    return sd, ckpt.get("meta", {})
