// Small helpers shared by the CPU and CUDA kernels, and the CUDA launch arithmetic (plain C++, so
// the CPU build computes the same grids: csrc/cpu/emulate_cuda.cpp, tests/test_cuda_twins.py).
#pragma once
#include <stdint.h>

#if defined(__CUDACC__)
#define SGFAST_HD __host__ __device__ __forceinline__
#else
#define SGFAST_HD inline
#endif

namespace sgfast {

template <typename T>
SGFAST_HD T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

// ---- CUDA launch arithmetic -------------------------------------------------------------------
// Threads per block of the 1-d kernels.
constexpr int kThreads = 256;
// Grid limits of every GPU since compute capability 3.0: x < 2^31, y and z <= 65535.
constexpr int64_t kMaxGridX = 2147483647;
constexpr int64_t kMaxGridYZ = 65535;
// Blocks of a grid-stride loop: enough to fill any GPU many times over; the loop does the rest.
constexpr int64_t kMaxStrideBlocks = 65535 * 32;

// A grid, in 64-bit until it is checked (cuda/cuda_utils.cuh: to_dim3).
struct Grid {
  int64_t x, y;
};

// Blocks for a grid-stride loop over n items (n may exceed any grid: the loop strides).
inline int64_t stride_blocks(int64_t n, int64_t threads = kThreads) {
  const int64_t b = (n + threads - 1) / threads;
  return b < 1 ? 1 : (b > kMaxStrideBlocks ? kMaxStrideBlocks : b);
}

// grid.y for a loop over n images (blockIdx.y, stepping by gridDim.y): capped at the limit.
inline int64_t images_grid_y(int64_t n) { return n < 1 ? 1 : (n > kMaxGridYZ ? kMaxGridYZ : n); }

inline bool grid_fits(const Grid& g) { return g.x >= 1 && g.x <= kMaxGridX && g.y >= 1 && g.y <= kMaxGridYZ; }

}  // namespace sgfast
