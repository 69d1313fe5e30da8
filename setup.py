"""Builds sgfast._C: the C++ ops always, the CUDA kernels when they can be built.

Environment switches:
  SGFAST_NO_CUDA=1     CPU only, even where CUDA is available.
  SGFAST_FORCE_CUDA=1  build the CUDA kernels without a visible GPU (needs nvcc and a CUDA build of
                       torch); TORCH_CUDA_ARCH_LIST then defaults to the data-centre archs.
  SGFAST_DEBUG=1       -O0 -g.
  SGFAST_SKIP_EXT=1    no extension: the Makefile's editable install (metadata, dependencies, the
                       `sgfast` script) before it builds the extension with `build_ext --inplace`,
                       whose objects in build/ later builds (a wheel) reuse.
"""
import glob
import os

import torch
from setuptools import find_packages, setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "0").lower() in ("1", "true", "yes", "on")


def want_cuda():
    if _flag("SGFAST_NO_CUDA"):
        return False
    has_toolkit = CUDA_HOME is not None and torch.version.cuda is not None
    if _flag("SGFAST_FORCE_CUDA"):
        if not has_toolkit:
            raise RuntimeError("SGFAST_FORCE_CUDA=1 needs nvcc (CUDA_HOME) and a CUDA build of torch; "
                               f"found CUDA_HOME={CUDA_HOME}, torch.version.cuda={torch.version.cuda}")
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")
        return True
    return has_toolkit and torch.cuda.is_available()


def package_files(*folders):
    """Every file under sgfast/<folder>, relative to sgfast/, for package_data."""
    found = []
    for folder in folders:
        for root, _, names in os.walk(os.path.join(ROOT, "sgfast", folder)):
            found += [os.path.relpath(os.path.join(root, n), os.path.join(ROOT, "sgfast")) for n in names]
    return sorted(found)


def extension():
    debug = _flag("SGFAST_DEBUG")
    opt = ["-O0", "-g"] if debug else ["-O3"]
    sources = sorted(glob.glob(os.path.join("csrc", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    include = [os.path.join(ROOT, "csrc")]
    # at::parallel_for is OpenMP code inlined from ATen's headers: without -fopenmp every CPU kernel
    # silently runs on one thread.
    cxx = opt + ["-fvisibility=hidden", "-fopenmp"]
    link = ["-fopenmp"]
    if want_cuda():
        sources += sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")))
        nvcc = opt + ["-lineinfo", "--use_fast_math", "--expt-relaxed-constexpr"]
        nvcc += os.environ.get("NVCC_FLAGS", "").split()
        return CUDAExtension("sgfast._C", sources, include_dirs=include,
                             extra_compile_args={"cxx": cxx + ["-DSGFAST_WITH_CUDA"], "nvcc": nvcc},
                             extra_link_args=link)
    return CppExtension("sgfast._C", sources, include_dirs=include, extra_compile_args={"cxx": cxx},
                        extra_link_args=link)


# Name, version, dependencies and the `sgfast` script are in pyproject.toml; this file adds what
# needs code: the extension and the package layout.
setup(
    # train/ is a top-level folder of the checkout but installs as sgfast.train.
    packages=find_packages(include=["sgfast", "sgfast.*"]) + ["sgfast.train"],
    package_dir={"sgfast.train": "train"},
    # Shipped weights and the sample data (walked, as package_data globs do not recurse).
    package_data={"sgfast": package_files("weights", "assets")},
    ext_modules=[] if _flag("SGFAST_SKIP_EXT") else [extension()],
    cmdclass={"build_ext": BuildExtension.with_options(no_python_abi_suffix=True)},
)
