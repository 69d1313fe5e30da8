"""sgfast.device.pick_device: every command's --device."""
import pytest


def test_pick_device_resolves_and_refuses_with_a_message():
    import torch

    from sgfast.device import pick_device

    assert pick_device("cpu") == torch.device("cpu")
    assert pick_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(SystemExit, match="bogus"):
        pick_device("bogus")
    if torch.cuda.is_available():
        assert pick_device("cuda", local_rank=0) == torch.device("cuda", 0)
        assert pick_device("cuda:0", local_rank=5) == torch.device("cuda", 0)  # an explicit index wins
    else:
        with pytest.raises(SystemExit, match="CUDA is not available"):
            pick_device("cuda", local_rank=0)
