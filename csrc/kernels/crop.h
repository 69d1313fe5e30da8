// Box / bilinear math of the aligned crop, shared by the CPU and CUDA kernels of aligned_crop and
// focus_distance / focus_reward.
//
// The crop equals F.grid_sample(x, F.affine_grid(theta, (B, C, h, w), align_corners=False),
// bilinear, zeros padding, align_corners=False) with theta = [[w, 0, 2x + w - 1], [0, h, 2y + h - 1]].
// The box is axis aligned, so the sampling position separates per axis: output column j of an
// n_out-wide crop reads input column
//     u(j) = (x + w (j + 0.5) / n_out) * n_in - 0.5
// (pixel centres at k + 0.5 in units of 1/n, the align_corners=False convention), and likewise for
// rows with (y, h). A bilinear tap is the product of one column tap and one row tap, so each image
// needs only O(h + w) weights, computed once and shared by every channel.
#pragma once
#include <cmath>
#include <cstdint>
#include <vector>

#include "checks.h"
#include "kernels/common.h"

namespace sgfast {

SGFAST_HD float crop_floor(float v) { return floorf(v); }
SGFAST_HD double crop_floor(double v) { return ::floor(v); }

// Sampling position, in input pixels, of output index k along one axis.
template <typename A>
SGFAST_HD A crop_coord(A start, A extent, int64_t k, int64_t n_out, int64_t n_in) {
  return (start + extent * ((A(k) + A(0.5)) / A(n_out))) * A(n_in) - A(0.5);
}

// The two linear-interpolation taps of one axis. A tap that falls outside [0, n) gets weight 0
// (zeros padding) and index 0, so it can be read safely and adds nothing.
template <typename A>
struct AxisTap {
  int64_t i0, i1;
  A w0, w1;
};

template <typename A>
SGFAST_HD AxisTap<A> axis_tap(A coord, int64_t n) {
  AxisTap<A> t{0, 0, A(0), A(0)};
  // Also rejects NaN and positions so far out that the int conversion below could overflow.
  if (!(coord > A(-1) && coord < A(n))) return t;
  const A f = crop_floor(coord);
  const int64_t k = static_cast<int64_t>(f);
  const A frac = coord - f;
  if (k >= 0) {
    t.i0 = k;
    t.w0 = A(1) - frac;
  }
  if (k + 1 < n) {
    t.i1 = k + 1;
    t.w1 = frac;
  }
  return t;
}

// Weight with which a tap reads input index p (0 when it does not touch p).
template <typename A>
SGFAST_HD A tap_weight_on(const AxisTap<A>& t, int64_t p) {
  return (t.i0 == p ? t.w0 : A(0)) + (t.i1 == p ? t.w1 : A(0));
}

// The output indices [lo, hi] (inclusive; empty when hi < lo) whose taps can touch input index p:
// those with u(k) in (p - 1, p + 1). u is affine in k, so the range is solved in O(1); it is
// widened by a margin (0.01 px and one index each side) so that rounding never drops an index, and
// callers recompute the exact weight with tap_weight_on (0 for the extra indices). This is what
// makes the backward a deterministic gather (no atomics).
template <typename A>
SGFAST_HD void touch_range(A start, A extent, int64_t p, int64_t n_out, int64_t n_in, int64_t& lo,
                           int64_t& hi) {
  const A a = crop_coord(start, extent, 0, n_out, n_in);
  const A s = extent * A(n_in) / A(n_out);
  const A c_lo = A(p) - A(1.01), c_hi = A(p) + A(1.01);
  lo = 0;
  hi = n_out - 1;
  if (s == A(0)) {  // degenerate box: every output samples the same position
    if (!(a > c_lo && a < c_hi)) hi = -1;
    return;
  }
  const A t1 = (c_lo - a) / s, t2 = (c_hi - a) / s;
  const A tl = crop_floor(t1 < t2 ? t1 : t2) - A(1);
  const A th = crop_floor(t1 < t2 ? t2 : t1) + A(2);
  if (tl > A(lo)) lo = tl >= A(n_out) ? n_out : static_cast<int64_t>(tl);
  if (th < A(hi)) hi = th < A(-1) ? -1 : static_cast<int64_t>(th);
}

// Bilinear sample of one H x W plane at the product of a row tap and a column tap. Zero-weight
// taps are skipped, so padding never reads (or multiplies an inf by 0 from) a pixel it should not.
template <typename T, typename A>
SGFAST_HD A bilinear_sample(const T* plane, int64_t W, const AxisTap<A>& ty, const AxisTap<A>& tx) {
  A v = A(0);
  if (ty.w0 != A(0)) {
    const T* r = plane + ty.i0 * W;
    if (tx.w0 != A(0)) v += ty.w0 * tx.w0 * A(r[tx.i0]);
    if (tx.w1 != A(0)) v += ty.w0 * tx.w1 * A(r[tx.i1]);
  }
  if (ty.w1 != A(0)) {
    const T* r = plane + ty.i1 * W;
    if (tx.w0 != A(0)) v += ty.w1 * tx.w0 * A(r[tx.i0]);
    if (tx.w1 != A(0)) v += ty.w1 * tx.w1 * A(r[tx.i1]);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Host side (CPU kernels): the per-image tap table of one axis. Coordinates are computed in double;
// weights are stored in the tensor's type. Zero-weight taps point at `lo`, the first input index
// any tap touches, so the row-interpolation buffers of the CPU kernels only need [lo, hi].
template <typename T>
struct AxisTable {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;
  int64_t lo = 0, hi = -1;  // touched input indices; empty when hi < lo (box entirely outside)

  AxisTable(double start, double extent, int64_t n_out, int64_t n_in)
      : i0(n_out), i1(n_out), w0(n_out), w1(n_out) {
    lo = n_in;
    hi = -1;
    for (int64_t k = 0; k < n_out; ++k) {
      const AxisTap<double> t = axis_tap(crop_coord(start, extent, k, n_out, n_in), n_in);
      i0[k] = t.i0;
      i1[k] = t.i1;
      w0[k] = T(t.w0);
      w1[k] = T(t.w1);
      if (w0[k] != T(0)) {
        lo = t.i0 < lo ? t.i0 : lo;
        hi = t.i0 > hi ? t.i0 : hi;
      }
      if (w1[k] != T(0)) {
        lo = t.i1 < lo ? t.i1 : lo;
        hi = t.i1 > hi ? t.i1 : hi;
      }
    }
    if (hi < lo) {
      lo = 0;
      hi = -1;
    }
    const int64_t safe = hi < lo ? 0 : lo;
    for (int64_t k = 0; k < n_out; ++k) {
      if (w0[k] == T(0)) i0[k] = safe;
      if (w1[k] == T(0)) i1[k] = safe;
    }
  }

  AxisTap<T> tap(int64_t k) const { return AxisTap<T>{i0[k], i1[k], w0[k], w1[k]}; }

  // The transpose, in compressed rows: for input index q in [lo, hi], the output indices that read
  // it, adj_k[adj_start[q - lo] .. adj_start[q - lo + 1]) with weights adj_w, in increasing k. It
  // turns the backward's scatter along this axis into a gather (no store-to-load chains, fixed
  // summation order).
  std::vector<int64_t> adj_start, adj_k;
  std::vector<T> adj_w;

  void build_adjoint() {
    const int64_t n = hi - lo + 1;
    if (n <= 0) return;
    adj_start.assign(n + 1, 0);
    for (size_t k = 0; k < w0.size(); ++k) {
      if (w0[k] != T(0)) ++adj_start[i0[k] - lo + 1];
      if (w1[k] != T(0)) ++adj_start[i1[k] - lo + 1];
    }
    for (int64_t q = 0; q < n; ++q) adj_start[q + 1] += adj_start[q];
    adj_k.resize(adj_start[n]);
    adj_w.resize(adj_start[n]);
    std::vector<int64_t> fill(adj_start.begin(), adj_start.end() - 1);
    for (size_t k = 0; k < w0.size(); ++k) {
      if (w0[k] != T(0)) {
        const int64_t e = fill[i0[k] - lo]++;
        adj_k[e] = int64_t(k);
        adj_w[e] = w0[k];
      }
      if (w1[k] != T(0)) {
        const int64_t e = fill[i1[k] - lo]++;
        adj_k[e] = int64_t(k);
        adj_w[e] = w1[k];
      }
    }
  }
};

// ---------------------------------------------------------------------------------------------
// Argument checks shared by the CPU and CUDA entry points (the Python wrappers check first, with
// the same wording; these guard direct torch.ops.sgfast calls).
inline void check_image(const at::Tensor& t, const char* name) {
  check_dim(t, 4, name, "[B, C, H, W]");
  check_float(t, name);
  SGFAST_CHECK_ARG(t.size(2) >= 1 && t.size(3) >= 1, name, "expected H, W >= 1, got shape ", t.sizes());
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, int64_t channels, const char* name,
                       const char* shape) {
  check_dim(t, 4, name, shape);
  SGFAST_CHECK_ARG(t.scalar_type() == ref.scalar_type(), name, "expected dtype ", ref.scalar_type(), ", got ",
                   t.scalar_type());
  check_same_device(t, ref, name);
  const int64_t c = channels < 0 ? ref.size(1) : channels;
  SGFAST_CHECK_ARG(t.size(0) == ref.size(0) && t.size(1) == c && t.size(2) == ref.size(2) &&
                       t.size(3) == ref.size(3),
                   name, "expected shape [", ref.size(0), ", ", c, ", ", ref.size(2), ", ", ref.size(3), "], got ",
                   t.sizes());
}

inline void check_boxes(const at::Tensor& boxes, const at::Tensor& ref) {
  check_dim(boxes, 2, "boxes", "[B, 4]");
  SGFAST_CHECK_ARG(boxes.size(0) == ref.size(0) && boxes.size(1) == 4, "boxes", "expected shape [", ref.size(0),
                   ", 4], got ", boxes.sizes());
  SGFAST_CHECK_ARG(boxes.scalar_type() == ref.scalar_type(), "boxes", "expected dtype ", ref.scalar_type(),
                   ", got ", boxes.scalar_type());
  check_same_device(boxes, ref, "boxes");
}

inline void check_out_size(int64_t out_h, int64_t out_w) {
  SGFAST_CHECK_ARG(out_h >= 1 && out_w >= 1, "size", "expected a crop size >= 1, got (", out_h, ", ", out_w, ")");
}

// aligned_crop: x [B, C, H, W], boxes [B, 4], crop size >= 1, mask [B, 1, H, W] or none.
inline void check_crop_forward(const at::Tensor& x, const at::Tensor& boxes, int64_t out_h, int64_t out_w,
                               const c10::optional<at::Tensor>& mask) {
  check_image(x, "x");
  check_boxes(boxes, x);
  check_out_size(out_h, out_w);
  if (mask.has_value()) check_like(*mask, x, 1, "mask", "[B, 1, H, W]");
}

// _aligned_crop_backward: grad_out [B, C, h, w], boxes [B, 4], mask [B, 1, in_h, in_w] or none.
inline void check_crop_backward(const at::Tensor& grad_out, const at::Tensor& boxes,
                                const c10::optional<at::Tensor>& mask, int64_t in_h, int64_t in_w) {
  check_dim(grad_out, 4, "grad_out", "[B, C, h, w]");
  check_float(grad_out, "grad_out");
  check_boxes(boxes, grad_out);
  SGFAST_CHECK_ARG(in_h >= 1 && in_w >= 1, "in_h/in_w", "expected >= 1, got (", in_h, ", ", in_w, ")");
  if (mask.has_value()) {
    check_dim(*mask, 4, "mask", "[B, 1, H, W]");
    SGFAST_CHECK_ARG(mask->size(0) == grad_out.size(0) && mask->size(1) == 1 && mask->size(2) == in_h &&
                         mask->size(3) == in_w,
                     "mask", "expected shape [", grad_out.size(0), ", 1, ", in_h, ", ", in_w, "], got ", mask->sizes());
    SGFAST_CHECK_ARG(mask->scalar_type() == grad_out.scalar_type(), "mask", "expected dtype ",
                     grad_out.scalar_type(), ", got ", mask->scalar_type());
    check_same_device(*mask, grad_out, "mask");
  }
}

// focus_distance / focus_reward and their backward ops: canvas1 is null for focus_distance.
inline void check_focus(const at::Tensor& target, const at::Tensor& canvas0, const char* name0,
                        const at::Tensor* canvas1, const at::Tensor& gbp, const at::Tensor& boxes, int64_t out_h,
                        int64_t out_w) {
  check_image(target, "target");
  check_like(canvas0, target, -1, name0, "[B, C, H, W] like target");
  if (canvas1) check_like(*canvas1, target, -1, "canvas1", "[B, C, H, W] like target");
  check_like(gbp, target, 1, "gbp", "[B, 1, H, W]");
  check_boxes(boxes, target);
  check_out_size(out_h, out_w);
}

}  // namespace sgfast
