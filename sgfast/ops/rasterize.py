"""Stroke rasterizer op (stub; being written)."""
import torch


def rasterize_strokes(params, size, mode="ltp", supersample=4):
    raise NotImplementedError("rasterize_strokes is being implemented")
