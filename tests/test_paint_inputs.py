"""Bad and unusual input to `sgfast paint` and `sgfast.paint.paint`: 16-bit, grey and
RGBA files paint exactly like the same picture stored as 8-bit RGB; tiny images (1x1, 3x5) are
painted against their upsampled selves; a huge image is read reduced (never held at full size as
float) and painted; unreadable ones are reported while the rest of the batch is painted and nothing
half-written is left. (Corrupt files, missing or wrong weights and an unwritable --out are in
test_paint.py.)"""
import json
import os
import struct
import tracemalloc
import zlib

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")


def _smooth_rgb(h, w, seed=0):
    """A smooth uint8 RGB picture (so resizing it is well conditioned), as stored RGB."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _write(path, rgb_or_other):
    a = rgb_or_other
    if a.ndim == 3 and a.shape[2] in (3, 4):  # cv2 writes BGR(A)
        a = np.concatenate([a[:, :, 2::-1], a[:, :, 3:]], axis=2)
    assert cv2.imwrite(str(path), a)
    return str(path)


def _doc(out, name):
    return json.loads((out / name / "strokes.json").read_text())


def test_image_kinds_paint_like_8bit_rgb(tmp_path):
    rgb = _smooth_rgb(40, 50)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    files = [_write(tmp_path / "rgb.png", rgb),
             _write(tmp_path / "rgb16.png", rgb.astype(np.uint16) * 257),
             _write(tmp_path / "rgba.png", np.dstack([rgb, np.full(grey.shape, 77, np.uint8)])),
             _write(tmp_path / "grey.png", grey),
             _write(tmp_path / "grey3.png", np.repeat(grey[:, :, None], 3, 2)),
             _write(tmp_path / "grey16.png", grey.astype(np.uint16) * 257)]
    out = tmp_path / "out"
    rc = cli.main(["paint", *files, "--method", "agent", "--mode", "baseline", "--out", str(out), "--steps", "2",
                   "--no-video", "--no-progress", "--threads", "1", "--batch-size", "1"])
    assert rc == 0
    from sgfast.data.imageio import read_image_rgb

    for name, same_as in (("rgb16", "rgb"), ("rgba", "rgb"), ("grey", "grey3"), ("grey16", "grey3")):
        np.testing.assert_array_equal(read_image_rgb(str(out / name / "target.png")),
                                      read_image_rgb(str(out / same_as / "target.png")))
        a = np.array([s["params"] for s in _doc(out, name)["strokes"]])
        b = np.array([s["params"] for s in _doc(out, same_as)["strokes"]])
        assert a.shape == (10, 13) and np.abs(a - b).max() < 1e-5, name
    # and the grey picture is not the colour one (the comparison can fail)
    assert not np.array_equal(read_image_rgb(str(out / "grey" / "target.png")),
                              read_image_rgb(str(out / "rgb" / "target.png")))


def test_api_arrays_of_every_kind():
    from sgfast.paint import paint

    rgb = _smooth_rgb(20, 24).astype(np.float32) / 255
    grey = rgb.mean(2)
    items = [rgb, torch.from_numpy(rgb).permute(2, 0, 1), (rgb * 65535).round().astype(np.uint16),
             np.dstack([rgb, np.ones_like(grey)]), grey, grey[None].astype(np.float64),
             np.full((5, 5), np.nan, np.float32), np.zeros((5, 5), np.int64), np.zeros((0, 4, 3), np.uint8)]
    res = paint(items, mode="baseline", method="agent", steps=1, frames="none")
    assert [r.ok for r in res] == [True] * 6 + [False] * 3
    for r in res[1:4]:
        assert float((r.target - res[0].target).abs().max()) < 1e-4
    assert float((res[5].target - res[4].target).abs().max()) < 1e-6
    assert torch.equal(res[4].target[0], res[4].target[1])  # grey replicated
    assert "NaN" in res[6].error and "int64" in res[7].error and "empty" in res[8].error


def test_models_of_the_other_mode_are_refused():
    """Models loaded for one mode, painted with the other (paint's default mode is "sg"): a clear
    error, not a complaint about missing Ψ weights."""
    from sgfast.paint import PaintError, load_models, paint

    rgb = _smooth_rgb(16, 16).astype(np.float32) / 255
    models = load_models("baseline")
    with pytest.raises(PaintError, match="loaded for mode 'baseline' but mode is 'sg'"):
        paint([rgb], models=models, method="agent", steps=1, frames="none")
    assert paint([rgb], models=models, mode="baseline", method="agent", steps=1, frames="none")[0].ok


def test_tiny_images(tmp_path):
    from sgfast.paint import paint

    one = _write(tmp_path / "one.png", np.array([[[30, 120, 200]]], np.uint8))
    small = _smooth_rgb(3, 5, seed=2)
    three = _write(tmp_path / "three.png", small)
    res = paint([one, three], method="agent", steps=2, frames="none", batch_size=2)  # sg mode: Ψ and the expert too
    assert all(r.ok for r in res)
    colour = torch.tensor([30, 120, 200], dtype=torch.float32) / 255
    assert torch.allclose(res[0].target, colour[:, None, None].expand_as(res[0].target), atol=1e-6)
    up = F.interpolate(torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255, size=(64, 64),
                       mode="bilinear", align_corners=False)[0]
    assert torch.allclose(res[1].target, up, atol=1e-5)
    for r in res:
        assert r.canvas.shape == (3, 64, 64) and torch.isfinite(r.canvas).all()
        assert r.masks.shape == (1, 64, 64) and r.strokes.shape == (len(r.steps), 13)
        assert sorted(set(r.steps)) == [0, 1] and r.steps.count(0) == r.steps.count(1) > 0
        # the painting is closer to the target than the black start
        assert float(((r.canvas - r.target) ** 2).mean()) < float((r.target ** 2).mean())


def _huge_jpeg(path, h=6000, w=8000):
    y = np.linspace(0, 255, h, dtype=np.float32)[:, None]
    x = np.linspace(0, 255, w, dtype=np.float32)[None, :]
    img = np.empty((h, w, 3), np.uint8)
    img[..., 0] = y
    img[..., 1] = x
    img[..., 2] = 90
    assert cv2.imwrite(str(path), img)
    return str(path), img


def test_huge_image_is_read_reduced_and_painted(tmp_path):
    from sgfast.data.imageio import read_image_rgb
    from sgfast.paint import paint

    path, full = _huge_jpeg(tmp_path / "huge.jpg")
    del full
    tracemalloc.start()
    try:
        (r,) = paint([path], mode="baseline", method="agent", steps=1, frames="none")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert r.ok and r.target.shape == (3, 64, 64)
    # the 48-Mpx picture as uint8 alone is 144 MB (as float, 576 MB): it never existed in full
    assert peak < 40e6, peak
    # the reduced read is the area average of the full picture
    reduced = read_image_rgb(path, 256)
    full = cv2.imread(path)[:, :, ::-1]
    ref = cv2.resize(full, (256, 256), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    assert reduced.shape == (256, 256, 3) and np.abs(reduced - ref).mean() < 2e-3


def _png_header_only(path, w, h):
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))
    return str(path)


def test_cli_batch_with_bad_images(tmp_path, capsys):
    good = _write(tmp_path / "good.png", _smooth_rgb(30, 30))
    tiny = _write(tmp_path / "tiny.png", np.array([[[200, 10, 10]]], np.uint8))
    too_large = _png_header_only(tmp_path / "toolarge.png", 40000, 30000)  # over OpenCV's pixel limit
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.png"
    text.write_text("not an image")
    out = tmp_path / "out"
    rc = cli.main(["paint", good, too_large, str(empty), tiny, str(text), str(tmp_path / "missing.png"),
                   "--method", "agent", "--mode", "baseline", "--out", str(out), "--steps", "1", "--no-progress",
                   "--threads", "1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "too large" in err and "40000 x 30000" in err
    assert "empty" in err and "text.png" in err and "not found" in err
    assert "2 of 6 images painted" in err
    assert sorted(os.listdir(out)) == ["good", "tiny"]  # nothing else, no temporary folders
    for name in ("good", "tiny"):
        assert (out / name / "painting.png").is_file() and (out / name / "progress.gif").is_file()


def test_cli_output_that_cannot_be_written_spares_the_others(tmp_path, capsys):
    a = _write(tmp_path / "a.png", _smooth_rgb(20, 20, seed=3))
    b = _write(tmp_path / "b.png", _smooth_rgb(20, 20, seed=4))
    out = tmp_path / "out"
    out.mkdir()
    (out / "a").write_text("a file where the folder for a.png would go")
    rc = cli.main(["paint", a, b, "--method", "agent", "--mode", "baseline", "--out", str(out), "--steps", "1",
                   "--no-progress", "--threads", "1"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "could not write" in err and os.path.join(str(out), "a") in err and "1 of 2 images painted" in err
    assert (out / "a").read_text().startswith("a file")       # left as it was
    assert (out / "b" / "painting.png").is_file()
    assert sorted(os.listdir(out)) == ["a", "b"]               # no temporary folders left
