"""Eager PyTorch references of the fused ops: test oracle, fallback and the `--ops eager` path."""
from sgfast.reference.rasterize import rasterize_strokes  # noqa: F401
from sgfast.reference.crop import aligned_crop  # noqa: F401
from sgfast.reference.focus import focus_distance, focus_reward  # noqa: F401
from sgfast.reference.composite import composite, composite_frames  # noqa: F401
from sgfast.reference.render_strokes import render_strokes  # noqa: F401
