#!/usr/bin/env bash
# Compiles every csrc/cuda/*.cu with nvcc against the headers of a CUDA build of torch, so a CUDA
# compile error fails CI on a machine without a GPU. The CPU wheel's CUDA headers are incomplete,
# so a CUDA wheel is installed --no-deps into its own venv, only for its include/ folder. The default
# asks for any torch >= 2.11 (the oldest sgfast builds against), so pip takes the newest release this
# machine may install (a local cap such as torch<=2.14.1 included) instead of a pinned one that may be
# refused. SGFAST_CUDA_HEADERS_TORCH pins another spec.
# Usage: .ci/cuda_compile_check.sh [file.cu ...]   (default: every csrc/cuda/*.cu)
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-/usr/local/cuda/bin/nvcc}
HDR_VENV=${SGFAST_CUDA_HEADERS_VENV:-.ci-cuda-headers}
HDR_TORCH=${SGFAST_CUDA_HEADERS_TORCH:-torch>=2.11}
ARCHS=${SGFAST_CUDA_CHECK_ARCHS:-"80 90"}

if [[ ! -x $NVCC ]]; then
  echo "cuda-check: nvcc not found at $NVCC" >&2
  exit 1
fi
if [[ ! -f $HDR_VENV/.ready ]]; then
  python3 -m venv "$HDR_VENV"
  "$HDR_VENV/bin/pip" install -q --no-deps "$HDR_TORCH"
  touch "$HDR_VENV/.ready"
fi
# torch is installed without its dependencies, so it cannot be imported: read its version and CUDA
# version from the files, and refuse a CPU build (its CUDA headers are incomplete).
TORCH_DIR=$("$HDR_VENV/bin/python" - <<'PY'
import importlib.util, os, re, sys
spec = importlib.util.find_spec("torch")
if spec is None:
    sys.exit("cuda-check: torch is not installed in the headers venv")
root = os.path.dirname(spec.origin)
text = open(os.path.join(root, "version.py")).read()
version = re.search(r"__version__\s*=\s*'([^']+)'", text).group(1)
cuda = re.search(r"cuda\s*(?::\s*[^=]+)?=\s*'([^']+)'", text)
major_minor = tuple(int(x) for x in re.match(r"(\d+)\.(\d+)", version).groups())
if major_minor < (2, 11):
    sys.exit(f"cuda-check: torch {version} is older than 2.11, which sgfast needs")
if cuda is None:
    sys.exit(f"cuda-check: torch {version} is a CPU build; set SGFAST_CUDA_HEADERS_TORCH to a CUDA build")
print(f"cuda-check: CUDA headers of torch {version} (CUDA {cuda.group(1)})", file=sys.stderr)
print(root)
PY
)
PY_INC=$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
shopt -s nullglob
if (( $# > 0 )); then sources=("$@"); else sources=(csrc/cuda/*.cu); fi
if (( ${#sources[@]} == 0 )); then
  echo "cuda-check: no CUDA sources" >&2
  exit 1
fi
gencode=()
for a in $ARCHS; do gencode+=(-gencode "arch=compute_$a,code=sm_$a"); done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
status=0
for src in "${sources[@]}"; do
  echo "cuda-check: nvcc $src"
  if ! "$NVCC" -c "$src" -o "$out/$(basename "$src").o" -std=c++20 -O1 "${gencode[@]}" \
      -Icsrc -I"$TORCH_DIR/include" -I"$TORCH_DIR/include/torch/csrc/api/include" -I"$PY_INC" \
      -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H -D_GLIBCXX_USE_CXX11_ABI=1 \
      -DSGFAST_WITH_CUDA --expt-relaxed-constexpr --use_fast_math -Xcompiler -fPIC \
      -diag-suppress 20012 2>"$out/log"; then
    cat "$out/log" >&2
    status=1
  fi
done
exit $status
