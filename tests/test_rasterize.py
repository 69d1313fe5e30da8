"""rasterize_strokes: ltp against the cv2 generator, exact mode against a brute-force reference and
its own resolution consistency, bad input, the CLI, and CUDA against CPU."""
import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import needs_cuda, needs_ext

sys.path.insert(0, os.path.dirname(__file__))
from ltp_oracle import alpha_batch  # noqa: E402

import sgfast.reference as reference  # noqa: E402
from sgfast.ops import rasterize_strokes  # noqa: E402
from sgfast.reference.rasterize import circle_halfwidths  # noqa: E402

pytestmark = needs_ext


def edge_strokes(seed=0):
    """Strokes at the edges of the parameter space, on random backgrounds."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for z0, z2 in ((0, 0), (1, 1), (0, 1), (1, 0)):
        f = torch.rand(10, generator=g, dtype=torch.float64)
        f[6], f[7] = z0, z2
        rows.append(f)
    for w0, w2 in ((0, 0), (1, 1), (0, 1), (1, 0)):
        f = torch.rand(10, generator=g, dtype=torch.float64)
        f[8], f[9] = w0, w2
        rows.append(f)
    for corner in ((0, 0, 1, 1), (0, 1, 1, 0), (1, 1, 0, 0), (0, 0, 0, 1)):  # endpoints on the borders
        f = torch.rand(10, generator=g, dtype=torch.float64)
        f[0], f[1], f[4], f[5] = corner
        f[6:8] = 1.0  # big discs clipped by the canvas
        rows.append(f)
    for v in (0.0, 0.5, 1.0):  # all three points equal
        f = torch.rand(10, generator=g, dtype=torch.float64)
        f[0:6] = v
        rows.append(f)
    for v in (0.0, 1.0):  # relative control point at either end
        f = torch.rand(10, generator=g, dtype=torch.float64)
        f[2], f[3] = v, v
        rows.append(f)
    rows.append(torch.zeros(10, dtype=torch.float64))
    rows.append(torch.ones(10, dtype=torch.float64))
    return torch.stack(rows)


def test_circle_rule_matches_cv2():
    """The midpoint filled-circle half-widths equal what cv2.circle draws, radius 0..130."""
    for r in range(131):
        side = 2 * r + 5
        canvas = np.zeros((side, side), np.float32)
        c = r + 2
        cv2.circle(canvas, (c, c), r, 1.0, -1)
        for d in range(-r - 2, r + 3):
            cols = np.nonzero(canvas[c + d])[0]
            if abs(d) > r:
                assert cols.size == 0, (r, d)
                continue
            hw = circle_halfwidths(r)[abs(d)]
            assert cols.min() == c - hw and cols.max() == c + hw and cols.size == 2 * hw + 1, (r, d)


# (size, random strokes): 2000 random strokes in all, plus the edge strokes at every size.
@pytest.mark.parametrize("size,count", [(64, 1500), (128, 400), (256, 100)])
def test_ltp_equals_cv2_generator(size, count):
    g = torch.Generator().manual_seed(size)
    params = torch.cat([torch.rand(count, 10, generator=g, dtype=torch.float64), edge_strokes(size)])
    out = rasterize_strokes(params, size, "ltp")
    expected = alpha_batch(params.numpy(), size)
    assert out.shape == (len(params), size, size) and out.dtype == torch.float64
    err = np.abs(out.numpy() - expected)
    assert err.max() <= 1e-6, f"max error {err.max()} at stroke {np.unravel_index(err.argmax(), err.shape)[0]}"


def test_ltp_float32_input_matches_oracle():
    params = torch.rand(50, 10, generator=torch.Generator().manual_seed(3))
    out = rasterize_strokes(params, 64, "ltp")
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy(), alpha_batch(params.double().numpy(), 64), rtol=0, atol=1e-6)


def test_ltp_reference_matches_oracle():
    params = torch.cat([torch.rand(30, 10, generator=torch.Generator().manual_seed(4)), edge_strokes(4).float()])
    expected = alpha_batch(params.double().numpy(), 32)
    np.testing.assert_allclose(reference.rasterize_strokes(params, 32, "ltp").numpy(), expected, rtol=0, atol=1e-6)


def test_non_contiguous_params():
    base = torch.rand(10, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    params = base[:, ::4]  # [10, 10], stride 4
    assert not params.is_contiguous()
    for mode in ("ltp", "exact"):
        torch.testing.assert_close(rasterize_strokes(params, 24, mode, 2),
                                   rasterize_strokes(params.contiguous(), 24, mode, 2), rtol=0, atol=0)


def test_empty_batch():
    for mode in ("ltp", "exact"):
        out = rasterize_strokes(torch.empty(0, 10), 16, mode)
        assert out.shape == (0, 16, 16) and out.dtype == torch.float32


def test_size_one_and_tiny():
    params = torch.rand(8, 10, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for size in (1, 2, 3):
        np.testing.assert_allclose(rasterize_strokes(params, size, "ltp").numpy(), alpha_batch(params.numpy(), size),
                                   rtol=0, atol=1e-6)


# --- exact mode ------------------------------------------------------------------------------------

def exact_params(n, seed):
    return torch.rand(n, 10, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_exact_matches_brute_force_same_sampling():
    """Same sample points: only the reference's t grid (2048 discs) separates the two."""
    params = torch.cat([exact_params(4, 7), edge_strokes(7)[[0, 1, 12, 13]]])
    out = rasterize_strokes(params, 32, "exact", 2)
    ref = reference.rasterize_strokes(params, 32, "exact", 2, t_samples=2048)
    err = (out - ref).abs()
    # A sample whose t* is missed by the grid changes one pixel by at most 1/s^2; such samples lie on
    # the rim of the union only, so they are rare.
    assert err.max() <= 0.25 + 1e-9
    assert err.mean() <= 2e-4


def test_exact_converges_with_supersampling():
    params = exact_params(2, 8)
    target = reference.rasterize_strokes(params, 16, "exact", 12, t_samples=512)
    errors = [(rasterize_strokes(params, 16, "exact", s) - target).abs().mean().item() for s in (1, 2, 4, 8)]
    assert errors[-1] < 0.25 * errors[0], errors
    assert all(b < a * 1.1 for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 2e-3, errors


def test_exact_resolution_consistency():
    params = exact_params(6, 9)
    small = rasterize_strokes(params, 128, "exact", 4)
    # 512 px with 1 sample = the same sample points as 128 px with 4x4: equal up to rounding.
    big1 = rasterize_strokes(params, 512, "exact", 1).view(6, 128, 4, 128, 4).mean(dim=(2, 4))
    torch.testing.assert_close(big1, small, rtol=0, atol=1e-9)
    # 512 px with 4x4 (16x16 samples per 128-px pixel): differs only by 4x4 sampling error on edges.
    big4 = rasterize_strokes(params, 512, "exact", 4).view(6, 128, 4, 128, 4).mean(dim=(2, 4))
    diff = (big4 - small).abs()
    assert diff.max() <= 0.15, diff.max()  # an edge pixel: 4x4 vs 16x16 coverage estimates
    assert diff.mean() <= 2e-3, diff.mean()


def _band(mask, width):
    k = np.ones((2 * width + 1, 2 * width + 1), np.uint8)
    m = mask.astype(np.uint8)
    # Outside the canvas counts as empty: a stroke whose edge runs along the border has its band there.
    inner = cv2.erode(m, k, borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
    return cv2.dilate(m, k).astype(bool) & ~inner


def test_exact_agrees_with_ltp_off_the_boundary_band():
    """At 128 px, with constant opacity, the two modes differ only within 2 px of the ltp stroke's edge."""
    params = exact_params(40, 10)
    params[:, 9] = params[:, 8]
    ltp = rasterize_strokes(params, 128, "ltp").numpy()
    exact = rasterize_strokes(params, 128, "exact", 4).numpy()
    band_px = 0
    for k in range(len(params)):
        band = _band(ltp[k] > 0, 2)
        off = ~band
        assert np.abs(exact[k] - ltp[k])[off].max() <= 1e-6, k
        band_px += band.sum()
    # the band is thin: a small share of the picture
    assert band_px / (len(params) * 128 * 128) < 0.15


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("bad,err,match", [
    (torch.rand(4, 9), ValueError, "params"),
    (torch.rand(4, 10, 1), ValueError, "params"),
    (torch.rand(10), ValueError, "params"),
    (torch.randint(0, 2, (4, 10)), TypeError, "params"),
    (torch.rand(4, 10).half(), TypeError, "params"),
])
def test_bad_params_shape_dtype(bad, err, match):
    with pytest.raises(err, match=match):
        rasterize_strokes(bad, 16)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), -0.01, 1.01])
def test_bad_params_values_refused(value):
    """NaN/inf and values outside [0, 1] are refused (not clamped), by the wrapper and by the raw op."""
    params = torch.rand(3, 10)
    params[1, 4] = value
    with pytest.raises(ValueError, match="params"):
        rasterize_strokes(params, 16)
    with pytest.raises(RuntimeError, match="params"):
        torch.ops.sgfast.rasterize_strokes(params, 16, "ltp", 1)


@pytest.mark.parametrize("kwargs,match", [
    (dict(size=0), "size"), (dict(size=-3), "size"), (dict(size=2.5), "size"),
    (dict(mode="bezier"), "mode"), (dict(supersample=0), "supersample"),
])
def test_bad_arguments(kwargs, match):
    args = dict(size=16, mode="ltp", supersample=4)
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        rasterize_strokes(torch.rand(2, 10), **args)


def test_raw_op_checks_arguments():
    p = torch.rand(2, 10)
    for args, match in (((p, 0, "ltp", 1), "size"), ((p, 8, "nope", 1), "mode"), ((p, 8, "exact", 0), "supersample"),
                        ((p[:, :9], 8, "ltp", 1), "params"), ((p.long(), 8, "ltp", 1), "params")):
        with pytest.raises(RuntimeError, match=match):
            torch.ops.sgfast.rasterize_strokes(*args)


def test_opcheck():
    params = torch.rand(3, 10, generator=torch.Generator().manual_seed(11))
    for mode in ("ltp", "exact"):
        torch.library.opcheck(torch.ops.sgfast.rasterize_strokes.default, (params, 12, mode, 2),
                              test_utils=("test_schema", "test_faketensor"))


# --- CLI -------------------------------------------------------------------------------------------

def test_cli_json_and_npy(tmp_path):
    from sgfast import cli

    strokes = np.random.default_rng(12).uniform(0, 1, (3, 13))
    js = tmp_path / "s.json"
    js.write_text(json.dumps({"strokes": strokes.tolist()}))
    assert cli.main(["rasterize", str(js), "--out", str(tmp_path / "a"), "--size", "32"]) == 0
    npy = tmp_path / "s.npy"
    np.save(npy, strokes[:, :10])
    assert cli.main(["rasterize", str(npy), "--out", str(tmp_path / "b"), "--size", "32", "--mode", "exact",
                     "--supersample", "2"]) == 0
    a = [cv2.imread(str(tmp_path / "a" / f"stroke_{k:04d}.png"))[..., ::-1] for k in range(3)]
    b = [cv2.imread(str(tmp_path / "b" / f"stroke_{k:04d}.png")) for k in range(3)]
    alpha = rasterize_strokes(torch.as_tensor(strokes[:, :10], dtype=torch.float32), 32, "ltp").numpy()
    for k in range(3):  # colour over white, and the shape-only file drawn dark on white
        want = np.rint(((1 - alpha[k])[..., None] + alpha[k][..., None] * strokes[k, 10:13]) * 255)
        assert np.abs(a[k].astype(float) - want).max() <= 1
        assert b[k].shape == (32, 32, 3) and b[k].min() < 255


@pytest.mark.parametrize("content,name,match", [
    ("[[0.1, 0.2]]", "bad_shape.json", "shape"),
    ("{not json", "broken.json", "invalid JSON"),
    ("[[2, 0, 0, 0, 0, 0, 0, 0, 0, 0]]", "range.json", r"\[0, 1\]"),
    ("{}", "nostrokes.json", "strokes"),
    ("x", "strokes.txt", "extension"),
])
def test_cli_bad_files(tmp_path, capsys, content, name, match):
    from cli_usage import usage_error

    path = tmp_path / name
    path.write_text(content)
    usage_error(capsys, ["rasterize", path, "--out", tmp_path / "o"], match)


def test_cli_missing_file(tmp_path, capsys):
    from cli_usage import usage_error

    usage_error(capsys, ["rasterize", tmp_path / "none.npy", "--out", tmp_path / "o"], "not found")


# --- CUDA ------------------------------------------------------------------------------------------

@needs_cuda
@pytest.mark.parametrize("size", [64, 128, 256])
def test_cuda_ltp_equals_cpu(size):
    params = torch.cat([torch.rand(300, 10, generator=torch.Generator().manual_seed(13)), edge_strokes(13).float()])
    cpu = rasterize_strokes(params, size, "ltp")
    gpu = rasterize_strokes(params.cuda(), size, "ltp").cpu()
    torch.testing.assert_close(gpu, cpu, rtol=0, atol=1e-6)


@needs_cuda
def test_cuda_exact_close_to_cpu():
    params = torch.rand(20, 10, generator=torch.Generator().manual_seed(14), dtype=torch.float64)
    cpu = rasterize_strokes(params, 64, "exact", 4)
    gpu = rasterize_strokes(params.cuda(), 64, "exact", 4).cpu()
    assert (gpu - cpu).abs().max() <= 1 / 16 + 1e-6  # at most one rim sample may flip
    assert (gpu - cpu).abs().mean() <= 1e-5


@needs_cuda
def test_cuda_empty_and_bad_values():
    assert rasterize_strokes(torch.empty(0, 10, device="cuda"), 8).shape == (0, 8, 8)
    bad = torch.rand(2, 10, device="cuda")
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="params"):
        rasterize_strokes(bad, 8)
