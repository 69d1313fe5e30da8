"""aligned_crop and focus_reward: eager reference vs torch.compile(eager reference) vs sgfast,
in one pytest-benchmark run.

    python -m pytest -q benchmarks/bench_crop.py --benchmark-columns=min,median,rounds \
        --benchmark-json=out/bench_crop.json
    python benchmarks/bench_crop.py out/bench_crop.json     (prints the ratios to eager / compile)

Shapes: the paper's (B = 96, 128 x 128 images, 128 x 128 crop) and B = 96, 256 x 256 (crop 128).
aligned_crop crops three stacked images (target, canvas before, canvas after: C = 9) times the
foreground mask, as the foreground reward does; focus_reward uses 3-channel images and a 1-channel
GBP map. Modes: forward (no autograd) and forward + backward (gradients of the differentiable
image inputs for a random upstream gradient, torch.autograd.grad so nothing accumulates).
torch.compile is warmed up (compiled) outside the timed rounds.

Memory (extra_info saved_MB): bytes autograd keeps between forward and backward besides the
inputs (torch.autograd.graph.saved_tensors_hooks, distinct storages that are not inputs). The CPU
allocator has no peak counter and RSS peaks are too noisy on the shared machine, so this is the
part of the forward+backward footprint that the implementations differ in.
"""
import json
import sys

import pytest
import torch

import sgfast
import sgfast.ops
import sgfast.reference
from saved_memory import saved_storage_bytes

torch.set_num_threads(2)

pytestmark = pytest.mark.skipif(not sgfast.HAS_EXT, reason="sgfast._C is not built")

SHAPES = {"paper_96x128x128": (96, 128, 128), "96x256x256": (96, 256, 256)}
CROP = 128
ROUNDS = {"eager": 3, "compile": 3, "sgfast": 8}
_compiled_crop = torch.compile(sgfast.reference.aligned_crop, dynamic=False)
_compiled_reward = torch.compile(sgfast.reference.focus_reward, dynamic=False)
OPS = {
    "aligned_crop": {"eager": sgfast.reference.aligned_crop, "compile": _compiled_crop,
                     "sgfast": sgfast.ops.aligned_crop},
    "focus_reward": {"eager": sgfast.reference.focus_reward, "compile": _compiled_reward,
                     "sgfast": sgfast.ops.focus_reward},
}


def boxes_for(B, gen):
    xy = torch.rand(B, 2, generator=gen) * 0.4
    wh = torch.rand(B, 2, generator=gen) * 0.4 + 0.3  # objects of 30-70 % of the image side
    return torch.cat([xy, wh], 1)


def inputs(op, shape, seed=0):
    B, H, W = shape
    gen = torch.Generator().manual_seed(seed)
    boxes = boxes_for(B, gen)
    if op == "aligned_crop":
        x = torch.rand(B, 9, H, W, generator=gen)
        mask = (torch.rand(B, 1, H, W, generator=gen) > 0.3).float()
        return [x], dict(boxes=boxes, size=CROP, mask=mask)
    target, c0, c1 = (torch.rand(B, 3, H, W, generator=gen) for _ in range(3))
    gbp = torch.rand(B, 1, H, W, generator=gen)
    return [target, c0, c1], dict(gbp=gbp, boxes=boxes, size=CROP)


def call(op, fn, images, kw):
    if op == "aligned_crop":
        return fn(images[0], kw["boxes"], kw["size"], kw["mask"])
    target, c0, c1 = images
    return fn(target, c0, c1, kw["gbp"], kw["boxes"], kw["size"])


def saved_bytes(op, fn, images, kw):
    leaves = [t.detach().requires_grad_() for t in images[-2:]]
    tensors = images + [v for v in kw.values() if torch.is_tensor(v)]
    return saved_storage_bytes(lambda: call(op, fn, images[:-2] + leaves, kw), tensors)


@pytest.mark.parametrize("impl", ["eager", "compile", "sgfast"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op", list(OPS))
def test_forward(benchmark, op, shape, impl):
    fn = OPS[op][impl]
    images, kw = inputs(op, SHAPES[shape])
    benchmark.group = f"{op} forward {shape}"

    def run():
        with torch.no_grad():
            return call(op, fn, images, kw)

    out = benchmark.pedantic(run, rounds=ROUNDS[impl], iterations=1, warmup_rounds=1)
    torch.testing.assert_close(out, call(op, OPS[op]["eager"], images, kw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("impl", ["eager", "compile", "sgfast"])
@pytest.mark.parametrize("shape", list(SHAPES))
@pytest.mark.parametrize("op", list(OPS))
def test_forward_backward(benchmark, op, shape, impl):
    fn = OPS[op][impl]
    images, kw = inputs(op, SHAPES[shape])
    # aligned_crop: gradient of x; focus_reward: of both canvases (the target is data).
    leaves = [t.requires_grad_() for t in (images if op == "aligned_crop" else images[1:])]
    grad_out = torch.rand(call(op, OPS[op]["sgfast"], images, kw).shape)
    benchmark.group = f"{op} forward+backward {shape}"

    def run():
        return torch.autograd.grad(call(op, fn, images, kw), leaves, grad_out)

    grads = benchmark.pedantic(run, rounds=ROUNDS[impl], iterations=1, warmup_rounds=1)
    assert all(torch.isfinite(g).all() for g in grads)
    benchmark.extra_info["saved_MB"] = saved_bytes(op, fn, [t.detach() for t in images], kw) / 2**20


def print_ratios(path):
    """Ratios of the medians (eager / x and compile / x) from a --benchmark-json file."""
    with open(path) as f:
        rows = json.load(f)["benchmarks"]
    by_group = {}
    for r in rows:
        by_group.setdefault(r["group"], {})[r["params"]["impl"]] = r
    for group, impls in sorted(by_group.items()):
        s = impls["sgfast"]["stats"]["median"]
        line = f"{group}: sgfast {s * 1e3:.1f} ms"
        for ref in ("eager", "compile"):
            if ref in impls:
                line += f", {ref} {impls[ref]['stats']['median'] * 1e3:.1f} ms ({impls[ref]['stats']['median'] / s:.1f}x)"
        mem = {k: v["extra_info"].get("saved_MB") for k, v in impls.items() if "saved_MB" in v["extra_info"]}
        if mem:
            line += ", saved_MB " + ", ".join(f"{k} {v:.1f}" for k, v in mem.items())
        print(line)


if __name__ == "__main__":
    print_ratios(sys.argv[1])
