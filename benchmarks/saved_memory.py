"""The memory a forward keeps for its backward, as the op benchmarks report it (extra_info saved_MB).

The CPU allocator has no peak counter and RSS is too noisy on a shared machine, so the benchmarks
count what autograd saves: the distinct storages packed by torch.autograd.graph.saved_tensors_hooks
while the forward runs, minus the storages of the inputs (saving an input costs nothing extra).
"""
import torch


def saved_storage_bytes(forward, inputs):
    """Bytes of the distinct non-input storages autograd saves while `forward()` runs.

    inputs: the tensors the forward reads (views and detached copies share their storage)."""
    given = {t.untyped_storage().data_ptr() for t in inputs if t is not None}
    seen = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in given:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        forward()
    return sum(seen.values())
