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
//
// Every kernel, CPU and CUDA, takes its taps from one table builder (build_axis_taps): positions in
// double whatever the tensor's type (float32 positions are off by ~5e-5 px at 1024 px), weights
// rounded to the tensor's type. The CUDA kernels' per-element functions (crop_forward_pixel,
// crop_backward_col, crop_backward_row, focus_pixel, focus_grad_pixel) live here too, so the CPU
// build runs them (csrc/cpu/emulate_cuda.cpp, tests/test_cuda_twins.py) against the CPU kernels.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "checks.h"
#include "kernels/common.h"

namespace sgfast {

SGFAST_HD float crop_floor(float v) { return floorf(v); }
SGFAST_HD double crop_floor(double v) { return ::floor(v); }

SGFAST_HD bool crop_finite(double v) {
#if defined(__CUDA_ARCH__)
  return isfinite(v);
#else
  return std::isfinite(v);
#endif
}

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

// The tap of output index k of a box (start, extent) along one axis, as every kernel uses it: the
// position in double, the weights rounded to T. A non-finite start or extent gives NaN weights on
// index 0, so the image's outputs and gradients are NaN instead of silently 0 (the Python wrappers
// refuse such boxes on the CPU; on CUDA that check would cost a host sync per call).
template <typename T>
SGFAST_HD AxisTap<T> box_tap(double start, double extent, int64_t k, int64_t n_out, int64_t n_in) {
  if (!(crop_finite(start) && crop_finite(extent))) {
    const T nan = std::numeric_limits<T>::quiet_NaN();
    return AxisTap<T>{0, 0, nan, nan};
  }
  const AxisTap<double> t = axis_tap(crop_coord(start, extent, k, n_out, n_in), n_in);
  return AxisTap<T>{t.i0, t.i1, T(t.w0), T(t.w1)};
}

// (start, extent) of one axis of a box (x, y, w, h): axis 0 = rows (y, h), 1 = columns (x, w), in
// double. A box with any non-finite value gives NaN on both axes, so every output of its image is
// NaN (box_tap), not only those of the axis that holds the bad value.
struct BoxAxis {
  double start, extent;
};

template <typename T>
SGFAST_HD BoxAxis box_axis(const T* box, int axis) {
  if (!(crop_finite(double(box[0])) && crop_finite(double(box[1])) && crop_finite(double(box[2])) &&
        crop_finite(double(box[3])))) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return BoxAxis{nan, nan};
  }
  return axis == 0 ? BoxAxis{double(box[1]), double(box[3])} : BoxAxis{double(box[0]), double(box[2])};
}

// The taps of every output index of one axis: i0, i1, w0, w1 [n_out] and [lo, hi], the first and
// last input index a nonzero-weight tap reads (hi < lo: none; then lo = 0, hi = -1). Zero-weight
// taps point at lo (0 when none), so every index is safe to read; the kernels read them where the
// CPU kernels always have (a zero-weight column tap is read and multiplied by 0, a zero-weight row
// tap of the crop is skipped), which decides where non-finite inputs show up. The CPU's AxisTable
// and the CUDA tap tables are both filled by this function.
template <typename T, typename I>
SGFAST_HD void build_axis_taps(double start, double extent, int64_t n_out, int64_t n_in, I* i0, I* i1, T* w0,
                               T* w1, int64_t* lo_out, int64_t* hi_out) {
  int64_t lo = n_in, hi = -1;
  for (int64_t k = 0; k < n_out; ++k) {
    const AxisTap<T> t = box_tap<T>(start, extent, k, n_out, n_in);
    i0[k] = I(t.i0);
    i1[k] = I(t.i1);
    w0[k] = t.w0;
    w1[k] = t.w1;
    if (t.w0 != T(0)) {
      lo = t.i0 < lo ? t.i0 : lo;
      hi = t.i0 > hi ? t.i0 : hi;
    }
    if (t.w1 != T(0)) {
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
    if (w0[k] == T(0)) i0[k] = I(safe);
    if (w1[k] == T(0)) i1[k] = I(safe);
  }
  *lo_out = lo;
  *hi_out = hi;
}

// The output indices [lo, hi] (inclusive; empty when hi < lo) whose taps can touch input index p:
// those with u(k) in (p - 1, p + 1). u is affine in k, so the range is solved in O(1); it is
// widened by a margin (0.01 px and one index each side) so that rounding never drops an index, and
// callers recompute the exact weight with tap_weight_on (0 for the extra indices). This is what
// makes the backward a deterministic gather (no atomics).
template <typename A>
SGFAST_HD void touch_range(A start, A extent, int64_t p, int64_t n_out, int64_t n_in, int64_t& lo,
                           int64_t& hi) {
  lo = 0;
  hi = n_out - 1;
  if (!(crop_finite(double(start)) && crop_finite(double(extent)))) return;  // NaN taps (box_tap): all of them
  const A a = crop_coord(start, extent, 0, n_out, n_in);
  const A s = extent * A(n_in) / A(n_out);
  const A c_lo = A(p) - A(1.01), c_hi = A(p) + A(1.01);
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

// ---------------------------------------------------------------------------------------------
// Tap tables of a batch, the CUDA kernels' form of AxisTable (filled on the device by
// fill_tap_tables, read per element). Two flat buffers: `idx` (int64) holds rows.i0 [B, h],
// rows.i1 [B, h], cols.i0 [B, w], cols.i1 [B, w] and then [B, 4] = (rows lo, hi, cols lo, hi);
// `wts` (T) holds rows.w0, rows.w1 [B, h], cols.w0, cols.w1 [B, w].
struct TapLayout {
  int64_t B, h, w;
  SGFAST_HD int64_t idx_size() const { return 2 * B * (h + w) + 4 * B; }
  SGFAST_HD int64_t wts_size() const { return 2 * B * (h + w); }
};

template <typename T>
struct TapTables {
  const int64_t *ri0, *ri1, *ci0, *ci1, *range;
  const T *rw0, *rw1, *cw0, *cw1;
  int64_t h, w;

  SGFAST_HD TapTables(const TapLayout& L, const int64_t* idx, const T* wts)
      : ri0(idx), ri1(idx + L.B * L.h), ci0(idx + 2 * L.B * L.h), ci1(idx + 2 * L.B * L.h + L.B * L.w),
        range(idx + 2 * L.B * (L.h + L.w)), rw0(wts), rw1(wts + L.B * L.h), cw0(wts + 2 * L.B * L.h),
        cw1(wts + 2 * L.B * L.h + L.B * L.w), h(L.h), w(L.w) {}

  SGFAST_HD AxisTap<T> row(int64_t b, int64_t i) const {
    const int64_t e = b * h + i;
    return AxisTap<T>{ri0[e], ri1[e], rw0[e], rw1[e]};
  }
  SGFAST_HD AxisTap<T> col(int64_t b, int64_t j) const {
    const int64_t e = b * w + j;
    return AxisTap<T>{ci0[e], ci1[e], cw0[e], cw1[e]};
  }
  SGFAST_HD int64_t rows_lo(int64_t b) const { return range[4 * b]; }
  SGFAST_HD int64_t rows_hi(int64_t b) const { return range[4 * b + 1]; }
  SGFAST_HD int64_t cols_lo(int64_t b) const { return range[4 * b + 2]; }
  SGFAST_HD int64_t cols_hi(int64_t b) const { return range[4 * b + 3]; }
  // The box reads no input pixel at all.
  SGFAST_HD bool empty(int64_t b) const { return rows_hi(b) < rows_lo(b) || cols_hi(b) < cols_lo(b); }
};

// Fills the tables of item = 2 b + axis (axis 0: the rows of box b, from (y, h); 1: its columns,
// from (x, w)), items in [0, 2 B).
template <typename T>
SGFAST_HD void fill_tap_tables(const TapLayout& L, const T* boxes, int64_t H, int64_t W, int64_t item, int64_t* idx,
                               T* wts) {
  const int64_t b = item / 2;
  const T* box = boxes + 4 * b;
  int64_t* range = idx + 2 * L.B * (L.h + L.w) + 4 * b;
  if (item % 2 == 0) {
    const BoxAxis a = box_axis(box, 0);
    build_axis_taps<T, int64_t>(a.start, a.extent, L.h, H, idx + b * L.h, idx + L.B * L.h + b * L.h,
                                wts + b * L.h, wts + L.B * L.h + b * L.h, range, range + 1);
  } else {
    const BoxAxis a = box_axis(box, 1);
    const int64_t o = 2 * L.B * L.h;
    build_axis_taps<T, int64_t>(a.start, a.extent, L.w, W, idx + o + b * L.w,
                                idx + o + L.B * L.w + b * L.w, wts + o + b * L.w, wts + o + L.B * L.w + b * L.w,
                                range + 2, range + 3);
  }
}

// ---- Per-element functions of the CUDA kernels (and of their CPU twins, csrc/cpu/emulate_cuda.cpp).
// They do the CPU kernels' arithmetic in the CPU kernels' order, so the two differ at most by the
// rounding of fused multiply-adds, and non-finite inputs show in the same places.

// Input row blend of the crop at column q: the two rows of the row tap (a zero-weight row is not
// read), each pixel times the mask first (x * m: NaN or inf under a zero mask gives NaN, as the CPU).
// The caller handles the row whose two weights are zero.
template <typename T>
SGFAST_HD T crop_row_blend(const T* X, const T* M, int64_t W, const AxisTap<T>& ty, int64_t q) {
  const int64_t o0 = ty.i0 * W + q, o1 = ty.i1 * W + q;
  const bool use0 = ty.w0 != T(0), use1 = ty.w1 != T(0);
  if (M == nullptr) {
    if (use0 && use1) return ty.w0 * X[o0] + ty.w1 * X[o1];
    return use0 ? ty.w0 * X[o0] : ty.w1 * X[o1];
  }
  if (use0 && use1) return ty.w0 * (X[o0] * M[o0]) + ty.w1 * (X[o1] * M[o1]);
  return use0 ? ty.w0 * (X[o0] * M[o0]) : ty.w1 * (X[o1] * M[o1]);
}

// aligned_crop forward: output pixel (b, i, j) of every channel. x [B, C, H, W], mask [B, 1, H, W]
// or null, out [B, C, h, w].
template <typename T>
SGFAST_HD void crop_forward_pixel(const TapTables<T>& tab, const T* x, const T* mask, T* out, int64_t b, int64_t i,
                                  int64_t j, int64_t C, int64_t H, int64_t W) {
  const AxisTap<T> ty = tab.row(b, i), tx = tab.col(b, j);
  const bool zero = tab.empty(b) || (ty.w0 == T(0) && ty.w1 == T(0));
  const T* M = mask != nullptr ? mask + b * H * W : nullptr;
  for (int64_t c = 0; c < C; ++c) {
    const T* X = x + (b * C + c) * H * W;
    out[((b * C + c) * tab.h + i) * tab.w + j] =
        zero ? T(0) : tx.w0 * crop_row_blend(X, M, W, ty, tx.i0) + tx.w1 * crop_row_blend(X, M, W, ty, tx.i1);
  }
}

// aligned_crop backward, pass 1 (columns), input column q of one gradient row g [w] of image b: the
// sum over the output columns j whose tap reads q of w_j(q) g[j], in increasing j (the CPU's adjoint
// table order); 0 outside the columns the box reads.
template <typename T>
SGFAST_HD T crop_backward_col(const TapTables<T>& tab, const T* box, const T* g, int64_t b, int64_t q, int64_t W) {
  if (q < tab.cols_lo(b) || q > tab.cols_hi(b)) return T(0);
  const BoxAxis a = box_axis(box, 1);
  int64_t lo, hi;
  touch_range(a.start, a.extent, q, tab.w, W, lo, hi);
  T acc = T(0);
  for (int64_t j = lo; j <= hi; ++j) {
    const T wt = tap_weight_on(tab.col(b, j), q);
    if (wt != T(0)) acc += wt * g[j];
  }
  return acc;
}

// aligned_crop backward, pass 2 (rows), input pixel (p, q) of one plane of image b: the sum over
// the output rows i whose tap reads p of w_i(p) colsum[i, q] (colsum: the plane's [h, W] pass-1
// sums), times the mask; 0, the mask not read, outside the rows and columns the box reads (CPU).
template <typename T>
SGFAST_HD T crop_backward_row(const TapTables<T>& tab, const T* box, const T* colsum, const T* mask, int64_t b,
                              int64_t p, int64_t q, int64_t H, int64_t W) {
  if (p < tab.rows_lo(b) || p > tab.rows_hi(b) || q < tab.cols_lo(b) || q > tab.cols_hi(b)) return T(0);
  const BoxAxis a = box_axis(box, 0);
  int64_t lo, hi;
  touch_range(a.start, a.extent, p, tab.h, H, lo, hi);
  T acc = T(0);
  for (int64_t i = lo; i <= hi; ++i) {
    const T wt = tap_weight_on(tab.row(b, i), p);
    if (wt != T(0)) acc += wt * colsum[i * W + q];
  }
  return mask != nullptr ? acc * mask[(b * H + p) * W + q] : acc;
}

// A bilinear sample as the focus CPU kernel computes it: the two row taps blended (a zero-weight
// row read times 0), then the two column taps.
template <typename T>
SGFAST_HD T focus_sample(const T* P, int64_t W, const AxisTap<T>& ty, const AxisTap<T>& tx) {
  const T* r0 = P + ty.i0 * W;
  const T* r1 = P + ty.i1 * W;
  return tx.w0 * (ty.w0 * r0[tx.i0] + ty.w1 * r1[tx.i0]) + tx.w1 * (ty.w0 * r0[tx.i1] + ty.w1 * r1[tx.i1]);
}

// The same sample of I - C (differences first, as the CPU).
template <typename T>
SGFAST_HD T focus_diff_sample(const T* I, const T* Cv, int64_t W, const AxisTap<T>& ty, const AxisTap<T>& tx) {
  const int64_t r0 = ty.i0 * W, r1 = ty.i1 * W;
  const T a = ty.w0 * (I[r0 + tx.i0] - Cv[r0 + tx.i0]) + ty.w1 * (I[r1 + tx.i0] - Cv[r1 + tx.i0]);
  const T c = ty.w0 * (I[r0 + tx.i1] - Cv[r0 + tx.i1]) + ty.w1 * (I[r1 + tx.i1] - Cv[r1 + tx.i1]);
  return tx.w0 * a + tx.w1 * c;
}

// Output row i of image b reads no input pixel (the CPU's row_empty).
template <typename T>
SGFAST_HD bool focus_row_empty(const TapTables<T>& tab, int64_t b, int64_t i) {
  const AxisTap<T> ty = tab.row(b, i);
  return tab.cols_hi(b) < tab.cols_lo(b) || (ty.w0 == T(0) && ty.w1 == T(0));
}

struct FocusSums {
  double num, sg;  // Z_G^2 * sum_c (Z_I - Z_C0)^2 [- (Z_I - Z_C1)^2], and Z_G^2
};

// One crop pixel's terms of focus_distance (n_canvas 1), focus_reward (2) or of ||Z_G||^2 only (0):
// samples in T, squares and sums in double, as the CPU. Zero Z_G does not skip the canvas terms, so
// a NaN there gives NaN as on the CPU.
template <typename T>
SGFAST_HD FocusSums focus_pixel(const TapTables<T>& tab, const T* I, const T* C0, const T* C1, const T* G, int64_t b,
                                int64_t i, int64_t j, int64_t C, int64_t H, int64_t W, int n_canvas) {
  FocusSums s{0.0, 0.0};
  if (focus_row_empty(tab, b, i)) return s;
  const AxisTap<T> ty = tab.row(b, i), tx = tab.col(b, j);
  const int64_t HW = H * W;
  const double g = double(focus_sample(G + b * HW, W, ty, tx));
  s.sg = g * g;
  if (n_canvas == 0) return s;
  double acc = 0.0;
  for (int64_t c = 0; c < C; ++c) {
    const int64_t off = (b * C + c) * HW;
    const double d0 = double(focus_diff_sample(I + off, C0 + off, W, ty, tx));
    acc += d0 * d0;
    if (n_canvas == 2) {
      const double d1 = double(focus_diff_sample(I + off, C1 + off, W, ty, tx));
      acc -= d1 * d1;
    }
  }
  s.num = g * g * acc;
  return s;
}

// The crop-sized gradient of L(Cv) at pixel (b, i, j), every channel:
// gz = sign * Z_G^2 (Z_I - Z_C) / den_b * grad_out_b with sign = -2 (distance, reward's C0) or +2
// (reward's C1) and den = ||Z_G|| + eps in double, as the CPU.
template <typename T>
SGFAST_HD void focus_grad_pixel(const TapTables<T>& tab, const T* I, const T* Cv, const T* G, const double* den,
                                const T* grad_out, double sign, T* gz, int64_t b, int64_t i, int64_t j, int64_t C,
                                int64_t H, int64_t W) {
  const int64_t HW = H * W;
  const bool empty = focus_row_empty(tab, b, i);
  const AxisTap<T> ty = tab.row(b, i), tx = tab.col(b, j);
  const T g = empty ? T(0) : focus_sample(G + b * HW, W, ty, tx);
  const T coef = T(sign * double(grad_out[b]) / den[b]);
  for (int64_t c = 0; c < C; ++c) {
    const int64_t off = (b * C + c) * HW;
    gz[((b * C + c) * tab.h + i) * tab.w + j] =
        empty ? T(0) : coef * g * g * focus_diff_sample(I + off, Cv + off, W, ty, tx);
  }
}

// ---- Launch arithmetic of the CUDA kernels (host code, shared with the CPU twins).

// focus partial sums: grid (blocks per image, images), each block a fixed tree over kThreads
// threads. Blocks per image from the crop size only (about 4 pixels per thread, at most 16), never
// from the device, so the summation order depends on the shape alone.
constexpr int64_t kFocusMaxBlocksPerImage = 16;

inline int64_t focus_blocks_per_image(int64_t h, int64_t w) {
  const int64_t n = (h * w + kThreads * 4 - 1) / (kThreads * 4);
  return n < 1 ? 1 : (n > kFocusMaxBlocksPerImage ? kFocusMaxBlocksPerImage : n);
}

// Images beyond grid.y's 65535 are looped over (blockIdx.y, stepping by gridDim.y).
inline Grid focus_grid(int64_t B, int64_t h, int64_t w) { return Grid{focus_blocks_per_image(h, w), images_grid_y(B)}; }

// ---------------------------------------------------------------------------------------------
// Host side (CPU kernels): the per-image tap table of one axis (build_axis_taps). Zero-weight taps
// point at `lo`, the first input index any tap touches, so the row-interpolation buffers of the CPU
// kernels only need [lo, hi].
template <typename T>
struct AxisTable {
  std::vector<int64_t> i0, i1;
  std::vector<T> w0, w1;
  int64_t lo = 0, hi = -1;  // touched input indices; empty when hi < lo (box entirely outside)

  AxisTable(double start, double extent, int64_t n_out, int64_t n_in)
      : i0(n_out), i1(n_out), w0(n_out), w1(n_out) {
    build_axis_taps<T, int64_t>(start, extent, n_out, n_in, i0.data(), i1.data(), w0.data(), w1.data(), &lo, &hi);
  }
  AxisTable(const BoxAxis& a, int64_t n_out, int64_t n_in) : AxisTable(a.start, a.extent, n_out, n_in) {}

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
