"""A CPU-only build of sgfast on a GPU machine: the CUDA tests fail, saying how to
rebuild, instead of skipping; painting and training on CUDA with the fused ops refuse at once with
the same advice instead of failing at the first op with "Could not run 'sgfast::...' with arguments
from the 'CUDA' backend"."""
import os
import shutil
import subprocess
import sys

import pytest
import torch

import sgfast
from conftest import needs_ext

pytestmark = [needs_ext, pytest.mark.skipif(sgfast.ops.cuda_compiled(), reason="this build has CUDA kernels")]

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)

SAMPLE = '''
from conftest import needs_cuda


@needs_cuda
def test_on_the_gpu():
    pass


def test_per_device(device):
    pass
'''


def _run_pytest(tmp_path, fake_gpu):
    shutil.copy(os.path.join(TESTS, "conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(SAMPLE)
    (tmp_path / "fake_gpu.py").write_text("import torch\ntorch.cuda.is_available = lambda: True\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider", str(tmp_path)]
    if fake_gpu:
        cmd[3:3] = ["-p", "fake_gpu"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), ROOT]))
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300).stdout


def test_no_gpu_skips_the_cuda_tests(tmp_path):
    out = _run_pytest(tmp_path, fake_gpu=False)
    assert "SKIPPED" in out and "needs a GPU" in out and "1 passed, 1 skipped" in out, out
    assert "test_per_device[cuda]" not in out


def test_a_gpu_with_a_cpu_only_build_fails_the_cuda_tests(tmp_path):
    out = _run_pytest(tmp_path, fake_gpu=True)
    # pytest reports a failure raised in a fixture as an error: either way the run fails.
    assert "1 passed, 2 errors" in out, out
    assert "test_on_the_gpu" in out and "test_per_device[cuda]" in out
    assert "SGFAST_FORCE_CUDA=1 make build" in out and "make gpu-check" in out


def test_the_ops_refuse_cuda_with_how_to_rebuild(monkeypatch):
    from sgfast.ops import _ext

    with pytest.raises(RuntimeError, match="built without its CUDA kernels.*SGFAST_FORCE_CUDA=1 make build"):
        _ext.require_cuda_kernels("cuda:0")

    class FakeCuda(torch.Tensor):  # a CPU tensor that says it is on a GPU
        @property
        def is_cuda(self):
            return True

    x = torch.rand(1, 3, 4, 4).as_subclass(FakeCuda)
    with pytest.raises(RuntimeError, match="without its CUDA kernels"):
        sgfast.ops.aligned_crop(x, torch.rand(1, 4).as_subclass(FakeCuda), 2)
    with pytest.raises(RuntimeError, match="without its CUDA kernels"):
        sgfast.ops.composite(x, torch.rand(1, 2, 4, 4).as_subclass(FakeCuda), torch.rand(1, 2, 3).as_subclass(FakeCuda))


def test_painting_and_training_on_cuda_refuse_up_front():
    from sgfast.paint import PaintError, load_models

    with pytest.raises(PaintError, match="--ops: .*without its CUDA kernels.*make build"):
        load_models("sg", device="cuda", ops="fused")

    from sgfast.agent.config import get_config
    from sgfast.agent.ddpg import DDPG
    from sgfast.backend import get_ops

    with pytest.raises(RuntimeError, match="without its CUDA kernels"):
        DDPG(get_config("smoke"), "sg", None, get_ops("fused"), None, "cuda")
