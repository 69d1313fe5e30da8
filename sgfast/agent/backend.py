"""The ops the agent uses, from the fused extension (`--ops fused`) or the eager references
(`--ops eager`): the same pipeline code runs on both, so the end-to-end gain is measured on it.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

NEEDED = ("composite", "aligned_crop", "focus_reward")


@dataclasses.dataclass(frozen=True)
class Ops:
    name: str
    composite: Callable
    aligned_crop: Callable
    focus_reward: Callable


def get_ops(name: str) -> Ops:
    """`fused` -> sgfast.ops (needs the compiled extension), `eager` -> sgfast.reference."""
    if name == "fused":
        import sgfast.ops as module

        module.require_ext()
    elif name == "eager":
        import sgfast.reference as module
    else:
        raise ValueError(f"ops must be 'fused' or 'eager', got {name!r}")
    missing = [f for f in NEEDED if not hasattr(module, f)]
    if missing:
        raise RuntimeError(f"sgfast: {module.__name__} has no {', '.join(missing)} "
                           f"(needed by the agent with --ops {name})")
    return Ops(name, *(getattr(module, f) for f in NEEDED))
