// aligned_crop on CUDA.
//
// Forward: one thread per output pixel; its four bilinear weights (times the mask) are computed
// once and reused for every channel. Backward: two deterministic GATHER passes, no atomics:
//   1. colsum[b, c, i, q] = sum over output columns j touching input column q of wx_j(q) g[b, c, i, j]
//   2. grad_x[b, c, p, q] = mask[b, p, q] * sum over output rows i touching input row p of wy_i(p) colsum[b, c, i, q]
// The touching ranges come from touch_range (csrc/kernels/crop.h, the same code the CPU backward
// uses), so the result is bitwise reproducible and needs no deterministic-mode fallback.
#include <torch/library.h>

#include "cuda/cuda_utils.cuh"
#include "kernels/crop.h"

namespace sgfast {

namespace {

template <typename T>
__global__ void crop_forward_kernel(const T* __restrict__ x, const T* __restrict__ boxes, const T* __restrict__ mask,
                                    T* __restrict__ out, int64_t B, int64_t C, int64_t H, int64_t W, int64_t h,
                                    int64_t w) {
  SGFAST_KERNEL_LOOP(idx, B * h * w) {
    const int64_t j = idx % w, i = (idx / w) % h, b = idx / (w * h);
    const T* box = boxes + 4 * b;
    const AxisTap<T> tx = axis_tap(crop_coord(box[0], box[2], j, w, W), W);
    const AxisTap<T> ty = axis_tap(crop_coord(box[1], box[3], i, h, H), H);
    // The four taps' weights, mask folded in, shared by all channels.
    const int64_t o00 = ty.i0 * W + tx.i0, o01 = ty.i0 * W + tx.i1, o10 = ty.i1 * W + tx.i0, o11 = ty.i1 * W + tx.i1;
    T w00 = ty.w0 * tx.w0, w01 = ty.w0 * tx.w1, w10 = ty.w1 * tx.w0, w11 = ty.w1 * tx.w1;
    if (mask != nullptr) {
      const T* m = mask + b * H * W;
      w00 = w00 != T(0) ? w00 * m[o00] : T(0);
      w01 = w01 != T(0) ? w01 * m[o01] : T(0);
      w10 = w10 != T(0) ? w10 * m[o10] : T(0);
      w11 = w11 != T(0) ? w11 * m[o11] : T(0);
    }
    for (int64_t c = 0; c < C; ++c) {
      const T* X = x + (b * C + c) * H * W;
      T v = T(0);
      if (w00 != T(0)) v += w00 * X[o00];
      if (w01 != T(0)) v += w01 * X[o01];
      if (w10 != T(0)) v += w10 * X[o10];
      if (w11 != T(0)) v += w11 * X[o11];
      out[((b * C + c) * h + i) * w + j] = v;
    }
  }
}

// Pass 1: gather along the columns. grad [B, C, h, w] -> colsum [B, C, h, W].
template <typename T>
__global__ void crop_backward_cols_kernel(const T* __restrict__ grad, const T* __restrict__ boxes,
                                          T* __restrict__ colsum, int64_t B, int64_t C, int64_t W, int64_t h,
                                          int64_t w) {
  SGFAST_KERNEL_LOOP(idx, B * C * h * W) {
    const int64_t q = idx % W, row = idx / W;  // row = (b * C + c) * h + i
    const int64_t b = row / (C * h);
    const T* box = boxes + 4 * b;
    int64_t lo, hi;
    touch_range(box[0], box[2], q, w, W, lo, hi);
    const T* g = grad + row * w;
    T acc = T(0);
    for (int64_t j = lo; j <= hi; ++j) {
      const T wt = tap_weight_on(axis_tap(crop_coord(box[0], box[2], j, w, W), W), q);
      if (wt != T(0)) acc += wt * g[j];
    }
    colsum[idx] = acc;
  }
}

// Pass 2: gather along the rows, then apply the mask. colsum [B, C, h, W] -> grad_x [B, C, H, W].
template <typename T>
__global__ void crop_backward_rows_kernel(const T* __restrict__ colsum, const T* __restrict__ boxes,
                                          const T* __restrict__ mask, T* __restrict__ gx, int64_t B, int64_t C,
                                          int64_t H, int64_t W, int64_t h) {
  SGFAST_KERNEL_LOOP(idx, B * C * H * W) {
    const int64_t q = idx % W, p = (idx / W) % H, bc = idx / (W * H), b = bc / C;
    const T* box = boxes + 4 * b;
    int64_t lo, hi;
    touch_range(box[1], box[3], p, h, H, lo, hi);
    const T* s = colsum + bc * h * W + q;
    T acc = T(0);
    for (int64_t i = lo; i <= hi; ++i) {
      const T wt = tap_weight_on(axis_tap(crop_coord(box[1], box[3], i, h, H), H), p);
      if (wt != T(0)) acc += wt * s[i * W];
    }
    if (mask != nullptr) acc *= mask[(b * H + p) * W + q];
    gx[idx] = acc;
  }
}

}  // namespace

// grad [B, C, h, w] (contiguous) -> grad_x [B, C, in_h, in_w]. Also used by focus.cu.
at::Tensor crop_backward_cuda_impl(const at::Tensor& grad, const at::Tensor& boxes, const at::Tensor& mask,
                                   int64_t in_h, int64_t in_w) {
  const int64_t B = grad.size(0), C = grad.size(1), h = grad.size(2), w = grad.size(3);
  at::Tensor gx = at::empty({B, C, in_h, in_w}, grad.options());
  if (gx.numel() == 0) return gx;
  if (h == 0 || w == 0) return gx.zero_();
  at::Tensor colsum = at::empty({B, C, h, in_w}, grad.options());
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "aligned_crop_backward_cuda", [&] {
    crop_backward_cols_kernel<scalar_t><<<blocks_for(colsum.numel()), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), boxes.data_ptr<scalar_t>(), colsum.data_ptr<scalar_t>(), B, C, in_w, h, w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    crop_backward_rows_kernel<scalar_t><<<blocks_for(gx.numel()), kThreads, 0, stream>>>(
        colsum.data_ptr<scalar_t>(), boxes.data_ptr<scalar_t>(),
        mask.defined() ? mask.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>(), B, C, in_h, in_w, h);
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
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aligned_crop_cuda", [&] {
    crop_forward_kernel<scalar_t><<<blocks_for(B * out_h * out_w), kThreads, 0, current_stream()>>>(
        xc.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(), mc.defined() ? mc.data_ptr<scalar_t>() : nullptr,
        out.data_ptr<scalar_t>(), B, C, H, W, out_h, out_w);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor aligned_crop_backward_cuda(const at::Tensor& grad_out, const at::Tensor& boxes,
                                      const c10::optional<at::Tensor>& mask, int64_t in_h, int64_t in_w) {
  check_crop_backward(grad_out, boxes, mask, in_h, in_w);
  const c10::cuda::CUDAGuard guard(grad_out.device());
  return crop_backward_cuda_impl(grad_out.contiguous(), boxes.contiguous(),
                                 mask.has_value() ? mask->contiguous() : at::Tensor(), in_h, in_w);
}

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("aligned_crop", &aligned_crop_cuda);
  m.impl("_aligned_crop_backward", &aligned_crop_backward_cuda);
}

}  // namespace sgfast
