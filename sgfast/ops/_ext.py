"""Loads the compiled extension, or remembers why it could not be loaded; says whether it has its
CUDA kernels and how to rebuild it when it has not."""
import torch

BUILD_HINT = (
    "sgfast's compiled extension (sgfast._C) is not available{why}. Build it from the repository root with "
    "`pip install --no-build-isolation -e .` (or `make build`), against the torch that is installed. "
    "The eager references in sgfast.reference work without it."
)

CUDA_BUILD_HINT = (
    "sgfast's compiled extension (sgfast._C) was built without its CUDA kernels{why}, so the fused ops cannot run "
    "on {device}. Rebuild it on this machine, with nvcc (CUDA_HOME) matching this torch's CUDA {cuda}: "
    "`rm -f sgfast/_C*.so && SGFAST_FORCE_CUDA=1 make build` (or `SGFAST_FORCE_CUDA=1 pip install "
    "--no-build-isolation -e .`), then `make gpu-check`. Without a rebuild: --ops eager, or the CPU."
)

try:
    from sgfast import _C  # noqa: F401  (loading it registers torch.ops.sgfast.*)

    HAS_EXT = True
    EXT_ERROR = None
except ImportError as exc:  # pragma: no cover - exercised only on machines without a build
    HAS_EXT = False
    EXT_ERROR = exc

# CUDART_VERSION the extension was built with (e.g. 13000), 0 for a CPU-only build or none.
CUDA_RUNTIME_VERSION = int(torch.ops.sgfast._cuda_version()) if HAS_EXT else 0


def require_ext(*tensors):
    """Raise a clear error when the extension is missing, or when one of `tensors` is on a CUDA device
    and the extension has no CUDA kernels (instead of the dispatcher's "Could not run 'sgfast::...'
    with arguments from the 'CUDA' backend")."""
    if not HAS_EXT:
        raise RuntimeError(BUILD_HINT.format(why=f" ({EXT_ERROR})"))
    if CUDA_RUNTIME_VERSION == 0:
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.is_cuda:
                require_cuda_kernels(t.device)


def cuda_compiled() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return HAS_EXT and CUDA_RUNTIME_VERSION > 0


def require_cuda_kernels(device="cuda"):
    """RuntimeError saying how to rebuild when the extension cannot run on CUDA `device`."""
    if not HAS_EXT:
        raise RuntimeError(BUILD_HINT.format(why=f" ({EXT_ERROR})"))
    if CUDA_RUNTIME_VERSION == 0:
        raise RuntimeError(CUDA_BUILD_HINT.format(why=" (a CPU-only build)", device=device,
                                                  cuda=torch.version.cuda or "(none: a CPU build of torch)"))


def cuda_version_mismatch():
    """None when the extension's CUDA major version is torch's, else a sentence saying both (a build
    against another CUDA than torch's)."""
    if not cuda_compiled() or torch.version.cuda is None:
        return None
    ext_major = CUDA_RUNTIME_VERSION // 1000
    torch_major = int(torch.version.cuda.split(".")[0])
    if ext_major == torch_major:
        return None
    return (f"sgfast._C was built with CUDA {ext_major}.{CUDA_RUNTIME_VERSION % 1000 // 10} but torch uses CUDA "
            f"{torch.version.cuda}: rebuild it against this torch")


def not_differentiable(op: str, why: str):
    """Register an autograd formula for `sgfast::<op>` that raises instead of returning a gradient: a
    clear error rather than the autograd fallback's silent None / 0 (a wrong number). Used for the
    forward-only ops (differentiating through them is an error) and for the ops' backward kernels
    (double backward: a gradient of a gradient, which the training never takes through these ops;
    WGAN-GP differentiates twice through the discriminator only)."""
    qualified = f"sgfast::{op}"

    def _setup(ctx, inputs, output):
        pass

    def _raise(ctx, *grads):
        raise RuntimeError(f"sgfast: {why}")

    torch.library.register_autograd(qualified, _raise, setup_context=_setup)
