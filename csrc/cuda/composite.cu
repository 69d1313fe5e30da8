// CUDA kernels of composite, composite_frames and _composite_backward (math in kernels/composite.h).
//
// One thread per pixel (all 3 channels: alpha is shared by them). The backward recomputes the
// intermediate canvases in registers and reduces the colour gradient without atomics: each block
// sums its threads' terms in a fixed order (warp shuffles, then warp partials) into a per-(image,
// tile) slot, and the slots are summed with at::sum. The grid depends only on the shape, so two
// runs give bitwise equal gradients on any device.
#include <torch/library.h>

#include "cuda/cuda_utils.cuh"
#include "kernels/composite.h"

namespace sgfast {
namespace {

using composite::Args;
using composite::kGroup;

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

// Sum over the block in a fixed order; the result is valid in thread 0. `scratch` holds 32 values.
template <typename T>
__device__ T block_sum(T v, T* scratch) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  T total = T(0);
  if (threadIdx.x == 0)
    for (int w = 0; w < (int)(blockDim.x >> 5); ++w) total += scratch[w];
  __syncthreads();
  return total;
}

// blockIdx.x = tile of the image (grid-stride over its pixels), blockIdx.y = image (grid-stride).
// partial: [B, tiles, K, 3] colour-gradient sums per tile.
template <typename T>
__global__ void backward_kernel(int64_t B, int64_t K, int64_t hw, const T* __restrict__ grad_out,
                                const T* __restrict__ canvas, const T* __restrict__ alpha,
                                const T* __restrict__ color, const T* __restrict__ mask,
                                const bool* __restrict__ layer, T* __restrict__ grad_canvas,
                                T* __restrict__ grad_alpha, T* __restrict__ partial) {
  __shared__ T scratch[32];
  const int64_t tiles = gridDim.x;
  for (int64_t b = blockIdx.y; b < B; b += gridDim.y) {
    for (int64_t k0 = 0; k0 < K; k0 += kGroup) {
      const int64_t k1 = k0 + kGroup < K ? k0 + kGroup : K;
      T dcol[kGroup][3];
#pragma unroll
      for (int j = 0; j < kGroup; ++j)
#pragma unroll
        for (int ch = 0; ch < 3; ++ch) dcol[j][ch] = T(0);
      for (int64_t p = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; p < hw; p += (int64_t)blockDim.x * tiles) {
        composite::backward_group_px<composite::ScalarIO<T>, T>(K, hw, k0, k1, grad_out + b * 3 * hw + p, canvas + b * 3 * hw + p,
                                              alpha + b * K * hw + p, color + b * K * 3,
                                              mask ? mask + b * hw + p : nullptr, layer, grad_canvas + b * 3 * hw + p,
                                              grad_alpha + b * K * hw + p, dcol);
      }
      T* part = partial + (b * tiles + blockIdx.x) * K * 3;
#pragma unroll
      for (int j = 0; j < kGroup; ++j) {
        if (j < k1 - k0) {
#pragma unroll
          for (int ch = 0; ch < 3; ++ch) {
            const T s = block_sum(dcol[j][ch], scratch);
            if (threadIdx.x == 0) part[(k0 + j) * 3 + ch] = s;
          }
        }
      }
    }
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
  // Tiles per image from the shape only (about 4 pixels per thread), never from the device.
  const int64_t tiles = std::min<int64_t>(1024, std::max<int64_t>(1, (hw + 4 * kThreads - 1) / (4 * kThreads)));
  at::Tensor partial = at::empty({a.B, tiles, a.K, 3}, a.canvas.options());
  const dim3 grid(static_cast<unsigned>(tiles), static_cast<unsigned>(std::min<int64_t>(a.B, 65535)));
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::_composite_backward", [&] {
    backward_kernel<scalar_t><<<grid, kThreads, 0, current_stream()>>>(
        a.B, a.K, hw, g.data_ptr<scalar_t>(), a.canvas.data_ptr<scalar_t>(), a.alpha.data_ptr<scalar_t>(),
        a.color.data_ptr<scalar_t>(), opt_ptr<scalar_t>(a.mask), layer_ptr(a), grad_canvas.data_ptr<scalar_t>(),
        grad_alpha.data_ptr<scalar_t>(), partial.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {grad_canvas, grad_alpha, partial.sum(1)};
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("composite", &composite_cuda);
  m.impl("composite_frames", &composite_frames_cuda);
  m.impl("_composite_backward", &composite_backward_cuda);
}

}  // namespace sgfast
