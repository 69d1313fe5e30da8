// aligned_crop on CUDA.
//
// First the tap tables of the batch (kernels/crop.h: fill_tap_tables, through build_axis_taps, the
// function that fills the CPU's AxisTable: positions in double, weights in the tensor's type), one
// thread per (image, axis). Forward: one thread per output pixel, all channels (crop_forward_pixel).
// Backward: two deterministic GATHER passes, no atomics:
//   1. colsum[b, c, i, q] = sum over output columns j touching input column q of wx_j(q) g[b, c, i, j]
//   2. grad_x[b, c, p, q] = mask[b, p, q] * sum over output rows i touching input row p of wy_i(p) colsum[b, c, i, q]
// (crop_backward_col / crop_backward_row; the touching ranges from touch_range in double, as the CPU
// backward), so the result is bitwise reproducible and needs no deterministic-mode fallback. The
// per-element functions do the CPU kernels' arithmetic, so non-finite inputs give what the CPU gives.
#include <torch/library.h>

#include "cuda/crop_tables.cuh"
#include "cuda/cuda_utils.cuh"
#include "kernels/crop.h"

namespace sgfast {

namespace {

template <typename T>
__global__ void tap_table_kernel(TapLayout L, const T* __restrict__ boxes, int64_t H, int64_t W,
                                 int64_t* __restrict__ idx, T* __restrict__ wts) {
  SGFAST_KERNEL_LOOP(item, 2 * L.B) { fill_tap_tables<T>(L, boxes, H, W, item, idx, wts); }
}

template <typename T>
__global__ void crop_forward_kernel(TapLayout L, const int64_t* __restrict__ idx, const T* __restrict__ wts,
                                    const T* __restrict__ x, const T* __restrict__ mask, T* __restrict__ out,
                                    int64_t C, int64_t H, int64_t W) {
  const TapTables<T> tab(L, idx, wts);
  SGFAST_KERNEL_LOOP(e, L.B * L.h * L.w) {
    const int64_t j = e % L.w, i = (e / L.w) % L.h, b = e / (L.w * L.h);
    crop_forward_pixel(tab, x, mask, out, b, i, j, C, H, W);
  }
}

// Pass 1: gather along the columns. grad [B, C, h, w] -> colsum [B, C, h, W].
template <typename T>
__global__ void crop_backward_cols_kernel(TapLayout L, const int64_t* __restrict__ idx, const T* __restrict__ wts,
                                          const T* __restrict__ grad, const T* __restrict__ boxes,
                                          T* __restrict__ colsum, int64_t C, int64_t W) {
  const TapTables<T> tab(L, idx, wts);
  SGFAST_KERNEL_LOOP(e, L.B * C * L.h * W) {
    const int64_t q = e % W, row = e / W;  // row = (b * C + c) * h + i
    const int64_t b = row / (C * L.h);
    colsum[e] = crop_backward_col(tab, boxes + 4 * b, grad + row * L.w, b, q, W);
  }
}

// Pass 2: gather along the rows, then apply the mask. colsum [B, C, h, W] -> grad_x [B, C, H, W].
template <typename T>
__global__ void crop_backward_rows_kernel(TapLayout L, const int64_t* __restrict__ idx, const T* __restrict__ wts,
                                          const T* __restrict__ colsum, const T* __restrict__ boxes,
                                          const T* __restrict__ mask, T* __restrict__ gx, int64_t C, int64_t H,
                                          int64_t W) {
  const TapTables<T> tab(L, idx, wts);
  SGFAST_KERNEL_LOOP(e, L.B * C * H * W) {
    const int64_t q = e % W, p = (e / W) % H, bc = e / (W * H), b = bc / C;
    gx[e] = crop_backward_row(tab, boxes + 4 * b, colsum + bc * L.h * W, mask, b, p, q, H, W);
  }
}

}  // namespace

CudaTapTables make_tap_tables_cuda(const at::Tensor& boxes, int64_t H, int64_t W, int64_t h, int64_t w) {
  const TapLayout L{boxes.size(0), h, w};
  CudaTapTables t{L, at::empty({L.idx_size()}, boxes.options().dtype(at::kLong)),
                  at::empty({L.wts_size()}, boxes.options())};
  if (L.B == 0) return t;
  AT_DISPATCH_FLOATING_TYPES(boxes.scalar_type(), "sgfast_tap_tables_cuda", [&] {
    tap_table_kernel<scalar_t><<<blocks_for(2 * L.B), kThreads, 0, current_stream()>>>(
        L, boxes.data_ptr<scalar_t>(), H, W, t.idx.data_ptr<int64_t>(), t.wts.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return t;
}

at::Tensor crop_backward_cuda_impl(const at::Tensor& grad, const at::Tensor& boxes, const at::Tensor& mask,
                                   const CudaTapTables& tab, int64_t in_h, int64_t in_w) {
  const int64_t B = grad.size(0), C = grad.size(1), h = grad.size(2);
  at::Tensor gx = at::empty({B, C, in_h, in_w}, grad.options());
  if (gx.numel() == 0) return gx;
  if (grad.numel() == 0) return gx.zero_();
  at::Tensor colsum = at::empty({B, C, h, in_w}, grad.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "aligned_crop_backward_cuda", [&] {
    using T = scalar_t;
    const int64_t* idx = tab.idx.data_ptr<int64_t>();
    const T* wts = tab.wts.data_ptr<T>();
    crop_backward_cols_kernel<T><<<blocks_for(colsum.numel()), kThreads, 0, stream>>>(
        tab.layout, idx, wts, grad.data_ptr<T>(), boxes.data_ptr<T>(), colsum.data_ptr<T>(), C, in_w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    crop_backward_rows_kernel<T><<<blocks_for(gx.numel()), kThreads, 0, stream>>>(
        tab.layout, idx, wts, colsum.data_ptr<T>(), boxes.data_ptr<T>(), mask.defined() ? mask.data_ptr<T>() : nullptr,
        gx.data_ptr<T>(), C, in_h, in_w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return gx;
}

at::Tensor aligned_crop_cuda(const at::Tensor& x, const at::Tensor& boxes, int64_t out_h, int64_t out_w,
                             const c10::optional<at::Tensor>& mask) {
  check_crop_forward(x, boxes, out_h, out_w, mask);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous(), bc = boxes.contiguous();
  const at::Tensor mc = mask.has_value() ? mask->contiguous() : at::Tensor();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, C, out_h, out_w}, x.options());
  if (out.numel() == 0) return out;
  const CudaTapTables tab = make_tap_tables_cuda(bc, H, W, out_h, out_w);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aligned_crop_cuda", [&] {
    using T = scalar_t;
    crop_forward_kernel<T><<<blocks_for(B * out_h * out_w), kThreads, 0, current_stream()>>>(
        tab.layout, tab.idx.data_ptr<int64_t>(), tab.wts.data_ptr<T>(), xc.data_ptr<T>(),
        mc.defined() ? mc.data_ptr<T>() : nullptr, out.data_ptr<T>(), C, H, W);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor aligned_crop_backward_cuda(const at::Tensor& grad_out, const at::Tensor& boxes,
                                      const c10::optional<at::Tensor>& mask, int64_t in_h, int64_t in_w) {
  check_crop_backward(grad_out, boxes, mask, in_h, in_w);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  const at::Tensor g = grad_out.contiguous(), bc = boxes.contiguous();
  const CudaTapTables tab = make_tap_tables_cuda(bc, in_h, in_w, g.size(2), g.size(3));
  return crop_backward_cuda_impl(g, bc, mask.has_value() ? mask->contiguous() : at::Tensor(), tab, in_h, in_w);
}

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("aligned_crop", &aligned_crop_cuda);
  m.impl("_aligned_crop_backward", &aligned_crop_backward_cuda);
}

}  // namespace sgfast
