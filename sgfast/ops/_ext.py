"""Loads the compiled extension, or remembers why it could not be loaded."""
import torch

BUILD_HINT = (
    "sgfast's compiled extension (sgfast._C) is not available{why}. Build it from the repository root with "
    "`pip install --no-build-isolation -e .` (or `make build`), against the torch that is installed. "
    "The eager references in sgfast.reference work without it."
)

try:
    from sgfast import _C  # noqa: F401  (loading it registers torch.ops.sgfast.*)

    HAS_EXT = True
    EXT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only on machines without a build
    HAS_EXT = False
    EXT_ERROR = exc


def require_ext():
    """Raise a clear error when the extension is missing."""
    if not HAS_EXT:
        raise RuntimeError(BUILD_HINT.format(why=f" ({EXT_ERROR})"))


def cuda_compiled() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return HAS_EXT and torch.ops.sgfast._cuda_version() > 0
