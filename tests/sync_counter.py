"""Counts the host syncs a piece of code asks for, on any device.

On a GPU, reading a value back (`.item()`, `bool(t)`, `.tolist()`, `.cpu()`, ...) or an op whose output
size depends on the data (`nonzero`, boolean-mask indexing, `unique`, ...) waits for the device
(torch.cuda.set_sync_debug_mode reports those). On the CPU nothing waits, but the calls are the same:
(boolean-mask indexing is left to the CUDA tests: patching Tensor.__getitem__ cannot be undone, as
CPython keeps the sequence slot it adds and every tensor then looks like a sequence to
torch.tensor([...]) for the rest of the process)
`count_host_syncs()` records every such call made by code outside torch itself (sgfast's, or a
test's), with the file and line that made it, so a CPU test fails the moment a sync is (re)introduced
in a hot path. torch's own internals are not counted (e.g. Adam reads its CPU step counter with
.item(), which is no device sync); the CUDA tests cover those with set_sync_debug_mode.
"""
from __future__ import annotations

import contextlib
import os
import sys

import torch

_TORCH_DIR = os.path.dirname(torch.__file__) + os.sep
_TENSOR_PY = os.path.join(os.path.dirname(torch.__file__), "_tensor.py")

# Tensor methods that read data back to the host.
_READS = ("item", "tolist", "numpy", "cpu", "__bool__", "__int__", "__float__", "__index__", "__array__")
# torch functions and Tensor methods whose output size depends on the data (a sync on CUDA).
_DATA_SIZED = ("nonzero", "argwhere", "masked_select", "unique", "unique_consecutive")


def _caller(depth):
    """The (file, line) of the code that called the patched function: frames of torch/_tensor.py
    (Tensor.__format__, __contains__, ... forwarding to item() and the like) are skipped; None when
    the caller is inside torch (its internals are not counted)."""
    frame = sys._getframe(depth)
    while frame is not None and frame.f_code.co_filename == _TENSOR_PY:
        frame = frame.f_back
    if frame is None or frame.f_code.co_filename.startswith(_TORCH_DIR):
        return None
    return f"{frame.f_code.co_filename}:{frame.f_lineno} ({frame.f_code.co_name})"


@contextlib.contextmanager
def count_host_syncs():
    """Yields a list that collects 'what at file:line' for every host sync asked for inside the block."""
    records = []
    saved = []

    def patch(owner, name, make):
        original = getattr(owner, name)
        saved.append((owner, name, owner.__dict__.get(name)))  # None: inherited (e.g. from TensorBase)
        setattr(owner, name, make(original))

    def reader(name):
        def make(original):
            def wrapper(self, *args, **kwargs):
                where = _caller(2)
                if where is not None:
                    records.append(f"Tensor.{name} at {where}")
                return original(self, *args, **kwargs)
            return wrapper
        return make

    def data_sized(name):
        def make(original):
            def wrapper(*args, **kwargs):
                where = _caller(2)
                if where is not None:
                    records.append(f"{name} at {where}")
                return original(*args, **kwargs)
            return wrapper
        return make

    try:
        for name in _READS:
            patch(torch.Tensor, name, reader(name))
        for name in _DATA_SIZED:
            patch(torch, name, data_sized(f"torch.{name}"))
            if hasattr(torch.Tensor, name):
                patch(torch.Tensor, name, data_sized(f"Tensor.{name}"))
        yield records
    finally:
        for owner, name, own in reversed(saved):
            if own is None:
                delattr(owner, name)
            else:
                setattr(owner, name, own)
