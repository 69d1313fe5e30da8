"""Eager reference of the stroke rasterizer (stub; being written)."""


def rasterize_strokes(params, size, mode="ltp", supersample=4):
    raise NotImplementedError("rasterize_strokes reference is being implemented")
