"""`make gpu-check` (benchmarks/gpu_check.py) on the CPU, so it works on first contact with a GPU: a
quick run skips what needs the GPU and says so, writes its figures into its own block of a copy of
RESULTS.md and leaves a GPU's block alone; the time budget skips stages; the Makefile target runs it."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import needs_ext

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "gpu_check.py")
GPU_BLOCK = ("<!-- gpu-check:cuda:nvidia-h200:begin (written by benchmarks/gpu_check.py) -->\n"
             "## `make gpu-check` on NVIDIA H200\n\n| ops | figures of a GPU |\n"
             "<!-- gpu-check:cuda:nvidia-h200:end -->\n")

needs_no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run without a GPU")


def run_check(results, *args, timeout=600):
    cmd = [sys.executable, SCRIPT, "--no-reexec", "--results", str(results), *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


@pytest.mark.slow  # about a minute on 2 busy cores
@needs_ext
@needs_no_gpu
def test_quick_cpu_run(tmp_path):
    results = tmp_path / "RESULTS.md"
    results.write_text(open(os.path.join(ROOT, "benchmarks", "RESULTS.md")).read() + "\n" + GPU_BLOCK)
    before = results.read_text()
    # Every stage but the tests (the suite runs those itself).
    p = run_check(results, "--quick", "--only", "build,kernels,sanitizer,ops,ddpg,paint")
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    for stage, why in (("build", "no GPU"), ("kernels", "no GPU"), ("sanitizer", "no GPU")):
        assert f"skipped {stage}: {why}" in out, out
    assert "3 passed, 0 failed, 3 skipped" in out, out
    text = results.read_text()
    assert text.startswith(before.split(GPU_BLOCK)[0])  # what was there is kept
    assert GPU_BLOCK in text  # a GPU's figures are never overwritten by a CPU run
    block = text[text.index("<!-- gpu-check:cpu:begin"):]
    assert "`make gpu-check` on CPU" in block and "No GPU" in block and "GPU figures are pending" in block
    for figure in ("| composite | fwd+bwd |", "| focus_reward |", "| aligned_crop |", "sgfast ltp", "updates/s",
                   "images/s"):
        assert figure in block, figure
    # A second run replaces its block instead of adding one.
    p = run_check(results, "--quick", "--only", "build")
    assert p.returncode == 0
    text = results.read_text()
    assert text.count("<!-- gpu-check:cpu:begin") == 1 and GPU_BLOCK in text


@needs_ext
@needs_no_gpu
def test_quick_tests_stage(tmp_path):
    p = run_check(tmp_path / "r.md", "--quick", "--only", "tests")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "tests     PASS" in p.stdout and "no GPU" in p.stdout


def test_spent_budget_skips_stages(tmp_path):
    p = run_check(tmp_path / "r.md", "--quick", "--budget", "0", "--only", "ops,paint", timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.count("time budget (0.0s) spent") >= 2
    assert "| ops | SKIP |" in (tmp_path / "r.md").read_text()


def test_bad_stage_is_a_usage_error(tmp_path):
    p = run_check(tmp_path / "r.md", "--only", "nope")
    assert p.returncode == 2 and "--only" in p.stderr


def test_make_target():
    p = subprocess.run(["make", "-n", "gpu-check", "GPU_CHECK_ARGS=--quick"], cwd=ROOT, capture_output=True,
                       text=True)
    assert p.returncode == 0 and "benchmarks/gpu_check.py --quick" in p.stdout


def test_a_failed_build_skips_what_needs_it(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
    import gpu_check

    monkeypatch.setattr(gpu_check, "stage_build", lambda env, args: ("FAIL", "nvcc: internal error"))
    args = gpu_check.parse(["--no-reexec", "--results", str(tmp_path / "r.md")])
    assert gpu_check.main_driver(args) == 1
    out = capsys.readouterr().out
    assert "FAILED build:\nnvcc: internal error" in out
    for stage in ("kernels", "tests", "sanitizer", "ddpg", "paint", "ops"):
        assert f"skipped {stage}: needs the CUDA build: build failed" in out
    assert "| build | FAIL |" in (tmp_path / "r.md").read_text()
