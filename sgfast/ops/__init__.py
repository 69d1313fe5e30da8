"""Public fused ops. Each op has an eager twin in sgfast.reference with the same signature.

One module per op: the Python wrapper (argument checks and defaults), its fake kernel for
torch.compile and its autograd formula, registered with torch.library.
"""
from sgfast.ops._ext import HAS_EXT, cuda_compiled, require_ext  # noqa: F401
from sgfast.ops.rasterize import rasterize_strokes  # noqa: F401
from sgfast.ops.crop import aligned_crop  # noqa: F401
from sgfast.ops.focus import focus_distance, focus_reward  # noqa: F401
from sgfast.ops.composite import composite, composite_frames  # noqa: F401
from sgfast.ops.render_strokes import render_strokes  # noqa: F401
