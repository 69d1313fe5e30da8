"""focus_reward's backward computes only the canvas gradients that are needed: the
DDPG actor's loss needs dL/dC_t+1 alone, which is one crop backward (_focus_distance_backward), not
the two of _focus_reward_backward; the numbers are those of the two-canvas backward, bit for bit."""
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import sgfast
from conftest import needs_ext
from tests.test_crop import random_boxes

pytestmark = needs_ext


class OpLog(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.names = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.names.append(func.name())
        return func(*args, **(kwargs or {}))


def inputs(dtype):
    g = torch.Generator().manual_seed(3)
    target, c0, c1 = (torch.rand(3, 3, 20, 22, generator=g, dtype=dtype) for _ in range(3))
    gbp = torch.rand(3, 1, 20, 22, generator=g, dtype=dtype)
    return target, c0, c1, gbp, random_boxes(3, dtype, "cpu", g), torch.randn(3, generator=g, dtype=dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("need", ["c0", "c1", "both", "target"])
def test_only_the_needed_gradients(dtype, need):
    target, c0, c1, gbp, boxes, go = inputs(dtype)
    t = target.clone().requires_grad_(need == "target")
    a = c0.clone().requires_grad_(need in ("c0", "both"))
    b = c1.clone().requires_grad_(need in ("c1", "both"))
    wanted = [x for x in (t, a, b) if x.requires_grad]
    r = sgfast.ops.focus_reward(t, a, b, gbp, boxes, (9, 11))
    with OpLog() as log:
        grads = torch.autograd.grad(r, wanted, go)
    two = [n for n in log.names if n == "sgfast::_focus_reward_backward"]
    one = [n for n in log.names if n == "sgfast::_focus_distance_backward"]
    if need in ("c0", "c1"):
        assert len(one) == 1 and not two
    else:
        assert len(two) == 1 and not one
    g0, g1 = torch.ops.sgfast._focus_reward_backward(go, target, c0, c1, gbp, boxes, 9, 11)
    expect = {"c0": [g0], "c1": [g1], "both": [g0, g1], "target": [-(g0 + g1)]}[need]
    for got, want in zip(grads, expect):
        assert torch.equal(got, want)
