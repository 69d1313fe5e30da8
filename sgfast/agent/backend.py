"""The ops the agent uses, from the fused extension (`--ops fused`) or the eager references
(`--ops eager`): the same pipeline code runs on both, so the end-to-end gain is measured on it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

NEEDED = ("composite", "aligned_crop", "focus_reward")
NEEDED_BY_MODE = {"sg": NEEDED, "baseline": ("composite",)}  # baseline mode never crops


@dataclasses.dataclass(frozen=True)
class Ops:
    name: str
    composite: Callable
    aligned_crop: Callable
    focus_reward: Callable


def _unavailable(module, op):
    def missing(*args, **kwargs):
        raise RuntimeError(f"sgfast: {module} has no {op}")
    return missing


def get_ops(name: str, mode: str = "sg") -> Ops:
    """`fused` -> sgfast.ops (needs the compiled extension), `eager` -> sgfast.reference.

    Only the ops `mode` uses must exist (baseline mode composites only)."""
    if name == "fused":
        import sgfast.ops as module

        module.require_ext()
    elif name == "eager":
        import sgfast.reference as module
    else:
        raise ValueError(f"ops must be 'fused' or 'eager', got {name!r}")
    missing = [f for f in NEEDED_BY_MODE[mode] if not hasattr(module, f)]
    if missing:
        raise RuntimeError(f"sgfast: {module.__name__} has no {', '.join(missing)} "
                           f"(needed by the agent with --ops {name})")
    return Ops(name, *(getattr(module, f, None) or _unavailable(module.__name__, f) for f in NEEDED))
