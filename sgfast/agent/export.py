"""Ship-size actor weights (fp16, no pickle) and their loader, for painting with a trained agent."""
from __future__ import annotations

import os

from sgfast.agent.env import actor_channels
from sgfast.agent.networks import Actor
from sgfast.io import load_weights, save_weights_fp16
from sgfast.models.checked_build import build_checked

WEIGHTS_KIND = "sgfast.agent"


def save_actor(path, actor, cfg, mode, extra: dict | None = None):
    meta = dict(extra or {})
    meta.update(kind=WEIGHTS_KIND, mode=mode, config=cfg.to_dict(), strokes_bg=cfg.strokes_bg,
                strokes_fg=cfg.strokes_fg, width=cfg.width, blocks=list(cfg.blocks), size=cfg.size,
                max_step=cfg.max_step)
    save_weights_fp16(path, actor.state_dict(), meta)


def load_actor(path, device="cpu"):
    """(actor in eval mode, meta). meta has mode, size, max_step, strokes_bg, strokes_fg."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sgfast: agent weights not found: {path}")
    state, meta = load_weights(path)
    if meta.get("kind") != WEIGHTS_KIND:
        raise RuntimeError(f"sgfast: {path} is not an agent weights file (kind {meta.get('kind')!r})")
    actor = build_checked(lambda: Actor(actor_channels(meta["mode"]), meta["strokes_bg"] + meta["strokes_fg"],
                                        meta["width"], tuple(meta["blocks"])), state, path, "agent")
    return actor.to(device).eval(), meta
