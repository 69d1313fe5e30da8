// focus_distance / focus_reward on CUDA (paper Eq. 13-15).
//
// The tap tables of the batch first (crop.cu: make_tap_tables_cuda; positions in double, as the CPU).
// Forward: a grid of (blocks per image, images) (kernels/crop.h: focus_grid; images beyond grid.y's
// 65535 are looped over); each thread walks output pixels of its image, samples Z_G and crop(I - C)
// on the fly (focus_pixel: the CPU's arithmetic in T, squares and sums in double; no crop is
// materialised), and the block reduces its double sums with a fixed shared-memory tree into
// per-block partials; a second kernel adds each image's partials in order. No atomics, so the result
// is bitwise reproducible.
// Backward: the same partial sums give ||Z_G|| + eps per image (double); a kernel writes the
// crop-sized gradient dL/dZ_C = -2 Z_G^2 (Z_I - Z_C) / (||Z_G|| + eps) * grad_out (focus_grad_pixel),
// and the deterministic gather backward of aligned_crop (crop.cu) maps it back to the canvas.
#include <torch/library.h>

#include "cuda/crop_tables.cuh"
#include "cuda/cuda_utils.cuh"
#include "kernels/crop.h"

namespace sgfast {

namespace {

constexpr double kEps = 1e-8;

struct Dims {
  int64_t B, C, H, W, h, w;
};

// NC 0: ||Z_G||^2 only; 1: focus_distance; 2: focus_reward. part: [B, nblk, 2] (num, ||Z_G||^2).
template <typename T, int NC>
__global__ void __launch_bounds__(kThreads)
    focus_partials_kernel(TapLayout L, const int64_t* __restrict__ idx, const T* __restrict__ wts,
                          const T* __restrict__ I, const T* __restrict__ C0, const T* __restrict__ C1,
                          const T* __restrict__ G, double* __restrict__ part, Dims d) {
  __shared__ double s_num[kThreads];
  __shared__ double s_sg[kThreads];
  const TapTables<T> tab(L, idx, wts);
  const int64_t n = d.h * d.w;
  for (int64_t b = blockIdx.y; b < d.B; b += gridDim.y) {
    double num = 0.0, sg = 0.0;
    for (int64_t pix = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; pix < n;
         pix += (int64_t)blockDim.x * gridDim.x) {
      const FocusSums s = focus_pixel(tab, I, C0, C1, G, b, pix / d.w, pix % d.w, d.C, d.H, d.W, NC);
      num += s.num;
      sg += s.sg;
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
      double* p = part + 2 * (b * gridDim.x + blockIdx.x);
      p[0] = s_num[0];
      p[1] = s_sg[0];
    }
    __syncthreads();  // the next image reuses s_num / s_sg
  }
}

// Adds each image's partials in block order: den[b] = ||Z_G|| + eps (double) and, when out is
// given, out[b] = L = num / den.
template <typename T>
__global__ void focus_finish_kernel(const double* __restrict__ part, double* __restrict__ den, T* __restrict__ out,
                                    int64_t B, int64_t nblk) {
  SGFAST_KERNEL_LOOP(b, B) {
    double num = 0.0, sg = 0.0;
    for (int64_t k = 0; k < nblk; ++k) {
      num += part[2 * (b * nblk + k)];
      sg += part[2 * (b * nblk + k) + 1];
    }
    const double dd = sqrt(sg) + kEps;
    den[b] = dd;
    if (out != nullptr) out[b] = T(num / dd);
  }
}

// gz[b, c, i, j] = sign * Z_G^2 crop(I - C)_c / den_b * grad_out_b, sign = -2 or +2.
template <typename T>
__global__ void focus_grad_kernel(TapLayout L, const int64_t* __restrict__ idx, const T* __restrict__ wts,
                                  const T* __restrict__ I, const T* __restrict__ Cv, const T* __restrict__ G,
                                  const double* __restrict__ den, const T* __restrict__ grad_out, double sign,
                                  T* __restrict__ gz, Dims d) {
  const TapTables<T> tab(L, idx, wts);
  SGFAST_KERNEL_LOOP(e, d.B * d.h * d.w) {
    const int64_t j = e % d.w, i = (e / d.w) % d.h, b = e / (d.w * d.h);
    focus_grad_pixel(tab, I, Cv, G, den, grad_out, sign, gz, b, i, j, d.C, d.H, d.W);
  }
}

// n_canvas 0: den only; 1: focus_distance; 2: focus_reward. Returns (den [B] double, L [B] or undefined).
std::pair<at::Tensor, at::Tensor> focus_reduce(int n_canvas, const at::Tensor& I, const at::Tensor& C0,
                                               const at::Tensor& C1, const at::Tensor& G, const CudaTapTables& tab,
                                               const Dims& d) {
  at::Tensor den = at::empty({d.B}, G.options().dtype(at::kDouble));
  at::Tensor out = n_canvas > 0 ? at::empty({d.B}, G.options()) : at::Tensor();
  if (d.B == 0) return {den, out};
  const Grid grid = focus_grid(d.B, d.h, d.w);
  at::Tensor part = at::empty({d.B, grid.x, 2}, G.options().dtype(at::kDouble));
  const dim3 blocks = to_dim3(grid, "focus_partials_kernel");
  const cudaStream_t stream = current_stream();
  AT_DISPATCH_FLOATING_TYPES(G.scalar_type(), "focus_reduce_cuda", [&] {
    using T = scalar_t;
    const int64_t* idx = tab.idx.data_ptr<int64_t>();
    const T* wts = tab.wts.data_ptr<T>();
    const T* Ip = I.defined() ? I.data_ptr<T>() : nullptr;
    const T* C0p = C0.defined() ? C0.data_ptr<T>() : nullptr;
    const T* C1p = C1.defined() ? C1.data_ptr<T>() : nullptr;
    double* pp = part.data_ptr<double>();
    if (n_canvas == 0) {
      focus_partials_kernel<T, 0><<<blocks, kThreads, 0, stream>>>(tab.layout, idx, wts, Ip, C0p, C1p, G.data_ptr<T>(),
                                                                   pp, d);
    } else if (n_canvas == 1) {
      focus_partials_kernel<T, 1><<<blocks, kThreads, 0, stream>>>(tab.layout, idx, wts, Ip, C0p, C1p, G.data_ptr<T>(),
                                                                   pp, d);
    } else {
      focus_partials_kernel<T, 2><<<blocks, kThreads, 0, stream>>>(tab.layout, idx, wts, Ip, C0p, C1p, G.data_ptr<T>(),
                                                                   pp, d);
    }
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    focus_finish_kernel<T><<<blocks_for(d.B), kThreads, 0, stream>>>(
        pp, den.data_ptr<double>(), out.defined() ? out.data_ptr<T>() : nullptr, d.B, grid.x);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {den, out};
}

Dims dims_of(const at::Tensor& target, int64_t out_h, int64_t out_w) {
  return Dims{target.size(0), target.size(1), target.size(2), target.size(3), out_h, out_w};
}

at::Tensor focus_forward(const at::Tensor& target, const at::Tensor& canvas0, const at::Tensor* canvas1,
                         const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  const c10::cuda::CUDAGuard guard(target.device());
  const Dims d = dims_of(target, out_h, out_w);
  const at::Tensor bx = boxes.contiguous();
  const CudaTapTables tab = make_tap_tables_cuda(bx, d.H, d.W, d.h, d.w);
  return focus_reduce(canvas1 ? 2 : 1, target.contiguous(), canvas0.contiguous(),
                      canvas1 ? canvas1->contiguous() : at::Tensor(), gbp.contiguous(), tab, d)
      .second;
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
  const CudaTapTables tab = make_tap_tables_cuda(bx, d.H, d.W, d.h, d.w);
  const at::Tensor den = focus_reduce(0, at::Tensor(), at::Tensor(), at::Tensor(), G, tab, d).first;
  for (size_t k = 0; k < canvases.size(); ++k) {
    const at::Tensor Ck = canvases[k].contiguous();
    at::Tensor gz = at::empty({d.B, d.C, d.h, d.w}, target.options());
    AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "focus_backward_cuda", [&] {
      using T = scalar_t;
      focus_grad_kernel<T><<<blocks_for(d.B * d.h * d.w), kThreads, 0, current_stream()>>>(
          tab.layout, tab.idx.data_ptr<int64_t>(), tab.wts.data_ptr<T>(), I.data_ptr<T>(), Ck.data_ptr<T>(),
          G.data_ptr<T>(), den.data_ptr<double>(), go.data_ptr<T>(), k == 0 ? -2.0 : 2.0, gz.data_ptr<T>(), d);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
    grads.push_back(crop_backward_cuda_impl(gz, bx, at::Tensor(), tab, d.H, d.W));
  }
  return grads;
}

}  // namespace

at::Tensor focus_distance_cuda(const at::Tensor& target, const at::Tensor& canvas, const at::Tensor& gbp,
                               const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  return focus_forward(target, canvas, nullptr, gbp, boxes, out_h, out_w);
}

at::Tensor focus_reward_cuda(const at::Tensor& target, const at::Tensor& canvas0, const at::Tensor& canvas1,
                             const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas0, "canvas0", &canvas1, gbp, boxes, out_h, out_w);
  return focus_forward(target, canvas0, &canvas1, gbp, boxes, out_h, out_w);
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
