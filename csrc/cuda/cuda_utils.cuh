// What every CUDA launcher needs: device guard, current stream, launch check, grid sizing.
// Only c10/cuda headers: ATen/cuda/CUDAContext.h pulls in cuSPARSE/cuBLAS headers that the CI's
// compile check does not have (and the kernels do not need).
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

namespace sgfast {

constexpr int kThreads = 256;

inline int64_t blocks_for(int64_t n, int threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b);
}

inline cudaStream_t current_stream() { return c10::cuda::getCurrentCUDAStream().stream(); }

}  // namespace sgfast

// Grid-stride loop over [0, n).
#define SGFAST_KERNEL_LOOP(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)
