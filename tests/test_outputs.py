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

    (r,) = paint([IMAGE], masks=[MASK], steps=2, frames="step")
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
    from sgfast.commands.paint import write_result

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

    import sgfast.commands.paint as paint_cmd

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
