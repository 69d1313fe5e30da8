import os

import pytest
import torch

from sgfast.io import load_checkpoint, load_weights, save_checkpoint, save_weights_fp16


def test_checkpoint_roundtrip_and_no_leftovers(tmp_path):
    path = tmp_path / "ck.pt"
    state = {"w": torch.randn(3, 4), "step": 7, "name": "x"}
    save_checkpoint(path, state)
    back = load_checkpoint(path)
    assert torch.equal(back["w"], state["w"]) and back["step"] == 7 and back["name"] == "x"
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_checkpoint_refuses_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, path)
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        load_checkpoint(path)


def test_failed_write_keeps_old_file(tmp_path):
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"a": torch.ones(1)})
    with pytest.raises(Exception):
        save_checkpoint(path, {"a": lambda: 0})  # not picklable
    assert torch.equal(load_checkpoint(path)["a"], torch.ones(1))
    assert os.listdir(tmp_path) == ["ck.pt"]


def test_fp16_weights(tmp_path):
    sd = {"w": torch.randn(5), "n": torch.tensor(3)}
    save_weights_fp16(tmp_path / "w.pt", sd, {"val_l2": 0.1})
    back, meta = load_weights(tmp_path / "w.pt")
    assert back["w"].dtype == torch.float32 and torch.allclose(back["w"], sd["w"], atol=1e-2)
    assert meta == {"val_l2": 0.1} and back["n"].item() == 3
