// CUDA kernels of composite, composite_frames and _composite_backward (math in kernels/composite.h).
//
// One thread per pixel (all 3 channels: alpha is shared by them). The backward recomputes the
// intermediate canvases in registers, G strokes at a time (BackwardConfig), and reduces the colour
// gradient without atomics: each block sums its threads' terms in a fixed order (warp shuffles,
// then the warps in order, in double) into a per-(image, tile) slot, and a second kernel adds each
// image's slots in tile order (not at::sum, whose split depends on the GPU's SM count). The grid
// depends only on the shape (kernels/composite.h: backward_grid), so the gradients are bitwise
// equal on any device and any run.
#include <torch/library.h>

#include "cuda/cuda_utils.cuh"
#include "kernels/composite.h"

namespace sgfast {
namespace {

using composite::Args;

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

inline const bool* layer_ptr(const Args& a) { return a.layer.defined() ? a.layer.data_ptr<bool>() : nullptr; }

template <typename T>
__global__ void forward_kernel(int64_t total, int64_t K, int64_t hw, const T* __restrict__ canvas,
                               const T* __restrict__ alpha, const T* __restrict__ color,
                               const T* __restrict__ mask, const bool* __restrict__ layer, T* __restrict__ out,
                               T* __restrict__ frames) {
  SGFAST_KERNEL_LOOP(i, total) {
    const int64_t b = i / hw, p = i - b * hw;
    composite::forward_px<composite::ScalarIO<T>, T>(K, hw, canvas + b * 3 * hw + p, alpha + b * K * hw + p, color + b * K * 3,
                                   mask ? mask + b * hw + p : nullptr, layer, out ? out + b * 3 * hw + p : nullptr,
                                   frames ? frames + b * K * 3 * hw + p : nullptr);
  }
}

// The backward's group size per type, and its colour-gradient accumulators in shared memory (not
// registers). ptxas -v for sm_90 (setup.py's flags, 256 threads): the first kernel (16 strokes, 48
// accumulators in registers, 48 block reductions per group) used 218 registers in float (one block
// per SM, 12.5% occupancy) and 255 with spills in double; this one 128 in float and 121 in double, no
// spills (two blocks per SM). Also measured: 16/8 strokes with register accumulators 218/188
// registers; 8/4 with register accumulators 144/124; 4/2 strokes and 8/4 capped at 64 or 80
// registers (launch bounds) all spill. Smaller groups recompute more for K above the group size
// (O(K^2 / G) per pixel): the paper's K = 5 is one group in float32, two in float64.
template <typename T>
struct BackwardConfig;
template <>
struct BackwardConfig<float> {
  static constexpr int kG = 8;
};
template <>
struct BackwardConfig<double> {
  static constexpr int kG = 4;
};

// Accumulators in shared memory, one column per thread: [G * 3][kThreads] (no bank conflicts, no
// registers held across the pixel loop).
template <typename T>
struct SmemAcc {
  T* base;
  __device__ __forceinline__ void add(int j, int ch, T v) const {
    T& a = base[(j * 3 + ch) * kThreads + threadIdx.x];
    a = a + v;
  }
};

// The block's sums of count * 3 accumulators (value(slot) of this thread) in a fixed order: each
// warp adds its lanes with shuffles (in double), then thread s adds the warps' sums of slot s in
// warp order into part[s]. Two barriers per group (the old kernel: two per accumulator).
template <typename F>
__device__ __forceinline__ void block_sums(int count3, const F& value, double (*s_warp)[3 * 16], double* part) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  for (int slot = 0; slot < count3; ++slot) {
    double v = value(slot);
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
    if (lane == 0) s_warp[warp][slot] = v;
  }
  __syncthreads();
  if (threadIdx.x < count3) {
    double total = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) total += s_warp[w][threadIdx.x];
    part[threadIdx.x] = total;
  }
  __syncthreads();
}

// blockIdx.x = tile of the image (grid-stride over its pixels), blockIdx.y = image (looped by
// gridDim.y beyond 65535 images). partial: [B, tiles, K, 3] colour-gradient sums per tile, double.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(int64_t B, int64_t K, int64_t hw, const T* __restrict__ grad_out, const T* __restrict__ canvas,
                    const T* __restrict__ alpha, const T* __restrict__ color, const T* __restrict__ mask,
                    const bool* __restrict__ layer, T* __restrict__ grad_canvas, T* __restrict__ grad_alpha,
                    double* __restrict__ partial) {
  constexpr int G = BackwardConfig<T>::kG;
  static_assert(G <= 16, "block_sums holds at most 16 strokes");
  __shared__ double s_warp[kThreads / 32][3 * 16];
  __shared__ T s_acc[G * 3 * kThreads];
  const SmemAcc<T> acc{s_acc};
  const int64_t tiles = gridDim.x;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    for (int64_t k0 = 0; k0 < K; k0 += G) {
      const int64_t k1 = k0 + G < K ? k0 + G : K;
      const int count = static_cast<int>(k1 - k0);
      for (int slot = 0; slot < 3 * G; ++slot) s_acc[slot * kThreads + threadIdx.x] = T(0);  // own column only
      for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < hw; p += (int64_t)blockDim.x * tiles) {
        composite::backward_group_px<composite::ScalarIO<T>, T, G>(
            K, hw, k0, k1, grad_out + b * 3 * hw + p, canvas + b * 3 * hw + p, alpha + b * K * hw + p,
            color + b * K * 3, mask ? mask + b * hw + p : nullptr, layer, grad_canvas + b * 3 * hw + p,
            grad_alpha + b * K * hw + p, acc);
      }
      double* part = partial + ((b * tiles + blockIdx.x) * K + k0) * 3;
      block_sums(count * 3, [&](int slot) { return double(s_acc[slot * kThreads + threadIdx.x]); }, s_warp, part);
    }
  }
}

// grad_color[b, k, ch] = the tiles' partial sums of image b in tile order (double), then rounded.
template <typename T>
__global__ void color_sum_kernel(const double* __restrict__ partial, T* __restrict__ grad_color, int64_t B,
                                 int64_t tiles, int64_t K3) {
  SGFAST_KERNEL_LOOP(e, B * K3) {
    const int64_t b = e / K3, j = e % K3;
    double total = 0.0;
    for (int64_t t = 0; t < tiles; ++t) total += partial[(b * tiles + t) * K3 + j];
    grad_color[e] = static_cast<T>(total);
  }
}

at::Tensor composite_cuda(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                          const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  c10::cuda::CUDAGuard guard(a.canvas.device());
  at::Tensor out = at::empty_like(a.canvas);
  const int64_t hw = a.H * a.W, total = a.B * hw;
  if (total == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, a.K, hw, a.canvas.data_ptr<scalar_t>(), a.alpha.data_ptr<scalar_t>(), a.color.data_ptr<scalar_t>(),
        opt_ptr<scalar_t>(a.mask), layer_ptr(a), out.data_ptr<scalar_t>(), nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor composite_frames_cuda(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                                 const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  c10::cuda::CUDAGuard guard(a.canvas.device());
  at::Tensor frames = at::empty({a.B, a.K, 3, a.H, a.W}, a.canvas.options());
  const int64_t hw = a.H * a.W, total = a.B * hw;
  if (frames.numel() == 0) return frames;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite_frames", [&] {
    forward_kernel<scalar_t><<<blocks_for(total), kThreads, 0, current_stream()>>>(
        total, a.K, hw, a.canvas.data_ptr<scalar_t>(), a.alpha.data_ptr<scalar_t>(), a.color.data_ptr<scalar_t>(),
        opt_ptr<scalar_t>(a.mask), layer_ptr(a), nullptr, frames.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return frames;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_backward_cuda(
    const at::Tensor& grad_out, const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  const at::Tensor g = composite::check_grad_out(grad_out, a);
  c10::cuda::CUDAGuard guard(a.canvas.device());
  if (a.K == 0) return {g.clone(), at::empty_like(a.alpha), at::empty_like(a.color)};
  const int64_t hw = a.H * a.W;
  if (a.B == 0 || hw == 0)
    return {at::empty_like(a.canvas), at::empty_like(a.alpha), at::zeros_like(a.color)};
  at::Tensor grad_canvas = at::empty_like(a.canvas);
  at::Tensor grad_alpha = at::empty_like(a.alpha);
  at::Tensor grad_color = at::empty_like(a.color);
  const Grid grid = composite::backward_grid(a.B, hw);
  at::Tensor partial = at::empty({a.B, grid.x, a.K, 3}, a.canvas.options().dtype(at::kDouble));
  const dim3 blocks = to_dim3(grid, "composite backward_kernel");
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::_composite_backward", [&] {
    backward_kernel<scalar_t><<<blocks, kThreads, 0, stream>>>(
        a.B, a.K, hw, g.data_ptr<scalar_t>(), a.canvas.data_ptr<scalar_t>(), a.alpha.data_ptr<scalar_t>(),
        a.color.data_ptr<scalar_t>(), opt_ptr<scalar_t>(a.mask), layer_ptr(a), grad_canvas.data_ptr<scalar_t>(),
        grad_alpha.data_ptr<scalar_t>(), partial.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    color_sum_kernel<scalar_t><<<blocks_for(a.B * a.K * 3), kThreads, 0, stream>>>(
        partial.data_ptr<double>(), grad_color.data_ptr<scalar_t>(), a.B, grid.x, a.K * 3);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_canvas, grad_alpha, grad_color};
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("composite", &composite_cuda);
  m.impl("composite_frames", &composite_frames_cuda);
  m.impl("_composite_backward", &composite_backward_cuda);
}

}  // namespace sgfast
