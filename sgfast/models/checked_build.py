"""Building a model from a weights file's meta only once the stored tensors fit it.

The meta (widths, depths, hidden sizes) says what to build; an edited or corrupt meta could ask for
a network of many GB. The model is first built on the meta device (shapes only, no memory, no
time), its parameter and buffer shapes compared with the stored tensors, and only a match is built
for real and loaded.
"""
from __future__ import annotations

import torch

from sgfast.io import WeightsFileError


def build_checked(build, state_dict: dict, path, what: str):
    """`build()` -> an nn.Module; returns it with `state_dict` loaded, or raises WeightsFileError
    naming `path` when the meta is invalid or the stored tensors' names or shapes differ."""
    try:
        with torch.device("meta"):
            probe = build()
    except (TypeError, ValueError, KeyError) as exc:
        raise WeightsFileError(f"sgfast: {path} holds an invalid {what} config: {exc}") from None
    want = {k: tuple(v.shape) for k, v in probe.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state_dict.items()}
    if want != got:
        missing = sorted(want.keys() - got.keys())
        extra = sorted(got.keys() - want.keys())
        wrong = sorted(k for k in want.keys() & got.keys() if want[k] != got[k])
        detail = (f"{wrong[0]} is {list(got[wrong[0]])} but the meta needs {list(want[wrong[0]])}" if wrong
                  else f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}")
        raise WeightsFileError(f"sgfast: {path}: the stored {what} weights do not match its meta ({detail})")
    model = build()
    model.load_state_dict(state_dict)
    return model
