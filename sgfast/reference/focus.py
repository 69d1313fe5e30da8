"""Eager reference of the focus distance and focus reward (paper Eq. 13-15).

    L = ||Z_G * (Z_I - Z_C)||_F^2 / (||Z_G||_F + 1e-8),   Z_* = aligned_crop(*, boxes, size)

Z_G (the cropped guided-backprop map, one channel) is broadcast over the colour channels in the
product; its norm is that of the one-channel crop. The images are cropped in one grid_sample call
(channels stacked), the cheapest way eager PyTorch has to do it.
"""
import torch

from sgfast.reference.crop import aligned_crop

EPS = 1e-8


def _distances(zi, zcs, zg):
    den = zg.flatten(1).norm(dim=1) + EPS
    return [(zg * (zi - zc)).pow(2).flatten(1).sum(1) / den for zc in zcs]


def focus_distance(target, canvas, gbp, boxes, size):
    """L(C) per image -> [B]."""
    C = target.shape[1]
    z = aligned_crop(torch.cat([target, canvas, gbp.to(target.dtype)], 1), boxes, size)
    return _distances(z[:, :C], [z[:, C : 2 * C]], z[:, 2 * C :])[0]


def focus_reward(target, canvas0, canvas1, gbp, boxes, size):
    """L(C0) - L(C1) per image -> [B] (Eq. 15: positive when the step brought the detail closer)."""
    C = target.shape[1]
    z = aligned_crop(torch.cat([target, canvas0, canvas1, gbp.to(target.dtype)], 1), boxes, size)
    l0, l1 = _distances(z[:, :C], [z[:, C : 2 * C], z[:, 2 * C : 3 * C]], z[:, 3 * C :])
    return l0 - l1
