"""The one switch between the fused ops (`--ops fused`: sgfast.ops, the compiled extension) and
their eager references (`--ops eager`: sgfast.reference). Every op is resolved here once; the agent,
training, painting and re-rendering call them through the returned Ops, so `--ops eager` runs no
fused op anywhere and the end-to-end gain is measured on the same pipeline code.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

OP_NAMES = ("rasterize_strokes", "composite", "composite_frames", "aligned_crop", "focus_reward", "focus_distance",
            "render_strokes")
BACKENDS = ("fused", "eager")


@dataclasses.dataclass(frozen=True)
class Ops:
    name: str  # "fused" or "eager"
    rasterize_strokes: Callable
    composite: Callable
    composite_frames: Callable
    aligned_crop: Callable
    focus_reward: Callable
    focus_distance: Callable
    render_strokes: Callable


def get_ops(name: str, mode: str | None = None) -> Ops:
    """`fused` -> sgfast.ops (needs the compiled extension: a clear error says how to build it),
    `eager` -> sgfast.reference. `mode` is accepted for the callers that pass the agent's mode;
    every op exists in both backends."""
    if name == "fused":
        import sgfast.ops as module

        module.require_ext()
    elif name == "eager":
        import sgfast.reference as module
    else:
        raise ValueError(f"ops must be one of {BACKENDS}, got {name!r}")
    return Ops(name, *(getattr(module, op) for op in OP_NAMES))
