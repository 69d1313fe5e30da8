"""The one place a `--device` option becomes a torch.device (every command and trainer)."""
from __future__ import annotations

import torch

from sgfast.cli_errors import UsageError

CHOICES = "auto, cpu, cuda, cuda:N or mps"


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """"auto" = the GPU if there is one, else the CPU. A bare "cuda" under torchrun is the rank's own
    GPU (`local_rank`). A device that is not there (CUDA on a CPU-only torch or machine, a CUDA index
    past the last GPU, MPS off a Mac) is a UsageError naming --device: one line, before any work."""
    name = str(name).strip()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UsageError(f"--device {name!r}: expected {CHOICES}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA device is visible")
            raise UsageError(f"--device {name}: CUDA is not available here ({why}); use --device cpu")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise UsageError(f"--device {name}: there is no CUDA device {dev.index} ({count} visible)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise UsageError(f"--device {name}: MPS is not available here; use --device cpu")
    elif dev.type != "cpu":
        raise UsageError(f"--device {name}: sgfast runs on cpu, cuda or mps devices, not {dev.type!r}")
    return dev
