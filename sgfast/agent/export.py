"""Ship-size actor weights (fp16, no pickle) and their loader, for painting with a trained agent."""
from __future__ import annotations

import os

from sgfast.agent.env import RENDERERS, actor_channels, check_softness
from sgfast.agent.networks import Actor
from sgfast.io import load_weights, save_weights_fp16
from sgfast.models.checked_build import build_checked

WEIGHTS_KIND = "sgfast.agent"


def save_actor(path, actor, cfg, mode, extra: dict | None = None, renderer="neural", softness=None):
    """fp16 actor weights and their meta. renderer: what the agent was trained with, "neural" (the
    meta says nothing, as before there was a choice) or "exact" (render_strokes; the meta records
    renderer "exact" and the softness, and painting then renders the strokes with render_strokes)."""
    if renderer not in RENDERERS:
        raise ValueError(f"renderer must be one of {RENDERERS}, got {renderer!r}")
    meta = dict(extra or {})
    meta.update(kind=WEIGHTS_KIND, mode=mode, config=cfg.to_dict(), strokes_bg=cfg.strokes_bg,
                strokes_fg=cfg.strokes_fg, width=cfg.width, blocks=list(cfg.blocks), size=cfg.size,
                max_step=cfg.max_step)
    if renderer == "exact":
        meta.update(renderer="exact", softness=check_softness(softness))
    save_weights_fp16(path, actor.state_dict(), meta)


def actor_renderer(meta: dict) -> str:
    """"neural" or "exact": what the agent was trained (and paints) with; files without the key: neural."""
    return meta.get("renderer", "neural")


def load_actor(path, device="cpu"):
    """(actor in eval mode, meta). meta has mode, size, max_step, strokes_bg, strokes_fg, and for an
    agent trained with the exact renderer renderer "exact" and softness (actor_renderer)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sgfast: agent weights not found: {path}")
    state, meta = load_weights(path)
    if meta.get("kind") != WEIGHTS_KIND:
        raise RuntimeError(f"sgfast: {path} is not an agent weights file (kind {meta.get('kind')!r})")
    if actor_renderer(meta) not in RENDERERS:
        raise RuntimeError(f"sgfast: {path}: unknown renderer {meta['renderer']!r} (expected one of {RENDERERS})")
    if actor_renderer(meta) == "exact":
        try:
            check_softness(meta.get("softness"))
        except ValueError as exc:
            raise RuntimeError(f"sgfast: {path}: {exc}") from None
    actor = build_checked(lambda: Actor(actor_channels(meta["mode"]), meta["strokes_bg"] + meta["strokes_fg"],
                                        meta["width"], tuple(meta["blocks"])), state, path, "agent")
    return actor.to(device).eval(), meta
