"""The one place a `--device` option becomes a torch.device (every command and trainer)."""
from __future__ import annotations

import torch


def pick_device(name: str, local_rank: int | None = None) -> torch.device:
    """"auto" = the GPU if there is one, else the CPU. A bare "cuda" under torchrun is the rank's own
    GPU (`local_rank`). Asking for CUDA where there is none stops with a message."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise SystemExit(f"sgfast: --device {name!r}: {exc}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"sgfast: --device {name}: CUDA is not available here")
        if dev.index is None and local_rank is not None:
            dev = torch.device("cuda", local_rank)
    return dev
