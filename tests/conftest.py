import warnings

import pytest
import torch

import sgfast


def _import_torch_mkldnn_quietly():
    """torch/utils/mkldnn.py decorates 14 methods with the deprecated `torch.jit.script_method`, which
    warns once per method when the module is imported; torch._inductor imports it, so the first
    torch.compile with the inductor backend (tests/test_composite.py) printed 14 DeprecationWarnings
    from torch itself (sgfast uses no TorchScript). Import it once here with exactly that message
    ignored: every other DeprecationWarning still shows."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is deprecated",
                                category=DeprecationWarning)
        try:
            import torch.utils.mkldnn  # noqa: F401
        except Exception:  # noqa: BLE001 (a torch without it: nothing to silence)
            pass


_import_torch_mkldnn_quietly()


def pytest_configure(config):
    # A DeprecationWarning attributed to sgfast's own code fails the test that triggers it.
    config.addinivalue_line("filterwarnings", "error::DeprecationWarning:sgfast.*")
    config.addinivalue_line("markers", "needs_cuda: runs on a GPU with sgfast's CUDA kernels; skipped without a "
                                       "GPU, FAILS on a GPU when sgfast._C was built without its CUDA kernels")


# A GPU (torch sees one) and an extension: the CUDA tests run. If that extension has no CUDA kernels
# (a CPU-only build on a GPU machine) they fail, saying how to rebuild, instead of skipping
# silently: skipping is for machines without a GPU.
GPU = torch.cuda.is_available() and sgfast.HAS_EXT
HAS_CUDA = GPU and sgfast.ops.cuda_compiled()
DEVICES = ["cpu"] + (["cuda"] if GPU else [])
needs_cuda = pytest.mark.needs_cuda
needs_ext = pytest.mark.skipif(not sgfast.HAS_EXT, reason="sgfast._C is not built")


def pytest_collection_modifyitems(config, items):
    skip = pytest.mark.skip(reason="needs a GPU (and sgfast._C)")
    for item in items:
        if item.get_closest_marker("needs_cuda") is not None and not GPU:
            item.add_marker(skip)


def _fail_without_cuda_kernels():
    if GPU and not HAS_CUDA:
        from sgfast.ops._ext import require_cuda_kernels

        try:
            require_cuda_kernels()
        except RuntimeError as exc:
            pytest.fail(f"a GPU is present but {exc}", pytrace=False)


@pytest.fixture(autouse=True)
def _cuda_kernels_present(request):
    if request.node.get_closest_marker("needs_cuda") is not None:
        _fail_without_cuda_kernels()


@pytest.fixture(params=DEVICES)
def device(request):
    if request.param == "cuda":
        _fail_without_cuda_kernels()
    return torch.device(request.param)


@pytest.fixture
def deterministic():
    prev = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    yield
    torch.use_deterministic_algorithms(prev)


@pytest.fixture
def one_thread():
    """Tiny models: one thread is fastest, and on a busy machine two threads wait on each other."""
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(prev)
