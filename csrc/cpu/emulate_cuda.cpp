// CPU twins of the CUDA kernels of aligned_crop and focus_distance / focus_reward, for tests: they
// run the CUDA kernels' per-element functions (kernels/crop.h) over the CUDA launch's grid and in
// its reduction order, so a CPU-only build checks what the device code computes (positions in
// double, non-finite inputs, image loops beyond grid.y's limit) against the CPU kernels
// (tests/test_cuda_twins.py). Also the grids the CUDA launchers would use. Not part of the public
// API: private op names (leading underscore), no autograd.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cmath>
#include <string>
#include <vector>

#include "kernels/common.h"
#include "kernels/composite.h"
#include "kernels/crop.h"
#include "kernels/rasterize.h"

namespace sgfast {
namespace {

template <typename T>
struct HostTables {
  TapLayout layout;
  std::vector<int64_t> idx;
  std::vector<T> wts;
  HostTables(const T* boxes, int64_t B, int64_t H, int64_t W, int64_t h, int64_t w)
      : layout{B, h, w}, idx(layout.idx_size()), wts(layout.wts_size()) {
    // The CUDA table kernel: one thread per item (image, axis).
    for (int64_t item = 0; item < 2 * B; ++item) fill_tap_tables<T>(layout, boxes, H, W, item, idx.data(), wts.data());
  }
  TapTables<T> view() const { return TapTables<T>(layout, idx.data(), wts.data()); }
};

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

at::Tensor contiguous_or_undefined(const c10::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() ? t->contiguous() : at::Tensor();
}

at::Tensor twin_aligned_crop(const at::Tensor& x_in, const at::Tensor& boxes_in, int64_t out_h, int64_t out_w,
                             const c10::optional<at::Tensor>& mask_in) {
  check_crop_forward(x_in, boxes_in, out_h, out_w, mask_in);
  const at::Tensor x = x_in.contiguous(), boxes = boxes_in.contiguous(), mask = contiguous_or_undefined(mask_in);
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::full({B, C, out_h, out_w}, std::nan(""), x.options());  // NaN: catches unwritten outputs
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "twin_aligned_crop", [&] {
    using T = scalar_t;
    const HostTables<T> tab(boxes.data_ptr<T>(), B, H, W, out_h, out_w);
    const TapTables<T> t = tab.view();
    for (int64_t e = 0; e < B * out_h * out_w; ++e) {
      const int64_t j = e % out_w, i = (e / out_w) % out_h, b = e / (out_w * out_h);
      crop_forward_pixel(t, x.data_ptr<T>(), opt_ptr<T>(mask), out.data_ptr<T>(), b, i, j, C, H, W);
    }
  });
  return out;
}

template <typename T>
void crop_backward_twin(const T* grad, const T* boxes, const T* mask, const TapTables<T>& t, T* gx, int64_t B,
                        int64_t C, int64_t H, int64_t W) {
  const int64_t h = t.h, w = t.w;
  std::vector<T> colsum(B * C * h * W);
  for (int64_t e = 0; e < B * C * h * W; ++e) {
    const int64_t q = e % W, row = e / W, b = row / (C * h);
    colsum[e] = crop_backward_col(t, boxes + 4 * b, grad + row * w, b, q, W);
  }
  for (int64_t e = 0; e < B * C * H * W; ++e) {
    const int64_t q = e % W, p = (e / W) % H, bc = e / (W * H), b = bc / C;
    gx[e] = crop_backward_row(t, boxes + 4 * b, colsum.data() + bc * h * W, mask, b, p, q, H, W);
  }
}

at::Tensor twin_aligned_crop_backward(const at::Tensor& grad_in, const at::Tensor& boxes_in,
                                      const c10::optional<at::Tensor>& mask_in, int64_t in_h, int64_t in_w) {
  check_crop_backward(grad_in, boxes_in, mask_in, in_h, in_w);
  const at::Tensor g = grad_in.contiguous(), boxes = boxes_in.contiguous(), mask = contiguous_or_undefined(mask_in);
  const int64_t B = g.size(0), C = g.size(1), h = g.size(2), w = g.size(3);
  at::Tensor gx = at::full({B, C, in_h, in_w}, std::nan(""), g.options());
  AT_DISPATCH_FLOATING_TYPES(g.scalar_type(), "twin_aligned_crop_backward", [&] {
    using T = scalar_t;
    const HostTables<T> tab(boxes.data_ptr<T>(), B, in_h, in_w, h, w);
    crop_backward_twin<T>(g.data_ptr<T>(), boxes.data_ptr<T>(), opt_ptr<T>(mask), tab.view(), gx.data_ptr<T>(), B, C,
                          in_h, in_w);
  });
  return gx;
}

// focus_partials_kernel + focus_finish_kernel: the grid of focus_grid, kThreads threads per block,
// the per-thread sums, the block's shared-memory tree and the blocks in order, as on the device.
template <typename T>
void focus_reduce_twin(const TapTables<T>& t, const T* I, const T* C0, const T* C1, const T* G, int64_t B, int64_t C,
                       int64_t H, int64_t W, int n_canvas, std::vector<double>& den, T* out) {
  const int64_t h = t.h, w = t.w, n = h * w;
  const Grid grid = focus_grid(B, h, w);
  TORCH_CHECK(grid_fits(grid), "focus grid out of the launch limits");
  std::vector<double> part(2 * B * grid.x), s_num(kThreads), s_sg(kThreads);
  for (int64_t by = 0; by < grid.y; ++by) {
    for (int64_t b = by; b < B; b += grid.y) {  // the kernel's image loop
      for (int64_t bx = 0; bx < grid.x; ++bx) {
        for (int64_t tid = 0; tid < kThreads; ++tid) {
          double num = 0.0, sg = 0.0;
          for (int64_t pix = bx * kThreads + tid; pix < n; pix += kThreads * grid.x) {
            const FocusSums s = focus_pixel(t, I, C0, C1, G, b, pix / w, pix % w, C, H, W, n_canvas);
            num += s.num;
            sg += s.sg;
          }
          s_num[tid] = num;
          s_sg[tid] = sg;
        }
        for (int64_t stride = kThreads / 2; stride > 0; stride /= 2) {
          for (int64_t tid = 0; tid < stride; ++tid) {
            s_num[tid] += s_num[tid + stride];
            s_sg[tid] += s_sg[tid + stride];
          }
        }
        part[2 * (b * grid.x + bx)] = s_num[0];
        part[2 * (b * grid.x + bx) + 1] = s_sg[0];
      }
    }
  }
  den.assign(B, 0.0);
  for (int64_t b = 0; b < B; ++b) {
    double num = 0.0, sg = 0.0;
    for (int64_t k = 0; k < grid.x; ++k) {
      num += part[2 * (b * grid.x + k)];
      sg += part[2 * (b * grid.x + k) + 1];
    }
    den[b] = std::sqrt(sg) + 1e-8;
    if (out != nullptr) out[b] = T(num / den[b]);
  }
}

at::Tensor twin_focus(const at::Tensor& target, const at::Tensor& canvas0, const c10::optional<at::Tensor>& canvas1,
                      const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  const bool reward = canvas1.has_value() && canvas1->defined();
  check_focus(target, canvas0, "canvas0", reward ? &*canvas1 : nullptr, gbp, boxes, out_h, out_w);
  const at::Tensor I = target.contiguous(), C0 = canvas0.contiguous(), G = gbp.contiguous(), bx = boxes.contiguous();
  const at::Tensor C1 = reward ? canvas1->contiguous() : at::Tensor();
  const int64_t B = I.size(0), C = I.size(1), H = I.size(2), W = I.size(3);
  at::Tensor out = at::full({B}, std::nan(""), I.options());
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "twin_focus", [&] {
    using T = scalar_t;
    const HostTables<T> tab(bx.data_ptr<T>(), B, H, W, out_h, out_w);
    std::vector<double> den;
    focus_reduce_twin<T>(tab.view(), I.data_ptr<T>(), C0.data_ptr<T>(), opt_ptr<T>(C1), G.data_ptr<T>(), B, C, H, W,
                         reward ? 2 : 1, den, out.data_ptr<T>());
  });
  return out;
}

// The gradient of one canvas: sign -2 (focus_distance, the reward's canvas0) or +2 (its canvas1).
at::Tensor twin_focus_backward(const at::Tensor& grad_out, const at::Tensor& target, const at::Tensor& canvas,
                               const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w,
                               double sign) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  const at::Tensor I = target.contiguous(), Cv = canvas.contiguous(), G = gbp.contiguous(), bx = boxes.contiguous();
  const at::Tensor go = grad_out.contiguous();
  const int64_t B = I.size(0), C = I.size(1), H = I.size(2), W = I.size(3);
  at::Tensor gx = at::full({B, C, H, W}, std::nan(""), I.options());
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "twin_focus_backward", [&] {
    using T = scalar_t;
    const HostTables<T> tab(bx.data_ptr<T>(), B, H, W, out_h, out_w);
    const TapTables<T> t = tab.view();
    std::vector<double> den;
    focus_reduce_twin<T>(t, nullptr, nullptr, nullptr, G.data_ptr<T>(), B, C, H, W, 0, den, nullptr);
    std::vector<T> gz(B * C * out_h * out_w);
    for (int64_t e = 0; e < B * out_h * out_w; ++e) {
      const int64_t j = e % out_w, i = (e / out_w) % out_h, b = e / (out_w * out_h);
      focus_grad_pixel(t, I.data_ptr<T>(), Cv.data_ptr<T>(), G.data_ptr<T>(), den.data(), go.data_ptr<T>(), sign,
                       gz.data(), b, i, j, C, H, W);
    }
    crop_backward_twin<T>(gz.data(), bx.data_ptr<T>(), nullptr, t, gx.data_ptr<T>(), B, C, H, W);
  });
  return gx;
}

// The grid (x, y) a CUDA launcher uses for `kernel` at the given sizes, and whether it is within the
// launch limits (1 / 0). "naive_images" is the grid (blocks, images) without the image loop, for
// the test that the limit check refuses it.
std::vector<int64_t> cuda_launch_grid(c10::string_view kernel_sv, at::IntArrayRef sizes) {
  const std::string kernel(kernel_sv.data(), kernel_sv.size());
  auto need = [&](size_t n) {
    TORCH_CHECK(sizes.size() == n, "_cuda_launch_grid: '", kernel, "' takes ", n, " sizes, got ", sizes.size());
  };
  Grid g{0, 0};
  if (kernel == "focus_partials") {  // B, h, w
    need(3);
    g = focus_grid(sizes[0], sizes[1], sizes[2]);
  } else if (kernel == "composite_backward") {  // B, H, W
    need(3);
    g = composite::backward_grid(sizes[0], sizes[1] * sizes[2]);
  } else if (kernel == "rasterize_ltp") {  // N, size
    need(2);
    g = raster::ltp_grid(sizes[0], sizes[1]);
  } else if (kernel == "stride") {  // n items of a 1-d grid-stride loop
    need(1);
    g = Grid{stride_blocks(sizes[0]), 1};
  } else if (kernel == "naive_images") {  // blocks per image, images
    need(2);
    g = Grid{sizes[0], sizes[1]};
  } else {
    TORCH_CHECK(false, "_cuda_launch_grid: unknown kernel '", kernel, "'");
  }
  return {g.x, g.y, grid_fits(g) ? 1 : 0};
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(sgfast, m) {
  m.def("_cuda_twin_aligned_crop(Tensor x, Tensor boxes, int out_h, int out_w, Tensor? mask) -> Tensor");
  m.def("_cuda_twin_aligned_crop_backward(Tensor grad_out, Tensor boxes, Tensor? mask, int in_h, int in_w) -> Tensor");
  m.def("_cuda_twin_focus(Tensor target, Tensor canvas0, Tensor? canvas1, Tensor gbp, Tensor boxes, int out_h, "
        "int out_w) -> Tensor");
  m.def("_cuda_twin_focus_backward(Tensor grad_out, Tensor target, Tensor canvas, Tensor gbp, Tensor boxes, "
        "int out_h, int out_w, float sign) -> Tensor");
  m.def("_cuda_launch_grid(str kernel, int[] sizes) -> int[]", &cuda_launch_grid);
}

TORCH_LIBRARY_IMPL(sgfast, CPU, m) {
  m.impl("_cuda_twin_aligned_crop", &twin_aligned_crop);
  m.impl("_cuda_twin_aligned_crop_backward", &twin_aligned_crop_backward);
  m.impl("_cuda_twin_focus", &twin_focus);
  m.impl("_cuda_twin_focus_backward", &twin_focus_backward);
}

}  // namespace sgfast
