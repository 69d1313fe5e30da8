// focus_distance / focus_reward on the CPU (paper Eq. 13-15).
//
//   L = ||Z_G * (Z_I - Z_C)||_F^2 / (||Z_G||_F + 1e-8),   Z = aligned_crop(., box, size)
//
// Bilinear sampling is linear, so Z_I - Z_C = crop(I - C): each output row blends I - C over the
// two input rows it reads and is reduced on the spot; no crop is materialised. Per (image, output
// row) partial sums go to a buffer and are added per image in row order, so the result does not
// depend on the thread count. The backward materialises only the crop-sized gradient
// dL/dZ_C = -2 Z_G^2 (Z_I - Z_C) / (||Z_G|| + 1e-8) and hands it to the crop backward.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>

#include "cpu/huge_pages.h"
#include "kernels/crop.h"

namespace sgfast {

template <typename T>
void crop_backward_planes(const T* grad, const T* boxes, const T* mask, T* gx, int64_t B, int64_t C, int64_t H,
                          int64_t W, int64_t h, int64_t w);  // csrc/cpu/crop.cpp

namespace {

constexpr double kEps = 1e-8;

struct Dims {
  int64_t B, C, H, W, h, w;
};

// Per-image tap tables (built once, shared by every row task).
template <typename T>
struct Tables {
  std::vector<AxisTable<T>> rows, cols;
  Tables(const T* boxes, const Dims& d) {
    rows.reserve(d.B);
    cols.reserve(d.B);
    for (int64_t b = 0; b < d.B; ++b) {
      const T* box = boxes + 4 * b;
      cols.emplace_back(box_axis(box, 1), d.w, d.W);
      rows.emplace_back(box_axis(box, 0), d.h, d.H);
    }
  }
};

// Crop of the single-channel gbp map on output row i of image b -> g[0..w).
template <typename T>
void gbp_row(const T* G, const AxisTable<T>& rows, const AxisTable<T>& cols, int64_t i, const Dims& d, T* buf,
             T* g) {
  const AxisTap<T> ty = rows.tap(i);
  const T* r0 = G + ty.i0 * d.W;
  const T* r1 = G + ty.i1 * d.W;
  for (int64_t q = cols.lo; q <= cols.hi; ++q) buf[q] = ty.w0 * r0[q] + ty.w1 * r1[q];
  for (int64_t j = 0; j < d.w; ++j) g[j] = cols.w0[j] * buf[cols.i0[j]] + cols.w1[j] * buf[cols.i1[j]];
}

// Crop of (I - C) for one channel plane on output row i -> dz[0..w).
template <typename T>
void diff_row(const T* I, const T* Cv, const AxisTable<T>& rows, const AxisTable<T>& cols, int64_t i,
              const Dims& d, T* buf, T* dz) {
  const AxisTap<T> ty = rows.tap(i);
  const T *a0 = I + ty.i0 * d.W, *a1 = I + ty.i1 * d.W;
  const T *c0 = Cv + ty.i0 * d.W, *c1 = Cv + ty.i1 * d.W;
  for (int64_t q = cols.lo; q <= cols.hi; ++q) buf[q] = ty.w0 * (a0[q] - c0[q]) + ty.w1 * (a1[q] - c1[q]);
  for (int64_t j = 0; j < d.w; ++j) dz[j] = cols.w0[j] * buf[cols.i0[j]] + cols.w1[j] * buf[cols.i1[j]];
}

// True when the box reads no input pixel on this row (all of its taps fall outside the image).
template <typename T>
bool row_empty(const AxisTable<T>& rows, const AxisTable<T>& cols, int64_t i) {
  return cols.hi < cols.lo || (rows.w0[i] == T(0) && rows.w1[i] == T(0));
}

// Per image: sum of Z_G^2 and of Z_G^2 * sum_c (crop(I - C0)^2 [- crop(I - C1)^2]).
// n_canvas = 0: only the norm of Z_G; 1: focus_distance; 2: focus_reward. -> part [B, h, 2].
template <typename T>
void row_partials(const T* I, const T* C0, const T* C1, const T* G, const Tables<T>& tab, const Dims& d,
                  int n_canvas, double* part) {
  at::parallel_for(0, d.B * d.h, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> buf(d.W), g(d.w), dz(d.w);
    std::vector<double> acc(d.w);
    for (int64_t bi = begin; bi < end; ++bi) {
      const int64_t b = bi / d.h, i = bi % d.h;
      const AxisTable<T>&rows = tab.rows[b], &cols = tab.cols[b];
      double num = 0, sg = 0;
      if (!row_empty(rows, cols, i)) {
        gbp_row(G + b * d.H * d.W, rows, cols, i, d, buf.data(), g.data());
        for (int64_t j = 0; j < d.w; ++j) sg += double(g[j]) * double(g[j]);
        if (n_canvas > 0) {
          std::fill(acc.begin(), acc.end(), 0.0);
          for (int64_t c = 0; c < d.C; ++c) {
            const int64_t off = (b * d.C + c) * d.H * d.W;
            diff_row(I + off, C0 + off, rows, cols, i, d, buf.data(), dz.data());
            for (int64_t j = 0; j < d.w; ++j) acc[j] += double(dz[j]) * double(dz[j]);
            if (n_canvas == 2) {
              diff_row(I + off, C1 + off, rows, cols, i, d, buf.data(), dz.data());
              for (int64_t j = 0; j < d.w; ++j) acc[j] -= double(dz[j]) * double(dz[j]);
            }
          }
          for (int64_t j = 0; j < d.w; ++j) num += double(g[j]) * double(g[j]) * acc[j];
        }
      }
      part[2 * bi] = num;
      part[2 * bi + 1] = sg;
    }
  });
}

// Adds the per-row partials of each image in row order -> (num, ||Z_G|| + eps) per image.
void reduce_partials(const std::vector<double>& part, const Dims& d, std::vector<double>& num,
                     std::vector<double>& den) {
  num.assign(d.B, 0.0);
  den.assign(d.B, 0.0);
  for (int64_t b = 0; b < d.B; ++b) {
    double n = 0, s = 0;
    for (int64_t i = 0; i < d.h; ++i) {
      n += part[2 * (b * d.h + i)];
      s += part[2 * (b * d.h + i) + 1];
    }
    num[b] = n;
    den[b] = std::sqrt(s) + kEps;
  }
}

Dims dims_of(const at::Tensor& target, int64_t out_h, int64_t out_w) {
  return Dims{target.size(0), target.size(1), target.size(2), target.size(3), out_h, out_w};
}

// Forward of both ops: n_canvas = 1 (distance) or 2 (reward).
at::Tensor focus_forward(const at::Tensor& target, const at::Tensor& canvas0, const at::Tensor* canvas1,
                         const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  const Dims d = dims_of(target, out_h, out_w);
  check_boxes_finite_cpu(boxes);
  at::Tensor out = at::empty({d.B}, target.options());
  if (d.B == 0) return out;
  const at::Tensor I = target.contiguous(), C0 = canvas0.contiguous(), G = gbp.contiguous(), bx = boxes.contiguous();
  const at::Tensor C1 = canvas1 ? canvas1->contiguous() : C0;
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "focus_forward_cpu", [&] {
    const Tables<scalar_t> tab(bx.data_ptr<scalar_t>(), d);
    std::vector<double> part(2 * d.B * d.h), num, den;
    row_partials<scalar_t>(I.data_ptr<scalar_t>(), C0.data_ptr<scalar_t>(), C1.data_ptr<scalar_t>(),
                           G.data_ptr<scalar_t>(), tab, d, canvas1 ? 2 : 1, part.data());
    reduce_partials(part, d, num, den);
    scalar_t* o = out.data_ptr<scalar_t>();
    for (int64_t b = 0; b < d.B; ++b) o[b] = scalar_t(num[b] / den[b]);
  });
  return out;
}

// Backward of both ops: dL/dC_k for each canvas k (sign -1 for distance / reward's C0, +1 for C1).
std::vector<at::Tensor> focus_backward(const at::Tensor& grad_out, const at::Tensor& target,
                                       const std::vector<at::Tensor>& canvases, const at::Tensor& gbp,
                                       const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  const Dims d = dims_of(target, out_h, out_w);
  SGFAST_CHECK_ARG(grad_out.dim() == 1 && grad_out.size(0) == d.B, "grad_out", "expected shape [", d.B, "], got ",
                   grad_out.sizes());
  SGFAST_CHECK_ARG(grad_out.scalar_type() == target.scalar_type(), "grad_out", "expected dtype ",
                   target.scalar_type(), ", got ", grad_out.scalar_type());
  check_same_device(grad_out, target, "grad_out");
  std::vector<at::Tensor> grads;
  for (size_t k = 0; k < canvases.size(); ++k) grads.push_back(at::empty_like(target, at::MemoryFormat::Contiguous));
  if (target.numel() == 0) return grads;
  for (at::Tensor& g : grads) advise_huge_pages(g.data_ptr(), g.nbytes());
  const at::Tensor I = target.contiguous(), G = gbp.contiguous(), bx = boxes.contiguous(), go = grad_out.contiguous();
  AT_DISPATCH_FLOATING_TYPES(target.scalar_type(), "focus_backward_cpu", [&] {
    using T = scalar_t;
    const Tables<T> tab(bx.data_ptr<T>(), d);
    std::vector<double> part(2 * d.B * d.h), num, den;
    row_partials<T>(nullptr, nullptr, nullptr, G.data_ptr<T>(), tab, d, 0, part.data());
    reduce_partials(part, d, num, den);
    const T* gop = go.data_ptr<T>();
    for (size_t k = 0; k < canvases.size(); ++k) {
      const at::Tensor Ck = canvases[k].contiguous();
      // dL_k/dZ_C = sign * 2 Z_G^2 (Z_I - Z_C) / den * grad_out, sign = -1 for L(C0), +1 for -L(C1).
      const double sign = k == 0 ? -2.0 : 2.0;
      at::Tensor gz = at::empty({d.B, d.C, d.h, d.w}, target.options());
      T* gzp = gz.data_ptr<T>();
      const T *Ip = I.data_ptr<T>(), *Cp = Ck.data_ptr<T>(), *Gp = G.data_ptr<T>();
      at::parallel_for(0, d.B * d.h, 1, [&](int64_t begin, int64_t end) {
        std::vector<T> buf(d.W), g(d.w), dz(d.w);
        for (int64_t bi = begin; bi < end; ++bi) {
          const int64_t b = bi / d.h, i = bi % d.h;
          const AxisTable<T>&rows = tab.rows[b], &cols = tab.cols[b];
          const bool empty = row_empty(rows, cols, i);
          if (!empty) gbp_row(Gp + b * d.H * d.W, rows, cols, i, d, buf.data(), g.data());
          const T coef = T(sign * double(gop[b]) / den[b]);
          for (int64_t c = 0; c < d.C; ++c) {
            T* o = gzp + ((b * d.C + c) * d.h + i) * d.w;
            if (empty) {
              std::fill(o, o + d.w, T(0));
              continue;
            }
            const int64_t off = (b * d.C + c) * d.H * d.W;
            diff_row(Ip + off, Cp + off, rows, cols, i, d, buf.data(), dz.data());
            for (int64_t j = 0; j < d.w; ++j) o[j] = coef * g[j] * g[j] * dz[j];
          }
        }
      });
      crop_backward_planes<T>(gzp, bx.data_ptr<T>(), nullptr, grads[k].data_ptr<T>(), d.B, d.C, d.H, d.W, d.h,
                              d.w);
    }
  });
  return grads;
}

}  // namespace

at::Tensor focus_distance_cpu(const at::Tensor& target, const at::Tensor& canvas, const at::Tensor& gbp,
                              const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  return focus_forward(target, canvas, nullptr, gbp, boxes, out_h, out_w);
}

at::Tensor focus_reward_cpu(const at::Tensor& target, const at::Tensor& canvas0, const at::Tensor& canvas1,
                            const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h, int64_t out_w) {
  check_focus(target, canvas0, "canvas0", &canvas1, gbp, boxes, out_h, out_w);
  return focus_forward(target, canvas0, &canvas1, gbp, boxes, out_h, out_w);
}

at::Tensor focus_distance_backward_cpu(const at::Tensor& grad_out, const at::Tensor& target,
                                       const at::Tensor& canvas, const at::Tensor& gbp, const at::Tensor& boxes,
                                       int64_t out_h, int64_t out_w) {
  check_focus(target, canvas, "canvas", nullptr, gbp, boxes, out_h, out_w);
  return focus_backward(grad_out, target, {canvas}, gbp, boxes, out_h, out_w)[0];
}

std::tuple<at::Tensor, at::Tensor> focus_reward_backward_cpu(const at::Tensor& grad_out, const at::Tensor& target,
                                                             const at::Tensor& canvas0, const at::Tensor& canvas1,
                                                             const at::Tensor& gbp, const at::Tensor& boxes,
                                                             int64_t out_h, int64_t out_w) {
  check_focus(target, canvas0, "canvas0", &canvas1, gbp, boxes, out_h, out_w);
  auto g = focus_backward(grad_out, target, {canvas0, canvas1}, gbp, boxes, out_h, out_w);
  return {g[0], g[1]};
}

TORCH_LIBRARY_IMPL(sgfast, CPU, m) {
  m.impl("focus_distance", &focus_distance_cpu);
  m.impl("_focus_distance_backward", &focus_distance_backward_cpu);
  m.impl("focus_reward", &focus_reward_cpu);
  m.impl("_focus_reward_backward", &focus_reward_backward_cpu);
}

}  // namespace sgfast
