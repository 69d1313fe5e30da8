"""Actor, critic and discriminator of the baseline (Learning to Paint), with configurable widths.

- Actor: ResNet (BasicBlock, BN), conv1 3x3 stride 2 without maxpool, every stage stride 2,
  global average pool, fc to the action, sigmoid. `width=64, blocks=(2, 2, 2, 2)` is ResNet-18.
- Critic: the same topology without BN, every conv weight-normed with a bias, TReLU activations,
  fc to one value (no output activation).
- Discriminator (WGAN-GP): 5 weight-normed 5x5 stride-2 convs, TReLU after the first four, mean
  over the remaining grid (the baseline's avg_pool 4 at 128^2). Input: [target, image] (6 ch).
"""
from __future__ import annotations

import torch

from sgfast.strokes import STROKE_PARAMS
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class TReLU(nn.Module):
    """relu(x - a) + a with a learnable threshold a (init 0)."""

    def __init__(self):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.relu(x - self.alpha) + self.alpha


def _conv(cin, cout, k, stride, norm):
    pad = k // 2
    if norm:  # actor: BN follows, no bias
        return nn.Conv2d(cin, cout, k, stride, pad, bias=False)
    return weight_norm(nn.Conv2d(cin, cout, k, stride, pad, bias=True))


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride, norm):
        super().__init__()
        self.conv1 = _conv(cin, cout, 3, stride, norm)
        self.conv2 = _conv(cout, cout, 3, 1, norm)
        self.bn1 = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.bn2 = nn.BatchNorm2d(cout) if norm else nn.Identity()
        self.act1 = nn.ReLU() if norm else TReLU()
        self.act2 = nn.ReLU() if norm else TReLU()
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(_conv(cin, cout, 1, stride, norm),
                                          nn.BatchNorm2d(cout) if norm else nn.Identity())

    def forward(self, x):
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act2(out + self.shortcut(x))


class ResNet(nn.Module):
    """ResNet of the baseline: `norm=True` for the actor (BN, ReLU), False for the critic."""

    def __init__(self, in_channels, outputs, width=64, blocks=(2, 2, 2, 2), norm=True):
        super().__init__()
        if in_channels < 1 or outputs < 1 or width < 1 or not blocks:
            raise ValueError(f"ResNet: bad sizes in_channels={in_channels} outputs={outputs} width={width} "
                             f"blocks={blocks}")
        self.conv1 = _conv(in_channels, width, 3, 2, norm)
        self.bn1 = nn.BatchNorm2d(width) if norm else nn.Identity()
        self.act = nn.ReLU() if norm else TReLU()
        layers, c = [], width
        for i, n in enumerate(blocks):
            cout = width * 2 ** i
            for j in range(n):
                layers.append(BasicBlock(c, cout, 2 if j == 0 else 1, norm))
                c = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(c, outputs)

    def forward(self, x):
        x = self.layers(self.act(self.bn1(self.conv1(x))))
        return self.fc(x.mean((2, 3)))


class Actor(nn.Module):
    """Observation channels -> K * 13 stroke numbers in [0, 1]."""

    def __init__(self, in_channels, strokes, width=64, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.strokes = strokes
        self.net = ResNet(in_channels, strokes * STROKE_PARAMS, width, blocks, norm=True)

    def logits(self, x):
        """The pre-sigmoid outputs (what an action regulariser acts on)."""
        return self.net(x)

    def forward(self, x):
        return torch.sigmoid(self.net(x))


class Critic(nn.Module):
    """[canvas0, canvas1, target, (t+1)/T, coords (, S, G)] -> value [B, 1]."""

    def __init__(self, in_channels, width=64, blocks=(2, 2, 2, 2)):
        super().__init__()
        self.net = ResNet(in_channels, 1, width, blocks, norm=False)

    def forward(self, x):
        return self.net(x)


class Discriminator(nn.Module):
    """WGAN-GP critic D(cat[target, image]) -> [B, 1]."""

    def __init__(self, width=16, in_channels=6):
        super().__init__()
        chans = [in_channels, width, 2 * width, 4 * width, 8 * width, 1]
        self.convs = nn.ModuleList(weight_norm(nn.Conv2d(a, b, 5, 2, 2)) for a, b in zip(chans[:-1], chans[1:]))
        self.acts = nn.ModuleList(TReLU() for _ in range(4))

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < 4:
                x = self.acts[i](x)
        return x.mean((2, 3))
