// What every CUDA launcher needs: device guard, current stream, launch check, grid sizing.
// Only c10/cuda headers: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers that the CI's
// compile check does not have (and the kernels do not need).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include "kernels/common.h"

namespace sgfast {

// Blocks of a 1-d grid-stride loop over n items (kernels/common.h: stride_blocks, always in range).
inline unsigned blocks_for(int64_t n, int threads = kThreads) { return static_cast<unsigned>(stride_blocks(n, threads)); }

// A 64-bit grid narrowed to dim3 only after checking it against the launch limits (a too-large
// grid would otherwise wrap around or fail with "invalid configuration argument").
inline dim3 to_dim3(const Grid& g, const char* kernel) {
  TORCH_CHECK(grid_fits(g), "sgfast: internal error: grid (", g.x, ", ", g.y, ") of ", kernel,
              " exceeds the CUDA launch limits");
  return dim3(static_cast<unsigned>(g.x), static_cast<unsigned>(g.y));
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace sgfast

// Grid-stride loop over [0, n).
#define SGFAST_KERNEL_LOOP(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)
