// CUDA kernels of rasterize_strokes (math in kernels/rasterize.h, contract in docs/ops/rasterize.md).
//
// ltp: one block per (stroke, band of kLtpBandRows output rows) work item, the items looped over by
// a grid of at most kMaxStrideBlocks blocks (kernels/rasterize.h: ltp_grid). The block computes the stroke's 100
// discs, keeps those touching the band's canvas rows (latest first, consecutive duplicates dropped),
// then each thread owns one output pixel: for each of its 4 canvas sub-pixels it scans that list and
// takes the first (= latest) disc containing it, then writes the 2x2 mean. The arithmetic is the CPU's
// (shared header, no FMA contraction), so the result equals the CPU kernel's.
// exact: one thread per output pixel (conservative reach test, then s x s samples).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <string>

#include "checks.h"
#include "cuda/cuda_utils.cuh"
#include "kernels/rasterize.h"

namespace sgfast {
namespace {

using namespace raster;

constexpr int kLtpThreads = 256;

__global__ void halfwidth_table_kernel(int rmax, int* table) {
  const int r = blockIdx.x * blockDim.x + threadIdx.x;
  if (r <= rmax) ltp_circle_halfwidths(r, table + ltp_table_offset(r));
}

template <typename T>
__global__ void __launch_bounds__(kLtpThreads) ltp_kernel(const T* __restrict__ params, int64_t items, int size,
                                                          int bands, const int* __restrict__ table,
                                                          T* __restrict__ out) {
  __shared__ int s_row[kLtpDiscs], s_col[kLtpDiscs], s_rad[kLtpDiscs];
  __shared__ float s_w[kLtpDiscs];
  __shared__ int s_list[kLtpDiscs];
  __shared__ int s_count;
  for (int64_t item = blockIdx.x; item < items; item += gridDim.x) {
    const int64_t stroke = item / bands;
    const int band = static_cast<int>(item % bands);
    const int orow0 = band * kLtpBandRows;
    const int orow1 = min(size, orow0 + kLtpBandRows);
    const int tid = threadIdx.x;
    if (tid < kLtpDiscs) {
      double f[10];
      for (int k = 0; k < 10; ++k) f[k] = static_cast<double>(params[stroke * 10 + k]);
      const LtpStroke s = ltp_stroke(f, size);
      const LtpDisc d = ltp_disc(s, tid);
      s_row[tid] = d.row;
      s_col[tid] = d.col;
      s_rad[tid] = d.radius;
      s_w[tid] = d.w;
    }
    __syncthreads();
    if (tid == 0) {
      // Discs touching canvas rows [2 * orow0, 2 * orow1), latest first; a disc followed by one of the
      // same geometry is entirely overwritten.
      int n = 0;
      for (int i = kLtpDiscs - 1; i >= 0; --i) {
        if (i + 1 < kLtpDiscs && s_row[i] == s_row[i + 1] && s_col[i] == s_col[i + 1] && s_rad[i] == s_rad[i + 1])
          continue;
        if (s_row[i] + s_rad[i] < 2 * orow0 || s_row[i] - s_rad[i] >= 2 * orow1) continue;
        s_list[n++] = i;
      }
      s_count = n;
    }
    __syncthreads();
    const int count = s_count;
    T* o = out + stroke * size * size;  // int64: stroke * size^2 may exceed 2^31
    const int pixels = (orow1 - orow0) * size;
    for (int p = tid; p < pixels; p += blockDim.x) {
      const int i = orow0 + p / size, j = p % size;
      float v[4] = {0.f, 0.f, 0.f, 0.f};
      int todo = 0xF;  // sub-pixels not yet covered
      for (int k = 0; k < count && todo; ++k) {
        const int d = s_list[k];
        const int row = s_row[d], col = s_col[d], rad = s_rad[d];
        const int* hw_row = table + ltp_table_offset(rad);
#pragma unroll
        for (int q = 0; q < 4; ++q) {
          if (!(todo & (1 << q))) continue;
          const int R = 2 * i + (q >> 1), C = 2 * j + (q & 1);
          const int off = abs(R - row);
          if (off > rad) continue;
          if (abs(C - col) <= __ldg(hw_row + off)) {
            v[q] = s_w[d];
            todo &= ~(1 << q);
          }
        }
      }
      // Same order as the CPU kernel: row 2i (cols 2j, 2j+1), then row 2i+1.
      o[i * size + j] = static_cast<T>((v[0] + v[1] + v[2] + v[3]) * 0.25f);
    }
    __syncthreads();  // the next item rewrites the shared disc arrays
  }
}

template <typename T>
__global__ void exact_kernel(const T* __restrict__ params, int64_t n, int size, int ss, T* __restrict__ out) {
  const int64_t total = n * size * size;
  SGFAST_KERNEL_LOOP(idx, total) {
    const int64_t stroke = idx / ((int64_t)size * size);
    const int i = (int)((idx / size) % size), j = (int)(idx % size);
    double f[10];
    for (int k = 0; k < 10; ++k) f[k] = static_cast<double>(params[stroke * 10 + k]);
    const ExactStroke s = exact_stroke(f);
    out[idx] = static_cast<T>(exact_pixel(s, i, j, size, ss));
  }
}

at::Tensor rasterize_strokes_cuda(const at::Tensor& params_in, int64_t size, c10::string_view mode_sv,
                                  int64_t supersample) {
  const std::string mode = check_rasterize_args(params_in, size, mode_sv, supersample);
  c10::cuda::CUDAGuard guard(params_in.device());
  const at::Tensor params = params_in.contiguous();
  const int64_t n = params.size(0);
  at::Tensor out = at::empty({n, size, size}, params.options());
  if (n == 0) return out;
  // The call's one host sync: min and max of all values (NaN propagates) and the largest radius
  // parameter in one transfer. The value check is here, not in the Python wrapper (which checks CPU
  // tensors only), and raises ValueError with the wrapper's wording.
  const at::Tensor stats =
      at::stack({params.min(), params.max(), params.narrow(1, 6, 2).max()}).to(at::kDouble).cpu();
  const double* st = stats.data_ptr<double>();
  TORCH_CHECK_VALUE(std::isfinite(st[0]) && std::isfinite(st[1]),
                    "sgfast.rasterize_strokes: argument 'params' contains NaN or inf");
  TORCH_CHECK_VALUE(st[0] >= 0.0 && st[1] <= 1.0,
                    "sgfast.rasterize_strokes: argument 'params' must lie in [0, 1] (values are not clamped), got min ",
                    st[0], ", max ", st[1]);
  const cudaStream_t stream = current_stream();
  const int sz = static_cast<int>(size);
  if (mode == "ltp") {
    const int rmax = 1 + static_cast<int>(std::floor(st[2] * size * 0.5));
    at::Tensor table = at::empty({ltp_table_entries(rmax)}, params.options().dtype(at::kInt));
    halfwidth_table_kernel<<<(rmax + 1 + 127) / 128, 128, 0, stream>>>(rmax, table.data_ptr<int>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    const int64_t bands = ltp_bands(size);
    const dim3 grid = to_dim3(ltp_grid(n, size), "ltp_kernel");
    AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "rasterize_strokes_cuda_ltp", [&] {
      ltp_kernel<scalar_t><<<grid, kLtpThreads, 0, stream>>>(params.data_ptr<scalar_t>(), n * bands, sz,
                                                              static_cast<int>(bands), table.data_ptr<int>(),
                                                              out.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  } else {
    AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "rasterize_strokes_cuda_exact", [&] {
      exact_kernel<scalar_t><<<blocks_for(n * size * size), kThreads, 0, stream>>>(
          params.data_ptr<scalar_t>(), n, sz, static_cast<int>(supersample), out.data_ptr<scalar_t>());
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) { m.impl("rasterize_strokes", &rasterize_strokes_cuda); }

}  // namespace sgfast
