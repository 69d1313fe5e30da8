# The two set-up commands of the README: `make demo` and `make test`. Both create .venv, install
# torch and the dependencies, build the extension, then run the demo or the test suite.
PY        ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
DEPS      := $(VENV)/.deps-installed
INSTALLED := $(VENV)/.sgfast-installed
export MAX_JOBS ?= 2

.PHONY: demo test test-fast build bench cuda-check gpu-check clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(DEPS): $(BIN)/python requirements.txt
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -r requirements.txt
	touch $@

# The extension is rebuilt only when a C++/CUDA source or setup.py is newer than it.
CSRC      := $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')
EXT       := sgfast/_C.so

build: $(EXT)

# Editable install without the extension (console script `sgfast`, the runtime dependencies of
# pyproject.toml) when there is none or the package's metadata changed since; then the extension
# is built in place by ninja, incrementally, its objects kept in build/ (a wheel build reuses them).
# flock: parallel `make build`s in one checkout wait for each other instead of racing.
$(INSTALLED): $(DEPS) pyproject.toml setup.py
	flock .build.lock env SGFAST_SKIP_EXT=1 $(BIN)/pip install -q --no-build-isolation -e .
	touch $@

$(EXT): $(INSTALLED) $(CSRC)
	flock .build.lock $(BIN)/python setup.py -q build_ext --inplace
	touch $(EXT)

test: build
	$(BIN)/python -m pytest -q tests

test-fast: build
	$(BIN)/python -m pytest -q -x -m "not slow" tests

demo: build
	$(BIN)/python -m sgfast demo

# The suites are named bench_*.py, which pytest collects only when given by name.
bench: build
	$(BIN)/python -m pytest -q benchmarks/bench_*.py --benchmark-columns=min,median,mean,rounds

# Compile every CUDA source with nvcc against a CUDA build of torch's headers (no GPU needed).
cuda-check:
	bash .ci/cuda_compile_check.sh

# What the first GPU runs before anything else: build the CUDA kernels, every CUDA test,
# compute-sanitizer, the op / DDPG / painting benchmarks on CUDA, figures with the GPU named into
# benchmarks/RESULTS.md, in under 8 minutes (benchmarks/gpu_check.py). Without a GPU it runs what the
# CPU can and says what it skipped. Not tied to .venv (a GPU machine's python3 with its CUDA torch
# does): the script picks the interpreter whose torch sees the GPU. GPU_CHECK_ARGS=--quick: small.
GPU_CHECK_PY ?= $(if $(wildcard $(BIN)/python),$(BIN)/python,python3)
gpu-check:
	$(GPU_CHECK_PY) benchmarks/gpu_check.py $(GPU_CHECK_ARGS)

clean:
	rm -rf build dist *.egg-info sgfast/_C*.so .build.lock
