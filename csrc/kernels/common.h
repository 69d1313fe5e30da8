// Small helpers shared by the CPU and CUDA kernels.
#pragma once

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

}  // namespace sgfast
