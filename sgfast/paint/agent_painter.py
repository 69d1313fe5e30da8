"""Painting with a trained agent: each step the actor's K strokes are rendered by the neural
renderer and composited (sg mode: the first strokes_bg strokes are background strokes gated by
1 - S, the rest foreground strokes gated by S; Eq. 3-4). As in training (sgfast.agent.env) the
canvas is requantised to uint8 after every step. With instance masks every step paints the
instance Eq. 16 picks (with the min_gain rule, sgfast/paint/instances.py).

A step reads nothing back from the device: the instance choice stays on the device, and what the
painting returns (actions, instance choices, frames) is copied to the host without waiting
(pinned memory, non_blocking) and waited for once, after the last step (tests/test_host_syncs.py)."""
from __future__ import annotations

import torch

from sgfast.paint.instances import DEFAULT_MIN_GAIN, InstancePicker
from sgfast.strokes import as_strokes, colors, neural_alpha


def _u8_hwc(t: torch.Tensor) -> torch.Tensor:
    """[..., 3, H, W] float in [0, 1] -> uint8 [..., H, W, 3] on t's device (to_u8_hwc's numbers)."""
    return (t.clamp(0, 1) * 255).round().to(torch.uint8).movedim(-3, -1)


class _HostBuffer:
    """A host tensor filled by device-to-host copies that do not wait (into pinned memory on CUDA);
    readable once `wait(device)` returned."""

    def __init__(self, shape, dtype, device):
        self.data = torch.empty(shape, dtype=dtype, pin_memory=torch.device(device).type == "cuda")

    def put(self, index, t):
        self.data[index].copy_(t, non_blocking=True)

    @staticmethod
    def wait(device):
        if torch.device(device).type == "cuda":
            torch.cuda.current_stream(device).synchronize()


def _padded(maps, dev):
    """B tensors [M_b, S, S] -> [B, max M_b, S, S] (zeros for the missing instances, never picked)."""
    width = max(m.shape[0] for m in maps)
    out = maps[0].new_zeros((len(maps), width) + tuple(maps[0].shape[1:]), device=dev)
    for i, m in enumerate(maps):
        out[i, :m.shape[0]] = m
    return out


@torch.no_grad()
def paint_batch(models, targets, sem, steps, frames_per, canvas0=None, t0=0, layers0=None,
                 bg_gate="chosen", min_gain=DEFAULT_MIN_GAIN):
    """Paint one batch. targets [B, 3, S, S]; sem: per image (masks [M,S,S], boxes, gbp).
    canvas0, layers0 = (fg, bg), t0: continue a painting (--divide). bg_gate: what the background
    strokes keep off with several instances: "union" (every instance) or "chosen" (only the step's).
    min_gain: the instance choice's rule on top of Eq. 16 (sgfast/paint/instances.py)."""
    from sgfast.agent.env import actor_input, coord_channels, to_uint8

    dev, mode, size = models.device, models.mode, models.size
    meta = models.meta
    b = targets.shape[0]
    k = meta["strokes_bg"] + meta["strokes_fg"]
    bg = meta["strokes_bg"] if mode == "sg" else k
    layer = torch.arange(k, device=dev) >= bg if mode == "sg" else None  # bg strokes first, then fg
    coords = coord_channels(size, dev)
    targets = targets.to(dev)
    canvas = torch.zeros(b, 3, size, size, device=dev) if canvas0 is None else canvas0.to(dev)  # --divide
    fg_layer, bg_layer = ((torch.zeros_like(canvas), torch.zeros_like(canvas)) if layers0 is None
                          else (layers0[0].to(dev), layers0[1].to(dev)))
    all_masks = [s[0].to(dev) for s in sem] if mode == "sg" else None
    all_gbp = [s[2].to(dev) for s in sem] if mode == "sg" else None
    # Several instances and "union": the background strokes keep off all of them, so an instance
    # that is not the step's is not painted in the background's colours (docs/painting.md).
    union = (torch.stack([m.amax(0) for m in all_masks])[:, None]
             if mode == "sg" and bg_gate == "union" and any(m.shape[0] > 1 for m in all_masks) else None)
    picker = InstancePicker(targets, all_masks, min_gain) if mode == "sg" else None
    if mode == "sg":  # every instance's S and G, gathered per step by the chosen index on the device
        masks_pad, gbp_pad, rows = _padded(all_masks, dev), _padded(all_gbp, dev), torch.arange(b, device=dev)
    # What the painting returns, copied to the host as the steps go (no waiting): frame slot 0 is
    # the first canvas, slot t + 1 the canvas after step t.
    actions = None  # [steps, B, K * 13] in the actor's dtype, made at the first step
    chosen = _HostBuffer((steps, b), torch.long, dev) if mode == "sg" else None
    step_frames = _HostBuffer((1 + (steps if frames_per != "none" else 0), b, size, size, 3), torch.uint8, dev)
    stroke_frames = (_HostBuffer((steps, b, k - 1, size, size, 3), torch.uint8, dev) if frames_per == "stroke"
                     else None)
    step_frames.put(0, _u8_hwc(canvas))
    for t in range(steps):
        if mode == "sg":
            u = picker.pick(canvas)  # Eq. 16 (+ min_gain), from this step's canvas
            mask = masks_pad[rows, u][:, None]
            gbp = gbp_pad[rows, u][:, None]
            chosen.put(t, u)
            obs = {"image": targets, "mask": mask, "gbp": gbp}
            bg_mask = mask if union is None else union
        else:
            mask = bg_mask = None
            obs = {"image": targets}
        t_frac = torch.full((b,), (t0 + t) / meta["max_step"], device=dev)
        action = models.actor(actor_input(canvas, obs, t_frac, coords, mode))
        if actions is None:
            actions = _HostBuffer((steps,) + tuple(action.shape), action.dtype, dev)
        actions.put(t, action)
        a = as_strokes(action)
        alpha = neural_alpha(models.renderer, a)
        color = colors(a)
        # Composite arguments (alpha, color, mask, layer) of the strokes in runs sharing one mask:
        # all K under S_u (Eq. 3-4 in one pass), or with the union the bg strokes under it (Eq. 3)
        # and then the fg strokes under S_u (Eq. 4). The bg and fg runs also paint the layers.
        if mode == "sg":
            bg_run = (alpha[:, :bg].contiguous(), color[:, :bg].contiguous(), bg_mask, layer[:bg])
            fg_run = (alpha[:, bg:].contiguous(), color[:, bg:].contiguous(), mask, layer[bg:])
        runs = [(alpha, color, mask, layer)] if bg_mask is mask else [bg_run, fg_run]
        if frames_per == "stroke":
            fr, c = [], canvas
            for run in runs:
                fr.append(models.ops.composite_frames(c, *run))
                c = fr[-1][:, -1].contiguous()
            stroke_frames.put(t, _u8_hwc(torch.cat(fr, 1)[:, :k - 1]))  # [B, k - 1, S, S, 3]
        c = canvas
        for run in runs:
            c = models.ops.composite(c, *run)
        canvas = to_uint8(c).float() / 255
        if mode == "sg":
            bg_layer = models.ops.composite(bg_layer, *bg_run)
            fg_layer = models.ops.composite(fg_layer, *fg_run)
        else:
            bg_layer = canvas
        if frames_per != "none":
            step_frames.put(t + 1, _u8_hwc(canvas))  # [B, S, S, 3]
    _HostBuffer.wait(dev)  # the painting's one wait for the device
    shots = step_frames.data.numpy()
    strokes = stroke_frames.data.numpy() if stroke_frames is not None else None
    frames = [[shots[0, i]] for i in range(b)]
    for t in range(steps):
        for i in range(b):
            if strokes is not None:
                frames[i].extend(strokes[t, i])
            if frames_per != "none":
                frames[i].append(shots[t + 1, i])
    return (canvas.cpu(), fg_layer.cpu(), bg_layer.cpu(), list(actions.data.unbind(0)) if steps else [],
            list(chosen.data.unbind(0)) if chosen is not None else [], frames)
