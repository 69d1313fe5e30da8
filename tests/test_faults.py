"""Fault injection on the file layer (docs/reliability.md): corrupted and hostile weights, an edited
meta that would build a huge network, a full disk during a checkpoint, the temporaries a killed
writer leaves, byte-identical checkpoints."""
import errno
import os
import subprocess
import sys
import time

import pytest
import torch

from sgfast.io import (WeightsFileError, load_checkpoint, load_weights, remove_stale_temps, save_checkpoint,
                       save_weights_fp16)
from sgfast.resources import shipped_weights


def _dead_pid():
    """The pid of a process that has exited."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_checkpoints_are_byte_identical_for_the_same_state(tmp_path):
    state = {"x": torch.arange(10.0), "step": 3, "nested": {"y": torch.ones(2, 2)}}
    save_checkpoint(tmp_path / "a.pt", state)
    save_checkpoint(tmp_path / "b.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert torch.equal(load_checkpoint(tmp_path / "a.pt")["x"], state["x"])


def test_flipped_byte_in_tensor_data_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "w.pt"
    save_weights_fp16(path, {"w": torch.randn(4096)}, {"kind": "test"})
    data = bytearray(path.read_bytes())
    start = data.find(b"data/0") + 64  # inside the stored tensor's bytes
    data[start + 100] ^= 0x5A
    bad = tmp_path / "bad.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(WeightsFileError, match="bad.pt.*corrupt"):
        load_weights(bad)


def test_non_finite_weights_are_refused(tmp_path):
    path = tmp_path / "nan.pt"
    save_weights_fp16(path, {"layer.weight": torch.tensor([1.0, float("nan")])}, {"kind": "test"})
    with pytest.raises(WeightsFileError, match="nan.pt.*non-finite.*layer.weight"):
        load_weights(path)


def test_hostile_pickle_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "meta": Evil()}, path)
    with pytest.raises(WeightsFileError):
        load_weights(path)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("name,key,value", [
    ("agent_sg_tiny.pt", "width", 5000),
    ("renderer_tiny.pt", "config", None),
])
def test_edited_meta_is_refused_before_building(tmp_path, name, key, value):
    from sgfast.agent.export import load_actor
    from sgfast.models.renderer import load_renderer

    sd, meta = load_weights(shipped_weights(name))
    if key == "config":
        meta["config"] = {**meta["config"], "hidden": [100000, 100000, 100000]}
    else:
        meta[key] = value
    path = tmp_path / name
    save_weights_fp16(path, sd, meta)
    load = load_actor if name.startswith("agent") else load_renderer
    start = time.perf_counter()
    with pytest.raises(WeightsFileError, match="do not match its meta"):
        load(path)
    # Building the edited network would allocate GBs and take many seconds; the check takes none.
    assert time.perf_counter() - start < 5


def test_full_disk_during_a_checkpoint_says_so_and_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"v": torch.zeros(3)})
    before = path.read_bytes()
    real_open = open

    class FullFile:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def full_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        return FullFile(f) if "w" in mode and ".tmp" in os.fspath(file) else f

    monkeypatch.setattr("builtins.open", full_open)
    with pytest.raises(OSError) as exc:
        save_checkpoint(path, {"v": torch.ones(1000)})
    monkeypatch.undo()
    assert exc.value.errno == errno.ENOSPC
    assert "no space left on device" in str(exc.value) and "checkpoint.pt" in str(exc.value)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.pt"]  # no temporary left


def test_stale_temporaries_of_a_dead_writer_are_removed(tmp_path):
    dead, alive = _dead_pid(), os.getpid()
    stale_file = tmp_path / f".checkpoint.pt.{dead}-0badc0de.tmp"
    stale_dir = tmp_path / f".bird.{dead}-0badc0de.tmp"
    live_file = tmp_path / f".checkpoint.pt.{alive}-12345678.tmp"
    other = tmp_path / f".other.pt.{dead}-0badc0de.tmp"
    stale_file.write_bytes(b"x")
    stale_dir.mkdir()
    (stale_dir / "painting.png").write_bytes(b"x")
    live_file.write_bytes(b"x")
    other.write_bytes(b"x")
    save_checkpoint(tmp_path / "checkpoint.pt", {"a": 1})  # writing a target cleans its own stale temps
    assert not stale_file.exists() and live_file.exists() and other.exists()
    remove_stale_temps(str(tmp_path), ".bird.")
    assert not stale_dir.exists()


def test_killed_paint_leaves_no_partial_folder_after_the_next_run(tmp_path):
    from sgfast.paint import paint
    from sgfast.paint.export import write_result
    from sgfast.resources import bundled_asset

    image = sorted(os.path.join(d, f) for d, _, fs in os.walk(bundled_asset("samples", "birds", "images"))
                   for f in fs)[0]
    result = paint([image], mode="baseline", method="agent", frames="none")[0]
    partial = tmp_path / f".bird.{_dead_pid()}-0badc0de.tmp"
    partial.mkdir()
    (partial / "painting.png").write_bytes(b"half")
    write_result(result, str(tmp_path / "bird"), video=False)
    assert sorted(os.listdir(tmp_path)) == ["bird"]


def test_rerender_over_the_memory_budget_is_refused_up_front():
    from sgfast.memory import OverBudget
    from sgfast.paint.rerender import render_exact

    strokes = torch.rand(4, 13).numpy()
    start = time.perf_counter()
    with pytest.raises(OverBudget, match="16384 px needs .* GiB.*--size"):
        render_exact(strokes, ["all"] * 4, [None] * 4, [], 16384, budget=1 << 30)
    assert time.perf_counter() - start < 1  # nothing was allocated or rendered


def test_rerender_in_budget_sized_chunks_is_the_same_image():
    from sgfast.paint.rerender import render_exact

    gen = torch.Generator().manual_seed(0)
    strokes = torch.rand(12, 13, generator=gen).numpy()
    mask = torch.rand(32, 32, generator=gen).numpy()
    layers = ["bg", "fg"] * 6
    whole = render_exact(strokes, layers, [0] * 12, [mask], 48, supersample=2)
    plane = 4 * 48 * 48
    tight = render_exact(strokes, layers, [0] * 12, [mask], 48, supersample=2,
                         budget=2 * 3 * plane + plane + 3 * 48 * 48 + plane)  # one stroke per chunk
    assert torch.equal(whole, tight)


def test_memory_budget_from_the_environment(monkeypatch):
    from sgfast.memory import memory_budget

    monkeypatch.setenv("SGFAST_MEMORY_BUDGET", "512M")
    assert memory_budget() == 512 << 20
    monkeypatch.setenv("SGFAST_MEMORY_BUDGET", "lots")
    with pytest.raises(ValueError, match="SGFAST_MEMORY_BUDGET"):
        memory_budget()


@pytest.mark.parametrize("command", ["paint", "render"])
def test_cli_refuses_a_size_over_the_budget_before_painting(tmp_path, monkeypatch, capsys, command):
    from sgfast import cli
    from sgfast.resources import bundled_asset

    monkeypatch.setenv("SGFAST_MEMORY_BUDGET", "1G")
    if command == "paint":
        image = sorted(os.path.join(d, f) for d, _, fs in os.walk(bundled_asset("samples", "birds", "images"))
                       for f in fs)[0]
        argv = ["paint", "--method", "agent", image, "--size", "16384", "--out", str(tmp_path / "out")]
    else:
        doc = tmp_path / "strokes.json"
        doc.write_text('{"format": "sgfast-strokes", "version": 1, "size": 64, "strokes": []}')
        argv = ["render", str(doc), "--size", "16384", "--out", str(tmp_path / "x.png")]
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert "16384 px needs" in err[0] and "--size" in err[0]
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("command", ["train-agent", "train-renderer", "train-segmenter", "train-expert"])
def test_trainers_refuse_an_unwritable_out_before_training(tmp_path, capsys, command):
    from sgfast import cli

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--config", "smoke", "--out", str(blocker / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--out" in err[0], err


def _prepared_file(path, boxes):
    import numpy as np

    from sgfast.data.prepared import FORMAT_VERSION, header_bytes, to_records

    n, s = len(boxes), 8
    rec = to_records(s, torch.rand(n, 3, s, s), torch.rand(n, 1, s, s), torch.rand(n, 1, s, s),
                     torch.tensor(boxes, dtype=torch.float32), [0] * n, [0] * n, list(range(n)), [True] * n)
    header = {"version": FORMAT_VERSION, "size": s, "count": n, "class_names": ["a"], "num_classes": 1}
    path.write_bytes(header_bytes(header) + np.ascontiguousarray(rec).tobytes())


def test_prepared_file_with_a_huge_header_length_is_refused_without_allocating(tmp_path):
    from sgfast.data.prepared import MAGIC, read_header

    path = tmp_path / "bad.sgprep"
    path.write_bytes(MAGIC + (1 << 62).to_bytes(8, "little") + b"{}")
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_header(path)


def test_prepared_file_with_nan_boxes_is_refused(tmp_path):
    from sgfast.data.prepared import PreparedDataset

    good, bad = tmp_path / "good.sgprep", tmp_path / "bad.sgprep"
    _prepared_file(good, [[0.1, 0.1, 0.5, 0.5]] * 3)
    assert len(PreparedDataset(good)) == 3
    _prepared_file(bad, [[0.1, 0.1, 0.5, 0.5], [float("nan"), 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5]])
    with pytest.raises(ValueError, match="record 1 has a NaN or infinite box"):
        PreparedDataset(bad)


def test_train_agent_on_a_corrupt_prepared_file_is_one_line(tmp_path, capsys):
    from sgfast import cli

    bad = tmp_path / "bad.sgprep"
    _prepared_file(bad, [[0.1, 0.1, 0.5, 0.5], [float("inf"), 0.1, 0.5, 0.5]])
    with pytest.raises(SystemExit) as exc:
        cli.main(["train-agent", "--config", "smoke", "--data", str(bad), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "NaN or infinite box" in err[0], err


@pytest.mark.parametrize("value", ["0", "-5", "100000"])
def test_paint_frame_size_out_of_range_is_refused_before_painting(tmp_path, capsys, value):
    from sgfast import cli

    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", "missing.jpg", "--frame-size", value, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--frame-size" in err[0], err
    assert not (tmp_path / "out").exists()


def test_train_agent_bad_resume_file_is_one_line(tmp_path, capsys):
    from sgfast import cli

    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SystemExit) as exc:
        cli.main(["train-agent", "--config", "smoke", "--resume", str(junk), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and "--resume" in err[0], err


@pytest.mark.skipif(not __import__("sgfast").HAS_EXT, reason="extension not built")
def test_nan_boxes_are_refused_by_the_cpu_kernels_themselves():
    """The C++ ops check the boxes too, so compiled code (which skips the Python wrapper's check)
    is refused as eager code is, instead of getting an all-zero or NaN crop."""
    import sgfast.ops as ops

    x = torch.rand(2, 3, 16, 16)
    boxes = torch.tensor([[0.1, 0.1, 0.5, 0.5], [float("nan"), 0.1, 0.5, 0.5]])
    with pytest.raises(ValueError, match="boxes.*NaN or inf"):
        torch.ops.sgfast.aligned_crop(x, boxes, 8, 8, None)
    with pytest.raises(ValueError, match="boxes.*NaN or inf"):
        torch.ops.sgfast.focus_distance(x, x * 0.5, x[:, :1].contiguous(), boxes, 8, 8)
    compiled = torch.compile(lambda a, b: ops.aligned_crop(a, b, 8), fullgraph=True)
    with pytest.raises(ValueError, match="boxes.*NaN or inf"):
        compiled(x, boxes)
    finite = boxes.nan_to_num(0.2)
    assert torch.equal(compiled(x, finite), ops.aligned_crop(x, finite, 8))


@pytest.mark.skipif(not __import__("sgfast").HAS_EXT, reason="extension not built")
def test_op_outputs_over_the_budget_are_refused_up_front(monkeypatch):
    import sgfast.ops as ops
    from sgfast.memory import OverBudget

    monkeypatch.setenv("SGFAST_MEMORY_BUDGET", "64M")
    start = time.perf_counter()
    with pytest.raises(OverBudget, match="rasterize_strokes of 64 strokes at 1024 px needs"):
        ops.rasterize_strokes(torch.rand(64, 10), 1024, "exact", 1)  # 256 MiB of float32
    canvas = torch.rand(1, 3, 512, 512)
    with pytest.raises(OverBudget, match="composite_frames of 100 strokes"):
        ops.composite_frames(canvas, torch.rand(1, 100, 512, 512) * 0, torch.rand(1, 100, 3))
    assert time.perf_counter() - start < 5
    assert ops.rasterize_strokes(torch.rand(4, 10), 64, "exact", 1).shape == (4, 64, 64)  # within it
