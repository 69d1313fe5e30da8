"""The neural stroke renderer Φ: 10 stroke-shape numbers -> alpha [N, S, S] (differentiable).

Architecture of the baseline's FCN (Learning to Paint, Renderer/model.py), generalised:

    fc 10 -> h1 -> h2 -> h3 -> c0 * g * g   (ReLU after each)
    view (N, c0, g, g)
    `stages` times:  conv3x3 c -> 2c*m + ReLU, conv3x3 2c*m -> 2c, PixelShuffle(2) -> c/2 channels
                     (the last stage's second conv outputs 4 channels so the shuffle gives 1)
    sigmoid -> alpha

with g = S / 2**stages and c0 = 2**(stages + 1). With S = 128, stages = 3, hidden (512, 1024, 2048)
and m = 1 this is exactly the baseline (c0 = 16, g = 16, 11,040,812 parameters), except for the
output: the baseline returns 1 - sigmoid (ink = 0), sgfast returns alpha = sigmoid (ink = 1), the
stroke density used everywhere else in sgfast.
"""
from __future__ import annotations

import dataclasses
import os

import torch
from torch import nn

from sgfast.io import load_weights, save_weights_fp16
from sgfast.models.checked_build import build_checked

WEIGHTS_KIND = "sgfast.renderer"


@dataclasses.dataclass(frozen=True)
class RendererConfig:
    """Architecture of a renderer. `size` must be divisible by 2**stages."""

    name: str = "paper"
    size: int = 128  # canvas side S of the output alpha
    hidden: tuple = (512, 1024, 2048)  # widths of the fc layers before the grid layer
    stages: int = 3  # pixel-shuffle upsampling stages; base grid g = size / 2**stages
    conv_mult: int = 1  # width multiplier of the first conv of each stage

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < 1:
            raise ValueError(f"RendererConfig: size must be a positive int, got {self.size!r}")
        if not isinstance(self.stages, int) or self.stages < 1:
            raise ValueError(f"RendererConfig: stages must be an int >= 1, got {self.stages!r}")
        if self.size % (2 ** self.stages):
            raise ValueError(f"RendererConfig: size {self.size} is not divisible by 2**stages = "
                             f"{2 ** self.stages} (choose another size or number of stages)")
        hidden = tuple(int(h) for h in self.hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(f"RendererConfig: hidden must be positive widths, got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)  # lists (e.g. from a weights file) -> tuple
        if not isinstance(self.conv_mult, int) or self.conv_mult < 1:
            raise ValueError(f"RendererConfig: conv_mult must be an int >= 1, got {self.conv_mult!r}")

    @property
    def grid(self) -> int:
        return self.size // 2 ** self.stages

    @property
    def grid_channels(self) -> int:
        # Each stage halves the channels (2c conv outputs / 4 by the shuffle); the last ends at 1.
        return 2 ** (self.stages + 1)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


# Named configs. `paper` is the baseline; `tiny` trains usefully on 2 CPU cores in tens of minutes
# and ships in < 5 MB as fp16 (1.7 M parameters); `smoke` trains in seconds (tests, demo).
CONFIGS = {
    "paper": RendererConfig("paper", size=128, hidden=(512, 1024, 2048), stages=3),
    "tiny": RendererConfig("tiny", size=64, hidden=(256, 512, 1024), stages=3),
    "smoke": RendererConfig("smoke", size=32, hidden=(32, 64, 128), stages=3),
}


def get_config(name_or_cfg) -> RendererConfig:
    if isinstance(name_or_cfg, RendererConfig):
        return name_or_cfg
    if name_or_cfg not in CONFIGS:
        raise ValueError(f"unknown renderer config {name_or_cfg!r}; choose one of {sorted(CONFIGS)}")
    return CONFIGS[name_or_cfg]


class Renderer(nn.Module):
    """params [N, 10] in [0, 1] -> alpha [N, S, S] in [0, 1] (1 = full ink)."""

    def __init__(self, config="paper"):
        super().__init__()
        self.config = cfg = get_config(config)
        widths = (10,) + cfg.hidden + (cfg.grid_channels * cfg.grid * cfg.grid,)
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        convs = []
        c = cfg.grid_channels
        for i in range(cfg.stages):
            last = i == cfg.stages - 1
            mid = 2 * c * cfg.conv_mult
            convs.append(nn.Conv2d(c, mid, 3, 1, 1))
            convs.append(nn.Conv2d(mid, 4 if last else 2 * c, 3, 1, 1))
            c = c // 2
        self.convs = nn.ModuleList(convs)
        self.shuffle = nn.PixelShuffle(2)

    def logits(self, params: torch.Tensor) -> torch.Tensor:
        if params.dim() != 2 or params.shape[-1] != 10:
            raise ValueError(f"Renderer: params must have shape [N, 10], got {tuple(params.shape)}")
        cfg = self.config
        x = params
        for fc in self.fc:
            x = torch.relu(fc(x))
        x = x.view(-1, cfg.grid_channels, cfg.grid, cfg.grid)
        for i in range(cfg.stages):
            x = torch.relu(self.convs[2 * i](x))
            x = self.shuffle(self.convs[2 * i + 1](x))  # no activation before the shuffle (baseline)
        return x.view(-1, cfg.size, cfg.size)

    def forward(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(params))


def save_renderer(path, model: Renderer, meta: dict | None = None):
    """Write fp16 weights; the architecture goes into meta so load_renderer can rebuild it."""
    full = dict(meta or {})
    full.update(kind=WEIGHTS_KIND, config=model.config.to_dict())
    save_weights_fp16(path, model.state_dict(), full)


def load_renderer(path, device="cpu") -> Renderer:
    """Rebuild the renderer stored in `path` (written by save_renderer), in eval mode.

    The returned model has the file's meta dict as `.meta`.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"sgfast: renderer weights not found: {path} (train them with "
                                "`sgfast train-renderer`, or use the shipped renderer_tiny.pt)")
    state, meta = load_weights(path)
    if meta.get("kind") != WEIGHTS_KIND or "config" not in meta:
        raise RuntimeError(f"sgfast: {path} is not a renderer weights file (meta kind "
                           f"{meta.get('kind')!r}, expected {WEIGHTS_KIND!r} with a 'config')")
    try:
        cfg = RendererConfig(**meta["config"])
    except (TypeError, ValueError) as exc:
        raise RuntimeError(f"sgfast: {path} holds an invalid renderer config: {exc}") from exc
    model = build_checked(lambda: Renderer(cfg), state, path, "renderer")
    model.meta = meta
    return model.to(device).eval()
