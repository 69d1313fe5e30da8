// focus_distance / focus_reward on CUDA (paper Eq. 13-15).
//
// Forward: a grid of (blocks_per_image, B) blocks; each thread walks output pixels of its image,
// samples Z_G and crop(I - C) on the fly (no crop is materialised) and the block reduces its sums
// with a fixed shared-memory tree into per-block partials; a second kernel adds each image's
// partials in order. No atomics, so the result is bitwise reproducible.
// Backward: the same partial sums give ||Z_G|| + eps per image; a kernel writes the crop-sized
// gradient dL/dZ_C = -2 Z_G^2 (Z_I - Z_C) / (||Z_G|| + eps) * grad_out, and the deterministic
// gather backward of aligned_crop (crop.cu) maps it back to the canvas.
#include <torch/library.h>

#include "cuda/cuda_utils.cuh"
#include "kernels/crop.h"

namespace sgfast {

at::Tensor crop_backward_cuda_impl(const at::Tensor& grad, const at::Tensor& boxes, const at::Tensor& mask,
                                   int64_t in_h, int64_t in_w);  // crop.cu

namespace {

constexpr double kEps = 1e-8;
constexpr int kMaxBlocksPerImage = 16;

struct Dims {
  int64_t B, C, H, W, h, w;
};

template <typename T>
using acc_t = T;  // float sums for float (tree-reduced, so ~log error growth); double for double

// MODE 0: ||Z_G||^2 only; 1: focus_distance; 2: focus_reward. part: [B, nblk, 2] (num, ||Z_G||^2).
template <typename T, int MODE>
__global__ void focus_partials_kernel(const T* __restrict__ I, const T* __restrict__ C0, const T* __restrict__ C1,
                                      const T* __restrict__ G, const T* __restrict__ boxes, acc_t<T>* part, Dims d) {
  using A = acc_t<T>;
  __shared__ A s_num[kThreads];
  __shared__ A s_sg[kThreads];
  const int64_t b = blockIdx.y;
  const T* box = boxes + 4 * b;
  const int64_t HW = d.H * d.W;
  A num = A(0), sg = A(0);
  for (int64_t pix = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pix < d.h * d.w;
       pix += (int64_t)blockDim.x * gridDim.x) {
    const int64_t j = pix % d.w, i = pix / d.w;
    const AxisTap<T> tx = axis_tap(crop_coord(box[0], box[2], j, d.w, d.W), d.W);
    const AxisTap<T> ty = axis_tap(crop_coord(box[1], box[3], i, d.h, d.H), d.H);
    const A g = bilinear_sample(G + b * HW, d.W, ty, tx);
    const A g2 = g * g;
    sg += g2;
    if (MODE > 0 && g2 != A(0)) {
      A acc = A(0);
      for (int64_t c = 0; c < d.C; ++c) {
        const int64_t off = (b * d.C + c) * HW;
        const A zi = bilinear_sample(I + off, d.W, ty, tx);
        const A d0 = zi - bilinear_sample(C0 + off, d.W, ty, tx);
        acc += d0 * d0;
        if (MODE == 2) {
          const A d1 = zi - bilinear_sample(C1 + off, d.W, ty, tx);
          acc -= d1 * d1;
        }
      }
      num += g2 * acc;
    }
  }
  s_num[threadIdx.x] = num;
  s_sg[threadIdx.x] = sg;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      s_num[threadIdx.x] += s_num[threadIdx.x + stride];
      s_sg[threadIdx.x] += s_sg[threadIdx.x + stride];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    A* p = part + 2 * (b * gridDim.x + blockIdx.x);
    p[0] = s_num[0];
    p[1] = s_sg[0];
  }
}

// Adds each image's partials in block order. want_den: out = ||Z_G|| + eps, else out = L.
template <typename T>
__global__ void focus_finish_kernel(const acc_t<T>* part, T* out, int64_t B, int nblk, bool want_den) {
  SGFAST_KERNEL_LOOP(b, B) {
    acc_t<T> num = 0, sg = 0;
    for (int k = 0; k < nblk; ++k) {
      num += part[2 * (b * nblk + k)];
      sg += part[2 * (b * nblk + k) + 1];
    }
    const acc_t<T> den = sqrt(sg) + acc_t<T>(kEps);
    out[b] = want_den ? T(den) : T(num / den);
  }
}

// gz[b, c, i, j] = sign * 2 Z_G^2 crop(I - C)_c / den_b * grad_out_b.
template <typename T>
__global__ void focus_grad_crop_kernel(const T* __restrict__ I, const T* __restrict__ Cv, const T* __restrict__ G,
                                       const T* __restrict__ boxes, const T* __restrict__ den,
                                       const T* __restrict__ grad_out, T sign, T* __restrict__ gz, Dims d) {
  SGFAST_KERNEL_LOOP(idx, d.B * d.h * d.w) {
    const int64_t j = idx % d.w, i = (idx / d.w) % d.h, b = idx / (d.w * d.h);
    const T* box = boxes + 4 * b;
    const int64_t HW = d.H * d.W;
    const AxisTap<T> tx = axis_tap(crop_coord(box[0], box[2], j, d.w, d.W), d.W);
    const AxisTap<T> ty = axis_tap(crop_coord(box[1], box[3], i, d.h, d.H), d.H);
    const T g = bilinear_sample(G + b * HW, d.W, ty, tx);
    const T coef = sign * T(2) * g * g * grad_out[b] / den[b];
    for (int64_t c = 0; c < d.C; ++c) {
      const int64_t off = (b * d.C + c) * HW;
      const T diff = coef == T(0) ? T(0)
                                  : bilinear_sample(I + off, d.W, ty, tx) - bilinear_sample(Cv + off, d.W, ty, tx);
      gz[((b * d.C + c) * d.h + i) * d.w + j] = coef * diff;
    }
  }
}

int blocks_per_image(const Dims& d) {
  const int64_t n = (d.h * d.w + kThreads * 4 - 1) / (kThreads * 4);
  return int(n < 1 ? 1 : (n > kMaxBlocksPerImage ? kMaxBlocksPerImage : n));
}

// mode 0: den per image; 1: focus_distance; 2: focus_reward.
at::Tensor focus_reduce(int mode, const at::Tensor& I, const at::Tensor& C0, const at::Tensor& C1,
                        const at::Tensor& G, const at::Tensor& boxes, const Dims& d) {
  at::Tensor out = at::empty({d.B}, G.options());
  if (d.B == 0) return out;
  const int nblk = blocks_per_image(d);
  at::Tensor part = at::empty({d.B, nblk, 2}, G.options());
  const dim3 grid(nblk, d.B);
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "focus_reduce_cuda", [&] {
    using T = scalar_t;
    const T* Ip = I.defined() ? I.data_ptr<T>() : nullptr;
    const T* C0p = C0.defined() ? C0.data_ptr<T>() : nullptr;
    const T* C1p = C1.defined() ? C1.data_ptr<T>() : nullptr;
    if (mode == 0) {
      focus_partials_kernel<T, 0><<<grid, kThreads, 0, stream>>>(Ip, C0p, C1p, G.data_ptr<T>(), boxes.data_ptr<T>(),
                                                                 part.data_ptr<T>(), d);
    } else if (mode == 1) {
      focus_partials_kernel<T, 1><<<grid, kThreads, 0, stream>>>(Ip, C0p, C1p, G.data_ptr<T>(), boxes.data_ptr<T>(),
                                                                 part.data_ptr<T>(), d);
    } else {
      focus_partials_kernel<T, 2><<<grid, kThreads, 0, stream>>>(Ip, C0p, C1p, G.data_ptr<T>(), boxes.data_ptr<T>(),
                                                                 part.data_ptr<T>(), d);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    focus_finish_kernel<T><<<blocks_for(d.B), kThreads, 0, stream>>>(part.data_ptr<T>(), out.data_ptr<T>(), d.B,
                                                                      nblk, mode == 0);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

Dims dims_of(const at::Tensor& target, int64_t out_h, int64_t out_w) {
  return Dims{target.size(0), target.size(1), target.size(2), target.size(3), out_h, out_w};
}

std::vector<at::Tensor> focus_backward(const at::Tensor& grad_out, const at::Tensor& target,
                                       const std::vector<at::Tensor>& canvases, const at::Tensor& gbp,
                                       const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  const Dims d = dims_of(target, out_h, out_w);
  SGFAST_CHECK_ARG(grad_out.dim() == 1 && grad_out.size(0) == d.B, "grad_out", "expected shape [", d.B, "], got ",
                   grad_out.sizes());
  SGFAST_CHECK_ARG(grad_out.scalar_type() == target.scalar_type(), "grad_out", "expected dtype ",
                   target.scalar_type(), ", got ", grad_out.scalar_type());
  check_same_device(grad_out, target, "grad_out");
  const c10::cuda::CUDAGuard guard(target.device());
  std::vector<at::Tensor> grads;
  if (target.numel() == 0) {
    for (size_t k = 0; k < canvases.size(); ++k) grads.push_back(at::empty_like(target, at::MemoryFormat::Contiguous));
    return grads;
  }
  const at::Tensor I = target.contiguous(), G = gbp.contiguous(), bx = boxes.contiguous(), go = grad_out.contiguous();
  const at::Tensor den = focus_reduce(0, at::Tensor(), at::Tensor(), at::Tensor(), G, bx, d);
  for (size_t k = 0; k < canvases.size(); ++k) {
    const at::Tensor Ck = canvases[k].contiguous();
    at::Tensor gz = at::empty({d.B, d.C, d.h, d.w}, target.options());
    AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "focus_backward_cuda", [&] {
      using T = scalar_t;
      focus_grad_crop_kernel<T><<<blocks_for(d.B * d.h * d.w), kThreads, 0, current_stream()>>>(
          I.data_ptr<T>(), Ck.data_ptr<T>(), G.data_ptr<T>(), bx.data_ptr<T>(), den.data_ptr<T>(), go.data_ptr<T>(),
          k == 0 ? T(-1) : T(1), gz.data_ptr<T>(), d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    grads.push_back(crop_backward_cuda_impl(gz, bx, at::Tensor(), d.H, d.W));
  }
  return grads;
}

}  // namespace

at::Tensor focus_distance_cuda(const at::Tensor& target, const at::Tensor& canvas, const at::Tensor& gbp,
                               const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  const c10::cuda::CUDAGuard guard(target.device());
  return focus_reduce(1, target.contiguous(), canvas.contiguous(), at::Tensor(), gbp.contiguous(), boxes.contiguous(),
                      dims_of(target, out_h, out_w));
}

at::Tensor focus_reward_cuda(const at::Tensor& target, const at::Tensor& canvas0, const at::Tensor& canvas1,
                             const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas0, "canvas0", &canvas1, gbp, boxes, out_h, out_w);
  const c10::cuda::CUDAGuard guard(target.device());
  return focus_reduce(2, target.contiguous(), canvas0.contiguous(), canvas1.contiguous(), gbp.contiguous(),
                      boxes.contiguous(), dims_of(target, out_h, out_w));
}

at::Tensor focus_distance_backward_cuda(const at::Tensor& grad_out, const at::Tensor& target,
                                        const at::Tensor& canvas, const at::Tensor& gbp, const at::Tensor& boxes,
                                        int64_t out_h, int64_t out_w) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  return focus_backward(grad_out, target, {canvas}, gbp, boxes, out_h, out_w)[0];
}

std::tuple<at::Tensor, at::Tensor> focus_reward_backward_cuda(const at::Tensor& grad_out, const at::Tensor& target,
                                                              const at::Tensor& canvas0, const at::Tensor& canvas1,
                                                              const at::Tensor& gbp, const at::Tensor& boxes,
                                                              int64_t out_h, int64_t out_w) {
  check_focus(target, canvas0, "canvas0", &canvas1, gbp, boxes, out_h, out_w);
  auto g = focus_backward(grad_out, target, {canvas0, canvas1}, gbp, boxes, out_h, out_w);
  return {g[0], g[1]};
}

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("focus_distance", &focus_distance_cuda);
  m.impl("_focus_distance_backward", &focus_distance_backward_cuda);
  m.impl("focus_reward", &focus_reward_cuda);
  m.impl("_focus_reward_backward", &focus_reward_backward_cuda);
}

}  // namespace sgfast
