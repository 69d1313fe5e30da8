// aligned_crop on the CPU: separable bilinear resampling of an axis-aligned box.
//
// Forward, per output row: interpolate the two input rows it reads (a contiguous, vectorisable
// blend over the touched columns), then pick two columns per output pixel. Backward, per plane:
// gather each gradient row along the columns into a [h_out, W] buffer (through the transposed
// column table), then gather every input row from the output rows that touch it (touch_range,
// shared with the CUDA kernel). Work is split over (image, channel) planes, each done by one thread in a fixed
// order, so results are bitwise deterministic whatever the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "cpu/huge_pages.h"
#include "kernels/crop.h"

namespace sgfast {

namespace {

// out[q] = w0 * r0[q] * m0[q] + w1 * r1[q] * m1[q] for q in [lo, hi] (m = nullptr: no mask).
// Zero-weight rows are not read.
template <typename T>
void blend_rows(T* out, const T* r0, const T* r1, const T* m0, const T* m1, T w0, T w1, int64_t lo, int64_t hi) {
  const bool use0 = w0 != T(0), use1 = w1 != T(0);
  if (m0 == nullptr) {
    if (use0 && use1) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w0 * r0[q] + w1 * r1[q];
    } else if (use0) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w0 * r0[q];
    } else if (use1) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w1 * r1[q];
    } else {
      std::fill(out + lo, out + hi + 1, T(0));
    }
  } else {
    if (use0 && use1) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w0 * (r0[q] * m0[q]) + w1 * (r1[q] * m1[q]);
    } else if (use0) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w0 * (r0[q] * m0[q]);
    } else if (use1) {
      for (int64_t q = lo; q <= hi; ++q) out[q] = w1 * (r1[q] * m1[q]);
    } else {
      std::fill(out + lo, out + hi + 1, T(0));
    }
  }
}

template <typename T>
void crop_forward_impl(const T* x, const T* boxes, const T* mask, T* out, int64_t B, int64_t C, int64_t H,
                       int64_t W, int64_t h, int64_t w) {
  // One task per (image, channel) plane; the tables are O(h + w) and cheap to rebuild per plane.
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> rowbuf(W), colbuf;
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C;
      const T* box = boxes + 4 * b;
      const AxisTable<T> cols{box_axis(box, 1), w, W};
      const AxisTable<T> rows{box_axis(box, 0), h, H};
      const T* X = x + bc * H * W;
      const T* M = mask ? mask + b * H * W : nullptr;
      T* O = out + bc * h * w;
      if (cols.hi < cols.lo || rows.hi < rows.lo) {
        std::fill(O, O + h * w, T(0));
        continue;
      }
      const int64_t n_rows = rows.hi - rows.lo + 1;
      if (n_rows < h) {
        // Fewer input rows are read than output rows are written (the box is magnified): pick
        // columns once per input row read, then blend whole rows (contiguous, vectorisable).
        colbuf.resize(n_rows * w);
        for (int64_t p = rows.lo; p <= rows.hi; ++p) {
          const T* r = X + p * W;
          T* v = colbuf.data() + (p - rows.lo) * w;
          if (M != nullptr) {  // mask the row once (vectorised), then pick columns from it
            const T* m = M + p * W;
            for (int64_t q = cols.lo; q <= cols.hi; ++q) rowbuf[q] = r[q] * m[q];
            r = rowbuf.data();
          }
          for (int64_t j = 0; j < w; ++j) v[j] = cols.w0[j] * r[cols.i0[j]] + cols.w1[j] * r[cols.i1[j]];
        }
        for (int64_t i = 0; i < h; ++i) {
          const AxisTap<T> ty = rows.tap(i);
          const T* v = colbuf.data() - rows.lo * w;
          blend_rows<T>(O + i * w, v + ty.i0 * w, v + ty.i1 * w, nullptr, nullptr, ty.w0, ty.w1, 0, w - 1);
        }
        continue;
      }
      for (int64_t i = 0; i < h; ++i) {
        const AxisTap<T> ty = rows.tap(i);
        T* o = O + i * w;
        if (ty.w0 == T(0) && ty.w1 == T(0)) {
          std::fill(o, o + w, T(0));
          continue;
        }
        blend_rows(rowbuf.data(), X + ty.i0 * W, X + ty.i1 * W, M ? M + ty.i0 * W : nullptr,
                   M ? M + ty.i1 * W : nullptr, ty.w0, ty.w1, cols.lo, cols.hi);
        const T* r = rowbuf.data();
        for (int64_t j = 0; j < w; ++j) o[j] = cols.w0[j] * r[cols.i0[j]] + cols.w1[j] * r[cols.i1[j]];
      }
    }
  });
}

}  // namespace

// grad [B, C, h, w] -> grad_x [B, C, H, W] (times mask when given). Also used by focus.cpp.
template <typename T>
void crop_backward_planes(const T* grad, const T* boxes, const T* mask, T* gx, int64_t B, int64_t C, int64_t H,
                          int64_t W, int64_t h, int64_t w) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> colsum;  // [h, W]: gradient rows gathered along the columns
    std::vector<T> rowsum;  // [rows read, w]: gradient rows summed into the input rows
    for (int64_t bc = begin; bc < end; ++bc) {
      const int64_t b = bc / C;
      const T* box = boxes + 4 * b;
      AxisTable<T> cols{box_axis(box, 1), w, W};
      cols.build_adjoint();
      const AxisTable<T> rows{box_axis(box, 0), h, H};
      const T* G = grad + bc * h * w;
      const T* M = mask ? mask + b * H * W : nullptr;
      T* O = gx + bc * H * W;
      std::fill(O, O + H * W, T(0));
      if (cols.hi < cols.lo || rows.hi < rows.lo) continue;
      const int64_t lo = cols.lo, hi = cols.hi;
      const int64_t n_rows = rows.hi - rows.lo + 1;
      if (n_rows < h) {
        // Magnified box: sum the gradient rows into the input rows they read (whole-row axpys in
        // output-row order), then gather the columns of those rows only.
        rowsum.assign(n_rows * w, T(0));
        T* u = rowsum.data() - rows.lo * w;
        for (int64_t i = 0; i < h; ++i) {
          const AxisTap<T> ty = rows.tap(i);
          const T* g = G + i * w;
          if (ty.w0 != T(0))
            for (int64_t j = 0; j < w; ++j) u[ty.i0 * w + j] += ty.w0 * g[j];
          if (ty.w1 != T(0))
            for (int64_t j = 0; j < w; ++j) u[ty.i1 * w + j] += ty.w1 * g[j];
        }
        const int64_t* start = cols.adj_start.data();
        const int64_t* kk = cols.adj_k.data();
        const T* ww = cols.adj_w.data();
        for (int64_t p = rows.lo; p <= rows.hi; ++p) {
          const T* up = u + p * w;
          T* o = O + p * W;
          for (int64_t q = lo; q <= hi; ++q) {
            T acc = T(0);
            for (int64_t e = start[q - lo]; e < start[q - lo + 1]; ++e) acc += ww[e] * up[kk[e]];
            o[q] = acc;
          }
          if (M != nullptr) {
            const T* m = M + p * W;
            for (int64_t q = lo; q <= hi; ++q) o[q] *= m[q];
          }
        }
        continue;
      }
      colsum.resize(h * W);
      for (int64_t i = 0; i < h; ++i) {
        T* s = colsum.data() + i * W;
        const T* g = G + i * w;
        const int64_t* start = cols.adj_start.data();
        const int64_t* kk = cols.adj_k.data();
        const T* ww = cols.adj_w.data();
        for (int64_t q = lo; q <= hi; ++q) {
          T acc = T(0);
          for (int64_t e = start[q - lo]; e < start[q - lo + 1]; ++e) acc += ww[e] * g[kk[e]];
          s[q] = acc;
        }
      }
      const BoxAxis ya = box_axis(box, 0);
      for (int64_t p = rows.lo; p <= rows.hi; ++p) {
        int64_t ilo, ihi;
        touch_range(ya.start, ya.extent, p, h, H, ilo, ihi);
        T* o = O + p * W;
        for (int64_t i = ilo; i <= ihi; ++i) {
          const T wt = tap_weight_on(rows.tap(i), p);
          if (wt == T(0)) continue;
          const T* s = colsum.data() + i * W;
          for (int64_t q = lo; q <= hi; ++q) o[q] += wt * s[q];
        }
        if (M != nullptr) {
          const T* m = M + p * W;
          for (int64_t q = lo; q <= hi; ++q) o[q] *= m[q];
        }
      }
    }
  });
}

template void crop_backward_planes<float>(const float*, const float*, const float*, float*, int64_t, int64_t,
                                          int64_t, int64_t, int64_t, int64_t);
template void crop_backward_planes<double>(const double*, const double*, const double*, double*, int64_t,
                                           int64_t, int64_t, int64_t, int64_t, int64_t);

at::Tensor aligned_crop_cpu(const at::Tensor& x, const at::Tensor& boxes, int64_t out_h, int64_t out_w,
                            const c10::optional<at::Tensor>& mask) {
  check_crop_forward(x, boxes, out_h, out_w, mask);
  check_boxes_finite_cpu(boxes);
  const at::Tensor xc = x.contiguous(), bc = boxes.contiguous();
  const at::Tensor mc = mask.has_value() ? mask->contiguous() : at::Tensor();
  const int64_t B = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  at::Tensor out = at::empty({B, C, out_h, out_w}, x.options());
  if (out.numel() == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "aligned_crop_cpu", [&] {
    crop_forward_impl<scalar_t>(xc.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(),
                                mc.defined() ? mc.data_ptr<scalar_t>() : nullptr, out.data_ptr<scalar_t>(), B, C,
                                H, W, out_h, out_w);
  });
  return out;
}

at::Tensor aligned_crop_backward_cpu(const at::Tensor& grad_out, const at::Tensor& boxes,
                                     const c10::optional<at::Tensor>& mask, int64_t in_h, int64_t in_w) {
  check_crop_backward(grad_out, boxes, mask, in_h, in_w);
  const int64_t B = grad_out.size(0), C = grad_out.size(1), h = grad_out.size(2), w = grad_out.size(3);
  const at::Tensor gc = grad_out.contiguous(), bc = boxes.contiguous();
  const at::Tensor mc = mask.has_value() ? mask->contiguous() : at::Tensor();
  at::Tensor gx = at::empty({B, C, in_h, in_w}, grad_out.options());
  if (gx.numel() == 0) return gx;
  if (h == 0 || w == 0) return gx.zero_();
  advise_huge_pages(gx.data_ptr(), gx.nbytes());
  AT_DISPATCH_FLOATING_TYPES(grad_out.scalar_type(), "aligned_crop_backward_cpu", [&] {
    crop_backward_planes<scalar_t>(gc.data_ptr<scalar_t>(), bc.data_ptr<scalar_t>(),
                                   mc.defined() ? mc.data_ptr<scalar_t>() : nullptr, gx.data_ptr<scalar_t>(), B,
                                   C, in_h, in_w, h, w);
  });
  return gx;
}

TORCH_LIBRARY_IMPL(sgfast, CPU, m) {
  m.impl("aligned_crop", &aligned_crop_cpu);
  m.impl("_aligned_crop_backward", &aligned_crop_backward_cpu);
}

}  // namespace sgfast
