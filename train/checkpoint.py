"""Training checkpoints of every trainer: OUT/checkpoint.pt.

A checkpoint is a dict of tensors and plain values with a "kind" ("renderer", "segmenter",
"expert", "sgfast.agent.checkpoint"), written atomically (a temporary file renamed over the old one,
sgfast.io.save_checkpoint) and read without executing code (torch.load(weights_only=True)). The
loop takes them only between steps, so a resumed run continues the very same stream of batches.
What else a checkpoint holds (model, optimiser, counters, RNG states, config) is the trainer's.

Renderer checkpoints written before they had a "kind" (config name, lr_steps, train_seconds and
no kind) are recognised and load as "renderer".
"""
from __future__ import annotations

import os
import time

from sgfast.cli_errors import UsageError
from sgfast.io import load_checkpoint, save_checkpoint

CHECKPOINT_NAME = "checkpoint.pt"


def checkpoint_path(out: str) -> str:
    return os.path.join(out, CHECKPOINT_NAME)


def _kind(state) -> str | None:
    if not isinstance(state, dict):
        return None
    if "kind" in state:
        return state["kind"]
    if isinstance(state.get("config"), str) and {"lr_steps", "train_seconds", "model"} <= state.keys():
        return "renderer"  # written before renderer checkpoints had a kind
    return None


def save(path: str, kind: str, state: dict):
    """Write `state` (tensors and plain values only) atomically with its kind and the time."""
    save_checkpoint(path, {**state, "kind": kind, "saved_at": time.time()})


def load(path: str, kind: str, *, map_location="cpu", required=("model",), what="--resume") -> dict:
    """The checkpoint at `path`, which must be a `kind` training checkpoint holding `required`;
    anything else is the user's mistake (UsageError naming `what`)."""
    if not os.path.isfile(path):
        raise UsageError(f"{what}: no checkpoint at {path} (train without --resume first)")
    try:
        state = load_checkpoint(path, map_location=map_location)
    except RuntimeError as exc:
        raise UsageError(f"{what}: {exc}".replace("sgfast: ", "")) from None
    found = _kind(state)
    if found != kind or any(k not in state for k in required):
        label = {"sgfast.agent.checkpoint": "agent"}.get(kind, kind)
        raise UsageError(f"{what}: {path} is not a {label} training checkpoint")
    return state
