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


HAS_CUDA = torch.cuda.is_available() and sgfast.HAS_EXT and sgfast.ops.cuda_compiled()
DEVICES = ["cpu"] + (["cuda"] if HAS_CUDA else [])
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a GPU and a CUDA build of sgfast")
needs_ext = pytest.mark.skipif(not sgfast.HAS_EXT, reason="sgfast._C is not built")


@pytest.fixture(params=DEVICES)
def device(request):
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
