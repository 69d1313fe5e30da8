import pytest
import torch

import sgfast

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
