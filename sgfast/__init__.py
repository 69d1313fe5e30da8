"""sgfast: fast Semantic Guidance painting (bi-level Bézier strokes, aligned crops, focus reward).

The fused kernels live in the compiled extension ``sgfast._C``; importing sgfast works without it
(``sgfast.HAS_EXT`` is then False and the ops raise an error that says how to build it).
"""
from sgfast.ops._ext import HAS_EXT, EXT_ERROR  # noqa: F401

__version__ = "0.1.0"
