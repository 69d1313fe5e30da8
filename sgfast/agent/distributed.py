"""Data-parallel training with torch.distributed (torchrun; NCCL on GPUs, gloo on CPU).

Each rank runs its own environments and replay memory; after every backward the gradients of the
module being stepped are averaged over the ranks, and the actor's BN statistics are broadcast from
rank 0 after each update, so every rank holds the same weights (what DDP guarantees). The DDP
wrapper itself is not used: the model-based update calls the critic several times per iteration
(on C_t with the replayed action, on C_t with the actor's action, as target on C_t+1) and the actor
loss backpropagates into the critic's parameters, which DDP's reducer (one reduction per forward)
does not allow; one flattened all-reduce per optimiser step is equivalent and as cheap.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) outside torch.distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device_type: str) -> bool:
    """Join the process group torchrun (or a test) described in RANK / WORLD_SIZE; True if joined."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return True


def average_gradients(module: torch.nn.Module):
    """All-reduce (mean) the gradients of `module`'s parameters that have one, in one buffer."""
    rank, size = world()
    if size == 1:
        return
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:  # a parameter unused on this rank must still take part in the reduction
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= size
    offset = 0
    for p in params:
        n = p.numel()
        p.grad.copy_(flat[offset:offset + n].view_as(p.grad))
        offset += n


def broadcast_state(module: torch.nn.Module, src: int = 0, buffers_only: bool = False):
    """Copy rank `src`'s parameters (unless buffers_only) and buffers to every rank."""
    if world()[1] == 1:
        return
    with torch.no_grad():
        tensors = list(module.buffers()) + ([] if buffers_only else list(module.parameters()))
        for t in tensors:
            dist.broadcast(t.data, src)


def barrier():
    if world()[1] > 1:
        dist.barrier()


def all_mean(value: float, device) -> float:
    """Mean of a number over the ranks (for logging validation figures)."""
    rank, size = world()
    if size == 1:
        return float(value)
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t)
    return float(t) / size
