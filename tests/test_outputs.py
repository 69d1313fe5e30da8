"""The files sgfast writes: permissions that follow the umask (atomic writes and the painting folders),
full-disk errors reported as such with nothing left behind."""
import errno
import glob
import os
import stat

import pytest
import torch

from sgfast.io import atomic_write_bytes, save_checkpoint

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIRDS = os.path.join(ROOT, "sgfast", "assets", "samples", "birds")
IMAGE = sorted(glob.glob(os.path.join(BIRDS, "images", "*", "*.jpg")))[0]
MASK = IMAGE.replace(os.sep + "images" + os.sep, os.sep + "segmentations" + os.sep)[:-4] + ".png"


@pytest.fixture
def umask():
    """Set the process umask for one test; restored afterwards."""
    old = os.umask(0o022)

    def set_umask(value):
        os.umask(value)
        return value

    yield set_umask
    os.umask(old)


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(scope="module")
def result():
    from sgfast.ops import HAS_EXT

    if not HAS_EXT:
        pytest.skip("sgfast extension not built")
    from sgfast.paint import paint

    (r,) = paint([IMAGE], masks=[MASK], method="agent", steps=2, frames="step")
    assert r.ok and r.frames
    return r


# --------------------------------------------------------------------------- permissions

@pytest.mark.parametrize("mask", [0o022, 0o027, 0o002])
def test_atomic_writes_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    atomic_write_bytes(tmp_path / "a.bin", b"abc")
    save_checkpoint(tmp_path / "ck.pt", {"w": torch.ones(2)})
    atomic_write_bytes(tmp_path / "new" / "b.bin", b"x")  # a folder it creates on the way
    assert _mode(tmp_path / "a.bin") == 0o666 & ~mask
    assert _mode(tmp_path / "ck.pt") == 0o666 & ~mask
    assert _mode(tmp_path / "new") == 0o777 & ~mask
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "ck.pt", "new"]  # no temp files left


def test_atomic_write_replacing_a_private_file_follows_the_umask(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "a.bin"
    path.write_bytes(b"old")
    os.chmod(path, 0o600)
    atomic_write_bytes(path, b"new")
    assert path.read_bytes() == b"new" and _mode(path) == 0o644


@pytest.mark.parametrize("mask", [0o022, 0o027])
def test_painting_folder_and_files_follow_the_umask(tmp_path, umask, result, mask):
    from sgfast.paint.export import write_result

    umask(mask)
    folder = tmp_path / "out" / "bird"
    files = write_result(result, str(folder), frame_size=32)
    assert "painting.png" in files and "progress.gif" in files
    assert _mode(folder) == 0o777 & ~mask
    for name in files:
        assert _mode(folder / name) == 0o666 & ~mask, name
    write_result(result, str(folder), frame_size=32)  # replacing a previous painting: the same
    assert _mode(folder) == 0o777 & ~mask
    assert os.listdir(tmp_path / "out") == ["bird"]


# --------------------------------------------------------------------------- full disk

def _enospc(*_args, **_kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_atomic_write_full_disk_is_reported_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"old")
    monkeypatch.setattr(os, "fsync", _enospc)
    with pytest.raises(OSError) as exc:
        atomic_write_bytes(path, b"new")
    assert exc.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.bin"]


def test_painting_full_disk_is_reported_and_leaves_nothing(tmp_path, monkeypatch, result):
    import builtins

    import sgfast.paint.export as paint_cmd

    folder = tmp_path / "bird"
    paint_cmd.write_result(result, str(folder), frame_size=32)
    before = {n: (folder / n).read_bytes() for n in os.listdir(folder)}
    real_open = builtins.open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            _enospc()

    def full_open(path, mode="r", *args, **kwargs):
        f = real_open(path, mode, *args, **kwargs)
        return Full(f) if "w" in mode and str(path).endswith("strokes.json") else f

    monkeypatch.setattr(paint_cmd, "open", full_open, raising=False)
    with pytest.raises(OSError) as exc:
        paint_cmd.write_result(result, str(folder), frame_size=32)
    assert exc.value.errno == errno.ENOSPC
    assert os.listdir(tmp_path) == ["bird"]  # no temp folder left
    assert {n: (folder / n).read_bytes() for n in os.listdir(folder)} == before  # the old painting kept


# --------------------------------------------------------------------------- GIF and MP4

def _frames(n=12, h=40, w=56, seed=0):
    """A painting-like animation: a shaded background, then one blended rectangle more per frame."""
    import numpy as np

    rng = np.random.default_rng(seed)
    canvas = np.array([0.1, 0.3, 0.6]) * (0.5 + 0.5 * np.linspace(0, 1, h)[:, None, None]) * np.ones((h, w, 3))
    frames = []
    for _ in range(n):
        y0, x0 = rng.integers(0, h - 8), rng.integers(0, w - 8)
        y1, x1 = y0 + rng.integers(4, h // 2), x0 + rng.integers(4, w // 2)
        a = rng.uniform(0.4, 1.0)
        canvas[y0:y1, x0:x1] = (1 - a) * canvas[y0:y1, x0:x1] + a * rng.random(3)
        frames.append((canvas * 255).round().astype(np.uint8))
    return frames


def test_gif_reads_back_with_close_colours():
    import io

    import numpy as np
    from PIL import Image

    from sgfast.paint.export import gif_bytes

    frames = _frames()
    im = Image.open(io.BytesIO(gif_bytes(frames, delay_ms=100, last_delay_ms=1500)))
    assert im.format == "GIF" and im.n_frames == len(frames) and im.size == (56, 40)
    assert im.info.get("loop") == 0
    for i, f in enumerate(frames):
        im.seek(i)
        got = np.asarray(im.convert("RGB")).astype(int)
        err = np.abs(got - f)
        # an adaptive palette (the frames hold ~200 colours), not a fixed colour cube (error ~14)
        assert err.mean() < 2.0 and err.max() <= 12, (i, err.mean(), err.max())
        assert im.info["duration"] == (1500 if i == len(frames) - 1 else 100)


def test_gif_of_many_colours_has_no_dither_noise():
    """A smooth ramp stays a staircase of flat bands (no dithering), close to the ramp."""
    import io

    import numpy as np
    from PIL import Image

    from sgfast.paint.export import gif_bytes

    ramp = np.zeros((16, 512, 3), np.uint8)
    ramp[..., 0] = np.arange(512) // 2
    ramp[..., 1] = 255 - np.arange(512) // 2
    im = Image.open(io.BytesIO(gif_bytes([ramp, ramp[:, ::-1].copy()])))
    got = np.asarray(im.convert("RGB")).astype(int)
    assert (got == got[:1]).all()  # every row the same: no dither pattern
    assert np.abs(got - ramp).max() <= 8


def test_mp4_is_h264_and_decodes(tmp_path):
    import imageio.v3 as iio
    import numpy as np

    from sgfast.paint.export import write_mp4

    frames = [f.repeat(2, 0).repeat(2, 1) for f in _frames()]  # 2x nearest, as `paint` upscales
    path = tmp_path / "progress.mp4"
    write_mp4(str(path), frames, fps=10)
    meta = iio.immeta(path, plugin="FFMPEG")
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p(tv, bt709")
    assert meta["fps"] == 10 and meta["size"] == (112, 80)
    back = iio.imread(path, plugin="FFMPEG")
    assert back.shape == (len(frames), 80, 112, 3)
    diff = back.astype(int) - np.stack(frames)
    assert np.abs(diff).mean() < 3 and np.abs(diff.mean((0, 1, 2))).max() < 2  # lossy, same colours
    assert os.listdir(tmp_path) == ["progress.mp4"]


def test_mp4_pads_odd_sides_to_even(tmp_path):
    import imageio.v3 as iio

    from sgfast.paint.export import write_mp4

    frames = [f[:39, :55] for f in _frames(n=3)]
    write_mp4(str(tmp_path / "odd.mp4"), frames)
    assert iio.imread(tmp_path / "odd.mp4", plugin="FFMPEG").shape == (3, 40, 56, 3)


def _failing_ffmpeg(tmp_path, monkeypatch, kind):
    """Point imageio-ffmpeg at a wrapper: 'fsize' runs the real ffmpeg with a 1 KiB file-size limit
    (the output cannot be written, as on a full disk); 'fail' eats the frames and exits 1."""
    import imageio_ffmpeg

    real = imageio_ffmpeg.get_ffmpeg_exe()
    exe = tmp_path / "ffmpeg"
    if kind == "fsize":
        exe.write_text(f'#!/bin/sh\nulimit -f 1\nexec "{real}" "$@"\n')
    else:
        exe.write_text("#!/bin/sh\ncat > /dev/null\necho 'No space left on device' >&2\nexit 1\n")
    exe.chmod(0o755)
    monkeypatch.setenv("IMAGEIO_FFMPEG_EXE", str(exe))


@pytest.mark.parametrize("kind", ["fsize", "fail"])
def test_mp4_failed_write_raises_and_leaves_nothing(tmp_path, monkeypatch, kind):
    import numpy as np

    from sgfast.paint.export import write_mp4

    out = tmp_path / "out"
    out.mkdir()
    _failing_ffmpeg(tmp_path, monkeypatch, kind)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(10)]  # > 1 KiB of H.264
    with pytest.raises((RuntimeError, OSError)):
        write_mp4(str(out / "progress.mp4"), frames)
    assert os.listdir(out) == []


def test_painting_with_a_failing_encoder_is_not_written(tmp_path, monkeypatch, result, capsys):
    from sgfast.paint.export import write_result

    _failing_ffmpeg(tmp_path, monkeypatch, "fail")
    out = tmp_path / "out"
    with pytest.raises((RuntimeError, OSError)):
        write_result(result, str(out / "bird"), frame_size=32)
    assert not out.exists() or os.listdir(out) == []


def test_painting_writes_a_playable_mp4_and_gif(tmp_path, result):
    import io

    import imageio.v3 as iio
    from PIL import Image

    from sgfast.paint.export import write_result

    folder = tmp_path / "bird"
    files = write_result(result, str(folder), frame_size=64)
    assert "progress.mp4" in files and "progress.gif" in files
    meta = iio.immeta(folder / "progress.mp4", plugin="FFMPEG")
    assert meta["codec"] == "h264" and meta["size"] == (64, 64)
    assert iio.imread(folder / "progress.mp4", plugin="FFMPEG").shape == (len(result.frames), 64, 64, 3)
    gif = Image.open(io.BytesIO((folder / "progress.gif").read_bytes()))
    assert gif.size == (64, 64) and 1 <= gif.n_frames <= len(result.frames)
