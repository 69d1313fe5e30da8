"""No host sync in a DDPG update or in a painting step.

On the CPU, tests/sync_counter.py records every call that would wait for a GPU (a value read back,
an op sized by the data) made outside torch; on a GPU, torch.cuda.set_sync_debug_mode("warn")
reports the real ones (torch's internals included). A painting may wait once, after its last step
(the copies of what it returns), so its count must not grow with the number of steps.
"""
import dataclasses
import warnings

import pytest
import torch

import sgfast
from conftest import needs_cuda, needs_ext
from sync_counter import count_host_syncs

pytestmark = needs_ext


def _agent(mode, device="cpu", ops="fused", renderer="neural"):
    from sgfast.agent.config import get_config
    from sgfast.agent.data import synthetic_data
    from sgfast.agent.ddpg import DDPG
    from sgfast.agent.env import ExactPainter, PaintEnv, Painter
    from sgfast.agent.replay import ReplayMemory
    from sgfast.backend import get_ops
    from sgfast.models.renderer import Renderer
    from sgfast.strokes import STROKE_PARAMS

    torch.manual_seed(0)
    cfg = dataclasses.replace(get_config("smoke"), batch_size=6)
    backend = get_ops(ops, mode)
    net = Renderer(cfg.renderer).to(device).eval().requires_grad_(False)
    data = synthetic_data(12, cfg.size, seed=0, device=device)
    painter = (Painter(net, backend, mode, cfg.strokes_bg) if renderer == "neural"
               else ExactPainter(backend, mode, cfg.strokes_bg, cfg.size))
    agent = DDPG(cfg, mode, painter, backend, data, device)
    gen = torch.Generator().manual_seed(0)
    env = PaintEnv(data, painter, cfg.max_step, cfg.env_batch, data.train_ids, gen)
    replay = ReplayMemory(64, cfg.size, cfg.strokes * STROKE_PARAMS, device)
    env.reset()
    for t in range(cfg.max_step):
        before, after, _ = env.step(agent.act(env.canvas, env.targets, t))
        replay.append(before, after, torch.rand(cfg.env_batch, cfg.strokes * STROKE_PARAMS, generator=gen), t,
                      env.ids, env.flip)
    batch = replay.sample(cfg.batch_size, gen)
    batch["flip"][:2] = torch.tensor([True, False])  # both kinds of sample
    return agent, batch


# Reads made for CPU tensors only, where they cost nothing (test_cpu_only_reads_skip_other_devices
# checks they read nothing on another device).
CPU_ONLY = ("(_refuse_nonfinite_on_cpu)", "(check_render_values)")


def device_syncs(syncs):
    return [s for s in syncs if not s.endswith(CPU_ONLY)]


@pytest.mark.parametrize("mode, renderer", [("sg", "neural"), ("baseline", "neural"), ("sg", "exact"),
                                            ("baseline", "exact")])
def test_ddpg_update_asks_for_no_host_sync(mode, renderer, one_thread):
    agent, batch = _agent(mode, renderer=renderer)
    agent.update(batch)  # warm-up
    with count_host_syncs() as syncs:
        stats = agent.update(batch)
    assert device_syncs(syncs) == [], "host syncs in a DDPG update:\n" + "\n".join(device_syncs(syncs))
    if renderer == "neural":
        assert len(syncs) == (12 if mode == "sg" else 0)  # the CPU-only box checks: crops and focus terms
    else:  # and render_strokes' CPU-only value checks
        assert len(syncs) > (12 if mode == "sg" else 0)
    assert all(isinstance(v, torch.Tensor) for v in stats.values())  # statistics stay on the device


def test_the_counter_catches_a_reintroduced_sync(one_thread, monkeypatch):
    """TensorData.batch as it was (`if flip is not None and bool(flip.any())`) is caught."""
    from sgfast.agent.data import TensorData

    agent, batch = _agent("sg")
    original = TensorData.batch

    def batch_with_sync(self, ids, flip=None):
        if flip is not None and bool(flip.any()):
            return original(self, ids, flip)
        return original(self, ids, None)

    monkeypatch.setattr(TensorData, "batch", batch_with_sync)
    with count_host_syncs() as syncs:
        agent.update(batch)
    syncs = device_syncs(syncs)
    assert len(syncs) == 1 and "Tensor.__bool__" in syncs[0] and "(batch_with_sync)" in syncs[0]
    with count_host_syncs() as syncs:
        t = torch.arange(4.0)
        t.sum().item(), t.nonzero(), f"{t.max():.1f}", 2.0 in t, t.tolist(), int(t[1]), t.cpu()
    assert [s.split(" at ")[0] for s in syncs] == [
        "Tensor.item", "Tensor.nonzero", "Tensor.item", "Tensor.item", "Tensor.tolist", "Tensor.__int__", "Tensor.cpu"]
    x = torch.tensor(0.5)
    assert torch.tensor([x, x]).shape == (2,)  # no patch left behind (0-d tensors are not sequences)
    assert not hasattr(torch.Tensor.__dict__, "item")  # the patches are gone


def test_cpu_only_reads_skip_other_devices():
    """The wrappers read values (free on the CPU) for CPU tensors only: on another device (meta here,
    standing in for CUDA) the crop/focus box check and the rasterize and render_strokes value checks read
    nothing."""
    from sgfast.ops.crop import check_boxes

    x, boxes = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 4, device="meta")
    with count_host_syncs() as syncs:
        check_boxes("aligned_crop", boxes, x)
        out = sgfast.ops.rasterize_strokes(torch.empty(3, 10, device="meta"), 8)
    assert syncs == [] and out.shape == (3, 8, 8)
    canvas, strokes = torch.empty(2, 3, 8, 8, device="meta"), torch.empty(2, 5, 13, device="meta")
    with count_host_syncs() as syncs:
        out = sgfast.ops.render_strokes(canvas, strokes)
    assert syncs == [] and out.shape == (2, 3, 8, 8)
    with count_host_syncs() as syncs:
        sgfast.ops.render_strokes(torch.rand(2, 3, 8, 8), torch.rand(2, 5, 13))
    assert len(syncs) == 2 and all(s.endswith(CPU_ONLY) for s in syncs)
    with count_host_syncs() as syncs:
        check_boxes("aligned_crop", torch.rand(2, 4), torch.rand(2, 3, 8, 8))
    assert len(syncs) == 1 and syncs[0].endswith(CPU_ONLY)


def _painting(steps, frames, mode="sg", device="cpu"):
    """paint_batch on two generated scenes (one with three instances, one with one)."""
    from sgfast.paint import load_models
    from sgfast.paint.agent_painter import paint_batch

    models = load_models(mode, device=device, need_segmenter=False)
    size = models.size
    g = torch.Generator().manual_seed(1)
    targets = torch.rand(2, 3, size, size, generator=g)
    sem = None
    if mode == "sg":
        three = (torch.rand(3, size, size, generator=g) > 0.6).float()
        one = (torch.rand(1, size, size, generator=g) > 0.5).float()
        sem = [(three, None, torch.rand(3, size, size, generator=g)), (one, None, torch.rand(1, size, size, generator=g))]
    else:
        sem = [None, None]
    return lambda: paint_batch(models, targets, sem, steps, frames)


@pytest.mark.parametrize("mode, frames", [("sg", "stroke"), ("sg", "none"), ("baseline", "step")])
def test_painting_steps_ask_for_no_host_sync(mode, frames, one_thread):
    counts = []
    for steps in (1, 3):
        run = _painting(steps, frames, mode)
        with count_host_syncs() as syncs:
            out = run()
        counts.append(device_syncs(syncs))
    assert len(counts[1]) == len(counts[0]), ("syncs that grow with the steps:\n" +
                                              "\n".join(s for s in counts[1] if s not in counts[0]))
    assert len(out[3]) == 3 and len(out[5]) == 2  # actions of 3 steps, frames of 2 images


def test_painting_without_per_step_syncs_is_unchanged():
    """The numbers paint_batch returns do not depend on where the host copies happen: the same
    painting twice, and its frames end with its canvas."""
    run = _painting(3, "stroke")
    a, b = run(), run()
    for x, y in zip(a[:3], b[:3]):
        assert torch.equal(x, y)
    for x, y in zip(a[3] + a[4], b[3] + b[4]):
        assert torch.equal(x, y)
    assert len(a[5][0]) == 1 + 3 * (len(a[3][0][0]) // 13)  # first frame, then k per step
    from sgfast.data.tensor_images import to_u8_hwc
    import numpy as np

    assert np.array_equal(a[5][0][-1], to_u8_hwc(a[0][0]))


# --- CUDA: the real syncs, torch's internals included ------------------------------------------------

def _cuda_syncs(fn):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return [str(w.message) for w in caught if "synchroniz" in str(w.message)]


@needs_cuda
@pytest.mark.parametrize("mode", ["sg", "baseline"])
def test_cuda_ddpg_update_does_not_sync(mode):
    agent, batch = _agent(mode, "cuda")
    agent.update(batch)  # warm-up (lazy initialisation may sync)
    torch.cuda.synchronize()
    assert _cuda_syncs(lambda: agent.update(batch)) == []


@needs_cuda
def test_cuda_painting_syncs_do_not_grow_with_steps():
    counts = []
    for steps in (1, 3):
        run = _painting(steps, "stroke", device="cuda")
        run()  # warm-up
        torch.cuda.synchronize()
        counts.append(len(_cuda_syncs(run)))
    assert counts[0] == counts[1], counts
