"""Replay memory on the training device.

A transition is (C_t, C_t+1, a_t, t, target index, flip bit): canvases as uint8, the target image,
soft mask and GBP map by dataset index (read from the data source when sampled), so one transition
costs 2 * 3 * S^2 bytes + 4 * 13 K (action, float32) + 8 (index, step, flip). At 128^2 with K = 5 that
is 98,571 bytes, against 229,376 (baseline: two uint8 [7, 128, 128] states) and 360,448 (the
authors' SG code: two uint8 [11, 128, 128] states). The action is stored because the model-based
update re-renders it on C_t (the baseline stores it too).
"""
from __future__ import annotations

import torch


class ReplayMemory:
    def __init__(self, capacity: int, size: int, action_dim: int, device="cpu"):
        if capacity < 1:
            raise ValueError(f"ReplayMemory: capacity must be >= 1, got {capacity}")
        self.capacity, self.device = int(capacity), torch.device(device)
        self.canvas0 = torch.zeros(capacity, 3, size, size, dtype=torch.uint8, device=device)
        self.canvas1 = torch.zeros_like(self.canvas0)
        self.action = torch.zeros(capacity, action_dim, dtype=torch.float32, device=device)
        self.ids = torch.zeros(capacity, dtype=torch.int32, device=device)
        self.step = torch.zeros(capacity, dtype=torch.int16, device=device)
        self.flip = torch.zeros(capacity, dtype=torch.bool, device=device)
        self.pos = 0  # next row to write
        self.count = 0  # rows holding data

    def __len__(self):
        return self.count

    @staticmethod
    def bytes_per_transition(size: int, action_dim: int) -> int:
        return 2 * 3 * size * size + 4 * action_dim + 4 + 2 + 1

    def append(self, canvas0, canvas1, action, step: int, ids, flip):
        b = canvas0.shape[0]
        if b > self.capacity:
            raise ValueError(f"ReplayMemory: a batch of {b} does not fit a capacity of {self.capacity}")
        rows = (torch.arange(b, device=self.device) + self.pos) % self.capacity
        self.canvas0[rows] = canvas0
        self.canvas1[rows] = canvas1
        self.action[rows] = action.detach().float()
        self.ids[rows] = ids.to(torch.int32)
        self.step[rows] = int(step)
        self.flip[rows] = flip
        self.pos = (self.pos + b) % self.capacity
        self.count = min(self.count + b, self.capacity)

    def sample(self, batch: int, generator: torch.Generator) -> dict:
        """Uniform sample with replacement (as the baseline)."""
        if self.count == 0:
            raise RuntimeError("ReplayMemory.sample: the memory is empty")
        rows = torch.randint(self.count, (batch,), generator=generator).to(self.device)
        return {"canvas0": self.canvas0[rows], "canvas1": self.canvas1[rows], "action": self.action[rows],
                "ids": self.ids[rows].long(), "step": self.step[rows].long(), "flip": self.flip[rows]}
