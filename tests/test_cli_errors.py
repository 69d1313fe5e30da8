"""The non-training commands (demo, rasterize, make-dataset, prepare, paint, render, evaluate) report a
user's mistake as the training commands do (sgfast/cli_errors.py): exactly one stderr line
"sgfast <command>: error: <message>", exit status 2, no traceback, before any work. --threads 0,
--device cuda on a machine without CUDA, --ops fused without the compiled extension and options the
chosen mode would ignore are refused that way. In-process through sgfast.cli.main (fast: none of
these loads a model), and through `python -m sgfast` for the absence of a traceback."""
import glob
import os
import subprocess
import sys

import pytest
import torch

from sgfast import cli
from sgfast.resources import bundled_asset, shipped_weights

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIRDS = bundled_asset("samples", "birds")
IMAGE = sorted(glob.glob(os.path.join(BIRDS, "images", "*", "*.jpg")))[0]
MASK = IMAGE.replace(os.sep + "images" + os.sep, os.sep + "segmentations" + os.sep)[:-4] + ".png"
EXPERT = shipped_weights("expert_tiny.pt")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")


def one_line_error(capsys, argv, match=None) -> str:
    """Run `sgfast argv` in-process: exit status 2 and exactly one stderr line
    "sgfast <command>: error: ..." (searched for the regex `match`); returns that line."""
    import re

    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"sgfast {argv[0]}: error: "), err
    assert not re.match(r"sgfast( [\w-]+)?: ", lines[0][len(f"sgfast {argv[0]}: error: "):]), err  # one prefix
    if match is not None:
        assert re.search(match, lines[0]), lines[0]
    return lines[0]


@pytest.fixture
def strokes_json(tmp_path):
    """A valid strokes file for rasterize (a list of 13-number strokes)."""
    path = tmp_path / "strokes.json"
    path.write_text("[[0.1, 0.2, 0.5, 0.5, 0.9, 0.8, 1, 1, 0.1, 0.1, 0.2, 0.3, 0.4]]")
    return path


def _argv(command, tmp_path, strokes_json):
    """The smallest command line of each command that reaches its checks."""
    out = tmp_path / "out"
    return {
        "demo": ["demo", "--out", out],
        "rasterize": ["rasterize", strokes_json, "--out", out],
        "make-dataset": ["make-dataset", "birds", "--out", out, "--num", "2", "--no-progress"],
        "prepare": ["prepare", BIRDS, "--expert", EXPERT, "--ground-truth", "--out", tmp_path / "p.sgprep",
                    "--no-progress"],
        "paint": ["paint", IMAGE, "--out", out, "--no-progress"],
        "render": ["render", strokes_json, "--out", tmp_path / "r.png"],
        "evaluate": ["evaluate", BIRDS, "--out", out, "--no-progress"],
    }[command]


# -- a bad option value and a missing input, for each command -------------------------------------

@pytest.mark.parametrize("command,extra,match", [
    ("demo", ["--threads", "-2"], r"--threads must be >= 1, got -2"),
    ("rasterize", ["--size", "0"], r"--size must be in \[1, \d+\], got 0"),
    ("make-dataset", [], None),  # --num 0, below
    ("prepare", ["--size", "4"], r"--size must be >= 8, got 4"),
    ("paint", ["--size", "4"], r"--size must be in \[8, \d+\], got 4"),
    ("render", ["--size", "0"], r"--size must be in \[1, 16384\], got 0"),
    ("evaluate", ["--num", "0"], r"--num must be >= 1, got 0"),
])
def test_a_bad_option_value(command, extra, match, tmp_path, capsys, strokes_json):
    argv = _argv(command, tmp_path, strokes_json) + extra
    if command == "make-dataset":
        argv[argv.index("--num") + 1], match = "0", r"--num must be >= 1, got 0"
    one_line_error(capsys, argv, match)
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.png").exists()


@pytest.mark.parametrize("command,argv,match", [
    ("demo", ["demo", "--samples", "{tmp}/nope"], r"--samples: folder not found: .*nope"),
    ("rasterize", ["rasterize", "{tmp}/none.npy"], r"stroke file not found: .*none\.npy"),
    ("make-dataset", ["make-dataset", "scenes", "--out", "{tmp}/file/sub", "--num", "2", "--no-progress"],
     r"cannot write to --out .*file/sub"),
    ("prepare", ["prepare", "{tmp}/nodata", "--expert", EXPERT, "--ground-truth"], r"dataset folder not found"),
    ("prepare", ["prepare", BIRDS, "--expert", "{tmp}/none.pt", "--ground-truth"],
     r"--expert: weights file not found"),
    ("paint", ["paint", "{tmp}/missing.png"], r"image not found: .*missing\.png"),
    ("paint", ["paint", "{tmp}/a.png", "{tmp}/b.png"], r"none of the 2 images exist"),
    ("render", ["render", "{tmp}/none.json"], r"stroke file not found: .*none\.json"),
    ("evaluate", ["evaluate", "{tmp}/nodata"], r"DATASET: folder not found"),
])
def test_a_missing_input(command, argv, match, tmp_path, capsys):
    (tmp_path / "file").write_text("a file, not a folder")
    argv = [str(a).replace("{tmp}", str(tmp_path)) for a in argv]
    if command in ("demo", "rasterize", "paint", "evaluate"):
        argv += ["--out", str(tmp_path / "out")]
    elif command == "prepare":
        argv += ["--out", str(tmp_path / "p.sgprep")]
    elif command == "render":
        argv += ["--out", str(tmp_path / "r.png")]
    one_line_error(capsys, argv, match)
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.png").exists()
    assert not (tmp_path / "p.sgprep").exists()


# -- --threads, --device, --ops --------------------------------------------------------------------

@pytest.mark.parametrize("command", ["demo", "prepare", "paint", "evaluate"])
@pytest.mark.parametrize("value", ["0", "-1"])
def test_threads_below_1_is_refused(command, value, tmp_path, capsys, strokes_json):
    line = one_line_error(capsys, _argv(command, tmp_path, strokes_json) + ["--threads", value])
    assert line == f"sgfast {command}: error: --threads must be >= 1, got {value}"


@no_cuda
@pytest.mark.parametrize("command", ["rasterize", "prepare", "paint", "render", "evaluate"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_device_cuda_without_cuda(command, device, tmp_path, capsys, strokes_json):
    line = one_line_error(capsys, _argv(command, tmp_path, strokes_json) + ["--device", device],
                          f"--device {device}: CUDA is not available here")
    assert "--device cpu" in line
    assert not (tmp_path / "out").exists() and not (tmp_path / "r.png").exists()  # before any work


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="MPS is available here")
@pytest.mark.parametrize("command", ["paint", "render"])
def test_device_mps_without_mps(command, tmp_path, capsys, strokes_json):
    one_line_error(capsys, _argv(command, tmp_path, strokes_json) + ["--device", "mps"],
                   "--device mps: MPS is not available here")


@pytest.mark.parametrize("device", ["bogus", "meta"])
def test_a_device_that_is_not_one(device, tmp_path, capsys, strokes_json):
    one_line_error(capsys, _argv("paint", tmp_path, strokes_json) + ["--device", device], f"--device '?{device}")


def test_pick_device_is_a_usage_error():
    """The training commands resolve --device through the same function (sgfast/device.py)."""
    from sgfast.cli_errors import UsageError
    from sgfast.device import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(UsageError, match=r"^--device 'bogus'"):
        pick_device("bogus")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match=r"^--device cuda: CUDA is not available"):
            pick_device("cuda", local_rank=0)


@pytest.mark.parametrize("command,option", [("paint", "--ops fused"), ("render", "--ops fused"),
                                            ("evaluate", "--ops fused"), ("rasterize", None), ("demo", None)])
def test_fused_ops_without_the_extension_say_how_to_build_it(command, option, tmp_path, capsys, strokes_json,
                                                             monkeypatch):
    import sgfast.ops._ext as ext

    monkeypatch.setattr(ext, "HAS_EXT", False)
    monkeypatch.setattr(ext, "EXT_ERROR", ImportError("no module named sgfast._C"))
    line = one_line_error(capsys, _argv(command, tmp_path, strokes_json), "pip install --no-build-isolation")
    if option:
        assert f"error: {option}: " in line and "--ops eager" in line
    assert not (tmp_path / "out").exists()


# -- options a mode ignores -------------------------------------------------------------------------

@pytest.mark.parametrize("extra,match", [
    (["--method", "agent", "--mode", "baseline", "--mask", MASK], r"--mask is ignored with --mode baseline"),
    (["--method", "agent", "--mode", "baseline", "--box", "b.txt"], r"--box is ignored with --mode baseline"),
    (["--method", "agent", "--mode", "baseline", "--instances", "a.png,b.png"],
     r"--instances is ignored with --mode baseline"),
    (["--method", "agent", "--mode", "baseline", "--bg-gate", "union"], r"--bg-gate is ignored with --mode baseline"),
    (["--method", "agent", "--mode", "baseline", "--min-gain", "off"], r"--min-gain is ignored with --mode baseline"),
    (["--method", "agent", "--mode", "baseline", "--segmenter", "s.pt"],
     r"--segmenter is ignored with --mode baseline"),
    (["--method", "optimize", "--divide", "2"], r"--divide is ignored with --method optimize"),
    (["--method", "optimize", "--bg-gate", "chosen"], r"--bg-gate is ignored with --method optimize"),
    (["--method", "optimize", "--min-gain", "0.1"], r"--min-gain is ignored with --method optimize"),
    (["--method", "optimize", "--steps", "3"], r"--steps is ignored with --method optimize"),
    (["--method", "optimize", "--actor", "a.pt"], r"--actor is ignored with --method optimize"),
    (["--method", "optimize", "--mode", "baseline"], r"--mode is ignored with --method optimize"),
    (["--method", "optimize", "--mask", MASK], r"--mask is ignored with --method optimize unless --nu > 0"),
    (["--method", "agent", "--strokes", "10"], r"--strokes is ignored with --method agent"),
    (["--method", "agent", "--iters", "10"], r"--iters is ignored with --method agent"),
    (["--method", "agent", "--lr", "0.5"], r"--lr is ignored with --method agent"),
    (["--method", "agent", "--nu", "1"], r"--nu is ignored with --method agent"),
    (["--method", "agent", "--bg-gate", "union"], r"--bg-gate is ignored without --instances"),
    (["--method", "agent", "--min-gain", "0.2"], r"--min-gain is ignored without --instances"),
    (["--method", "agent", "--supersample", "2"], r"--supersample is ignored without --size"),
    # exact is the default method: the agent's options are refused without --method agent
    (["--steps", "3"], r"--steps is ignored with --method exact; leave it out$"),
    (["--instances", "a.png,b.png"], r"--instances is ignored with --method exact"),
    (["--supersample", "2"], r"--supersample is ignored with --method exact"),
    (["--mode", "baseline", "--mask", MASK], r"--mask is ignored with --mode baseline"),
    (["--actor", "a.pt"], r"--actor is ignored with --method exact unless --init agent"),
    (["--method", "agent", "--preset", "fast"], r"--preset is ignored without --method exact"),
    (["--no-video", "--frames", "stroke"], r"--frames is ignored with --no-video"),
    (["--no-video", "--frame-size", "64"], r"--frame-size is ignored with --no-video"),
])
def test_paint_refuses_an_option_its_mode_ignores(extra, match, tmp_path, capsys, strokes_json):
    one_line_error(capsys, _argv("paint", tmp_path, strokes_json) + extra, match)
    assert not (tmp_path / "out").exists()


def test_other_commands_refuse_an_option_they_would_ignore(tmp_path, capsys, strokes_json):
    one_line_error(capsys, _argv("rasterize", tmp_path, strokes_json) + ["--supersample", "2"],
                   r"--supersample is ignored with --mode ltp")
    one_line_error(capsys, _argv("evaluate", tmp_path, strokes_json) + ["--optimize-iters", "5"],
                   r"--optimize-iters is ignored without --optimize")
    one_line_error(capsys, _argv("prepare", tmp_path, strokes_json) + ["--segmenter", "s.pt"],
                   r"--segmenter is ignored with --ground-truth")


def test_paint_options_left_at_their_default_are_not_refused(tmp_path, capsys, monkeypatch, strokes_json):
    """--mode baseline alone (no sg option given) reaches painting, with the defaults filled in."""
    import sgfast.paint

    seen = {}

    def fake_paint(images, **kw):
        seen.update(kw)
        raise sgfast.paint.PaintError("stop here")

    monkeypatch.setattr(sgfast.paint, "paint", fake_paint)
    one_line_error(capsys, _argv("paint", tmp_path, strokes_json) + ["--method", "agent", "--mode", "baseline"],
                   "stop here$")
    assert seen["mode"] == "baseline" and seen["method"] == "agent" and seen["divide"] == 1
    assert seen["bg_gate"] == "chosen" and seen["strokes"] == 100 and seen["nu"] == 0.0
    from sgfast.paint.instances import DEFAULT_MIN_GAIN
    assert seen["min_gain"] == DEFAULT_MIN_GAIN
    one_line_error(capsys, ["paint", IMAGE, "--method", "agent", "--instances", MASK, "--min-gain", "off",
                            "--out", tmp_path / "o"], "stop here$")
    assert seen["min_gain"] is None and seen["mode"] == "sg"
    # and without --method: exact, the default, with its own defaults
    seen.clear()
    one_line_error(capsys, _argv("paint", tmp_path, strokes_json), "stop here$")
    assert seen["method"] == "exact" and seen["mode"] == "sg" and seen["strokes"] == 1000


# -- per-image problems in paint --------------------------------------------------------------------

def test_paint_nothing_painted_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    out = tmp_path / "out"
    line = one_line_error(capsys, ["paint", bad, "--method", "agent", "--mode", "baseline", "--steps", "1",
                                   "--out", out, "--no-progress", "--threads", "1"], r"cannot paint bad: ")
    assert "\n" not in line
    # Several images, none paintable: each is a warning, then one error line.
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", str(bad), str(tmp_path / "missing.png"), "--method", "agent", "--mode", "baseline",
                  "--steps", "1", "--out", str(out), "--no-progress", "--threads", "1"])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and len(err) == 3, err
    assert err[0].startswith("sgfast paint: skipped bad:") and err[1].startswith("sgfast paint: skipped missing:")
    assert err[2] == "sgfast paint: error: none of the 2 images could be painted (reasons above)"
    assert os.listdir(out) == []


# -- main catches what a command forgets ------------------------------------------------------------

def test_main_turns_a_message_exit_into_the_error_line(monkeypatch, capsys):
    import sgfast.commands.render as render

    def run(args):
        raise SystemExit("sgfast: something the user got wrong")

    monkeypatch.setattr(render, "run", run)
    line = one_line_error(capsys, ["render", "x.json", "--out", "x.png"])
    assert line == "sgfast render: error: something the user got wrong"


def test_argparse_errors_keep_status_2(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["paint", IMAGE, "--mode", "nope"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.splitlines()[-1].startswith("sgfast paint: error: argument --mode")


# -- end to end: no traceback from the console entry ------------------------------------------------

def _sgfast(*argv, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "sgfast", *map(str, argv)], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@no_cuda
def test_paint_device_cuda_from_the_console_is_one_line(tmp_path):
    r = _sgfast("paint", IMAGE, "--device", "cuda", "--out", tmp_path / "out")
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("sgfast paint: error: --device cuda: CUDA is not available here")
    assert len(r.stderr.splitlines()) == 1 and "Traceback" not in r.stderr, r.stderr


def test_mode_ignored_option_and_missing_file_from_the_console(tmp_path):
    r = _sgfast("paint", IMAGE, "--mode", "baseline", "--mask", MASK, "--out", tmp_path / "out")
    assert r.returncode == 2 and r.stderr == (
        "sgfast paint: error: --mask is ignored with --mode baseline (it is for --mode sg); leave it out\n"), r.stderr
    r = _sgfast("render", tmp_path / "none.json", "--out", tmp_path / "r.png")
    assert r.returncode == 2 and r.stderr == f"sgfast render: error: stroke file not found: {tmp_path}/none.json\n"
