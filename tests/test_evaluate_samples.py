"""`sgfast evaluate` on the bundled samples, which have no test-split images: without --split it
evaluates all of them and says so in one line; an explicit --split test is still an error; a data set
with test images is evaluated on those only."""
import csv
import os
import shutil

import pytest

from cli_usage import usage_error
from sgfast import cli
from sgfast.ops import HAS_EXT

pytestmark = pytest.mark.skipif(not HAS_EXT, reason="sgfast extension not built")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES = os.path.join(ROOT, "sgfast", "assets", "samples", "birds")
SG = os.path.join(ROOT, "sgfast", "weights", "agent_sg_tiny.pt")


def _split_flags(root):
    with open(os.path.join(root, "train_test_split.txt")) as fh:
        return [int(line.split()[1]) for line in fh if line.strip()]


def _rows(out):
    with open(os.path.join(out, "evaluate.csv")) as fh:
        return list(csv.DictReader(fh))


def test_bundled_samples_evaluate_on_all_images(tmp_path, capsys):
    flags = _split_flags(SAMPLES)
    assert flags and all(f == 1 for f in flags)  # the premise: every sample is a train image
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", SAMPLES, "--steps", "1", "--out", str(out), "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    notes = [line for line in err.splitlines() if "no test-split images" in line]
    assert len(notes) == 1 and f"all {len(flags)} images" in notes[0]
    rows = _rows(out)
    assert rows and all(int(r["images"]) == len(flags) for r in rows)


def test_explicit_test_split_of_the_samples_is_still_refused(tmp_path, capsys):
    err = usage_error(capsys, ["evaluate", SAMPLES, "--split", "test", "--steps", "1", "--out", tmp_path / "ev",
                               "--no-progress"])
    assert "test split" in err and "empty" in err and "--split all" in err


def test_a_data_set_with_test_images_is_evaluated_on_those(tmp_path, capsys):
    root = tmp_path / "birds"
    shutil.copytree(SAMPLES, root)
    flags = _split_flags(SAMPLES)
    with open(root / "train_test_split.txt", "w") as fh:  # the last two images become test images
        for i in range(len(flags)):
            fh.write(f"{i + 1} {0 if i >= len(flags) - 2 else 1}\n")
    out = tmp_path / "ev"
    rc = cli.main(["evaluate", str(root), "--steps", "1", "--out", str(out), "--threads", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "no test-split images" not in err
    assert all(int(r["images"]) == 2 for r in _rows(out))


def test_api_default_split_logs_the_fallback():
    from sgfast.evaluate import evaluate

    lines = []
    rows, _ = evaluate(SAMPLES, [("sg", SG)], steps=1, log=lines.append)
    assert len(lines) == 1 and "all" in lines[0]
    assert rows[0]["images"] == len(_split_flags(SAMPLES))
