"""composite: eager reference vs torch.compile(eager reference) vs sgfast, in one pytest-benchmark run.

    python -m pytest -q benchmarks/bench_composite.py --benchmark-columns=min,median,rounds \
        --benchmark-json=out/bench_composite.json

Shapes: the paper's (B = 96, 128 x 128, K = 5: 2 background + 3 foreground strokes with a soft
mask) and B = 96, 256 x 256. Modes: forward (no autograd) and forward + backward (gradients of
canvas, alpha and color for a random upstream gradient, via torch.autograd.grad so nothing
accumulates). torch.compile is warmed up (compiled) outside the timed rounds.

extra_info of each benchmark:
  saved_MB   bytes autograd keeps for the backward besides the inputs
             (torch.autograd.graph.saved_tensors_hooks, distinct storages): the memory a
             forward+backward holds on top of its inputs and outputs. (The CPU allocator has no peak counter; RSS peaks are too noisy here.)
  moved_MB   bytes the op must read and write at least (inputs once, outputs once);
  GBps       moved_MB / best time: achieved bandwidth, to compare with test_copy_bandwidth.
"""
import pytest
import torch

import sgfast
import sgfast.ops
import sgfast.reference
from saved_memory import saved_storage_bytes

torch.set_num_threads(2)

pytestmark = pytest.mark.skipif(not sgfast.HAS_EXT, reason="sgfast._C is not built")

SHAPES = {"paper_96x128x128_K5": (96, 5, 128, 128), "96x256x256_K5": (96, 5, 256, 256)}
LAYER = [False, False, True, True, True]  # paper: 2 background then 3 foreground strokes
_compiled = torch.compile(sgfast.reference.composite, dynamic=False)
IMPLS = {"eager": sgfast.reference.composite, "compile": _compiled, "sgfast": sgfast.ops.composite}
# Eager rounds take seconds: fewer of them.
ROUNDS = {"eager": 3, "compile": 10, "sgfast": 10}


def inputs(shape, seed=0):
    b, k, h, w = shape
    g = torch.Generator().manual_seed(seed)
    canvas = torch.rand(b, 3, h, w, generator=g)
    alpha = torch.rand(b, k, h, w, generator=g)
    color = torch.rand(b, k, 3, generator=g)
    mask = torch.rand(b, 1, h, w, generator=g)
    layer = torch.tensor(LAYER[:k])
    return canvas, alpha, color, mask, layer


def moved_bytes(shape, backward):
    b, k, h, w = shape
    px = b * h * w * 4  # one float32 plane per image
    fwd = px * (3 + k + 1) + px * 3  # read canvas, alpha, mask; write canvas
    if not backward:
        return fwd
    # backward: read grad_out, canvas, alpha, mask; write grad canvas, grad alpha
    return fwd + px * (3 + 3 + k + 1) + px * (3 + k)


def saved_bytes(fn, canvas, alpha, color, mask, layer):
    """Bytes of the distinct storages autograd saves for the backward, inputs excluded."""
    leaves = [t.detach().requires_grad_() for t in (canvas, alpha, color)]
    return saved_storage_bytes(lambda: fn(*leaves, mask, layer), (canvas, alpha, color, mask, layer))


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_forward(benchmark, impl, shape):
    fn, dims = IMPLS[impl], SHAPES[shape]
    canvas, alpha, color, mask, layer = inputs(dims)
    benchmark.group = f"composite forward {shape}"

    def run():
        with torch.no_grad():
            return fn(canvas, alpha, color, mask, layer)

    out = benchmark.pedantic(run, rounds=ROUNDS[impl], iterations=1, warmup_rounds=1)
    torch.testing.assert_close(out, sgfast.ops.composite(canvas, alpha, color, mask, layer), rtol=1e-4, atol=1e-5)
    moved = moved_bytes(dims, backward=False)
    benchmark.extra_info.update(moved_MB=moved / 2**20, GBps=moved / benchmark.stats.stats.min / 1e9)


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape", list(SHAPES))
def test_forward_backward(benchmark, impl, shape):
    fn, dims = IMPLS[impl], SHAPES[shape]
    canvas, alpha, color, mask, layer = inputs(dims)
    leaves = [t.requires_grad_() for t in (canvas, alpha, color)]
    grad_out = torch.rand_like(canvas)
    benchmark.group = f"composite forward+backward {shape}"

    def run():
        out = fn(*leaves, mask, layer)
        return torch.autograd.grad(out, leaves, grad_out)

    grads = benchmark.pedantic(run, rounds=ROUNDS[impl], iterations=1, warmup_rounds=1)
    assert all(torch.isfinite(g).all() for g in grads)
    moved = moved_bytes(dims, backward=True)
    benchmark.extra_info.update(moved_MB=moved / 2**20, GBps=moved / benchmark.stats.stats.min / 1e9,
                                saved_MB=saved_bytes(fn, canvas, alpha, color, mask, layer) / 2**20)


def test_copy_bandwidth(benchmark):
    """The machine's copy bandwidth (read + write), 2 threads, 256 MiB per side."""
    src = torch.rand(64 * 2**20)
    dst = torch.empty_like(src)
    benchmark.group = "copy bandwidth"
    benchmark.pedantic(dst.copy_, args=(src,), rounds=10, iterations=1, warmup_rounds=1)
    moved = 2 * src.numel() * src.element_size()
    benchmark.extra_info.update(moved_MB=moved / 2**20, GBps=moved / benchmark.stats.stats.min / 1e9)
