"""rasterize_strokes throughput (strokes/s) at 128 px: the cv2 generator loop (the baseline's
`draw`, tests/ltp_oracle.py), the eager torch reference, and sgfast's ltp and exact modes, batches 64
and 4096, in one pytest-benchmark run; the last test prints the ratios.

    python -m pytest benchmarks/bench_rasterize.py -s --benchmark-columns=min,median,rounds

Slow implementations are timed on a subset of the batch and reported per stroke (it says which in the
table): the cv2 loop and the eager reference do the same work for every stroke, so strokes/s does not
depend on the batch beyond that. torch.compile of the eager reference is not timed: its 100-disc loop
with data-dependent table lookups unrolls into a graph that takes minutes to compile on 2 cores.
"""
import os
import sys

import pytest
import torch

import sgfast
from sgfast.ops import rasterize_strokes
from sgfast.reference import rasterize_strokes as eager_rasterize

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))
from ltp_oracle import alpha_batch  # noqa: E402

SIZE = 128
THREADS = 2
RESULTS = {}  # (impl, batch) -> (strokes/s, strokes timed per call)

# impl -> strokes actually timed per call for each batch (subset for the slow ones)
TIMED = {
    "cv2": {64: 64, 4096: 256},
    "eager-ltp": {64: 16, 4096: 16},
    "sgfast-ltp": {64: 64, 4096: 4096},
    "sgfast-exact": {64: 64, 4096: 512},
}


def _params(batch):
    return torch.rand(batch, 10, generator=torch.Generator().manual_seed(batch))


def _run(impl, params):
    if impl == "cv2":
        return alpha_batch(params.double().numpy(), SIZE)
    if impl == "eager-ltp":
        return eager_rasterize(params, SIZE, "ltp")
    if impl == "sgfast-ltp":
        return rasterize_strokes(params, SIZE, "ltp")
    return rasterize_strokes(params, SIZE, "exact", 4)


@pytest.mark.skipif(not sgfast.HAS_EXT, reason="sgfast._C is not built")
@pytest.mark.parametrize("batch", [64, 4096])
@pytest.mark.parametrize("impl", list(TIMED))
def test_rasterize_throughput(benchmark, impl, batch):
    torch.set_num_threads(THREADS)
    timed = TIMED[impl][batch]
    params = _params(batch)[:timed]
    benchmark.group = f"rasterize {SIZE}px batch {batch}"
    benchmark.extra_info.update(strokes_timed=timed, batch=batch)
    slow = impl in ("cv2", "eager-ltp", "sgfast-exact")
    if slow:
        benchmark.pedantic(_run, args=(impl, params), rounds=2 if impl != "sgfast-exact" else 1, iterations=1,
                           warmup_rounds=0)
    else:
        benchmark.pedantic(_run, args=(impl, params), rounds=10, iterations=1, warmup_rounds=1)
    RESULTS[(impl, batch)] = (timed / benchmark.stats.stats.median, timed)


def test_report_ratios(capsys):
    if not RESULTS:
        pytest.skip("no throughput measured")
    lines = [f"rasterize_strokes at {SIZE} px, torch threads = {THREADS} (cv2 and eager run on one core)",
             f"{'impl':14s} {'batch':>6s} {'timed':>6s} {'strokes/s':>12s} {'x cv2':>8s}"]
    for batch in (64, 4096):
        base = RESULTS.get(("cv2", batch), (None,))[0]
        for impl in TIMED:
            if (impl, batch) not in RESULTS:
                continue
            rate, timed = RESULTS[(impl, batch)]
            ratio = f"{rate / base:8.1f}" if base else "       -"
            lines.append(f"{impl:14s} {batch:6d} {timed:6d} {rate:12.0f} {ratio}")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
