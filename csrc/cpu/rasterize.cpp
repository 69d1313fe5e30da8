// CPU kernels of rasterize_strokes (math in kernels/rasterize.h, contract in docs/ops/rasterize.md).
//
// ltp: per stroke and 2x canvas row, the discs touching the row are visited from the LAST to the first
// (a later disc overwrites an earlier one), keeping the row's already-painted pixels as a short sorted
// list of column intervals, so each canvas pixel is written at most once; two canvas rows are then
// averaged 2x2 into one output row. The set of discs touching a row is kept as a 128-bit mask updated
// as the row index sweeps down the stroke.
// exact: per output pixel, exact_pixel (kernels/rasterize.h), shared with the CUDA kernel.
// Work items are (stroke, band of output rows), spread with at::parallel_for.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "checks.h"
#include "cpu/huge_pages.h"
#include "kernels/rasterize.h"

namespace sgfast {
namespace {

using namespace raster;

// Bands per stroke so that small batches still give every thread several work items.
int64_t bands_per_stroke(int64_t n, int64_t size) {
  const int64_t want = 4 * static_cast<int64_t>(at::get_num_threads());
  if (n >= want) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(size, (want + n - 1) / n));
}

// Sorted, disjoint column intervals already painted on one canvas row.
struct RowIntervals {
  int n = 0;
  int lo[kLtpDiscs + 1];
  int hi[kLtpDiscs + 1];

  // Paints the columns of [a, b] not painted yet with w, records [a, b] as painted and returns the
  // index of the interval that now contains it.
  int paint(int a, int b, float w, float* row) {
    int k = 0;
    while (k < n && hi[k] < a - 1) ++k;
    if (k < n && lo[k] <= a && hi[k] >= b) return k;  // fully hidden by later discs
    int cur = a, k2 = k;
    while (k2 < n && lo[k2] <= b + 1) {
      for (int c = cur; c < lo[k2]; ++c) row[c] = w;
      cur = std::max(cur, hi[k2] + 1);
      ++k2;
    }
    for (int c = cur; c <= b; ++c) row[c] = w;
    const int new_lo = k < k2 ? std::min(a, lo[k]) : a;
    const int new_hi = k < k2 ? std::max(b, hi[k2 - 1]) : b;
    const int merged = k2 - k;
    if (merged == 0) {  // insert at k
      for (int m = n; m > k; --m) {
        lo[m] = lo[m - 1];
        hi[m] = hi[m - 1];
      }
      ++n;
    } else if (merged > 1) {  // drop intervals k+1 .. k2-1
      const int drop = merged - 1;
      for (int m = k + 1; m + drop < n; ++m) {
        lo[m] = lo[m + drop];
        hi[m] = hi[m + drop];
      }
      n -= drop;
    }
    lo[k] = new_lo;
    hi[k] = new_hi;
    return k;
  }
};

// Bitmask over the 100 discs (bit i = disc i), walked from the highest (latest) bit down.
struct DiscMask {
  uint64_t w[2] = {0, 0};
  void set(int i) { w[i >> 6] |= uint64_t(1) << (i & 63); }
  void clear(int i) { w[i >> 6] &= ~(uint64_t(1) << (i & 63)); }
};

template <typename T>
void ltp_band(const T* f_in, int size, const int* table, int64_t row_begin, int64_t row_end, T* out) {
  double f[10];
  for (int k = 0; k < 10; ++k) f[k] = static_cast<double>(f_in[k]);
  const LtpStroke s = ltp_stroke(f, size);
  const int S = 2 * size;
  LtpDisc disc[kLtpDiscs];
  bool visible[kLtpDiscs];
  for (int i = 0; i < kLtpDiscs; ++i) disc[i] = ltp_disc(s, i);
  // Structure-of-arrays copy for the row loop; tab[i] = the half-width row of disc i's radius.
  int drow[kLtpDiscs], dcol[kLtpDiscs];
  float dw[kLtpDiscs];
  const int* tab[kLtpDiscs];
  for (int i = 0; i < kLtpDiscs; ++i) {
    drow[i] = disc[i].row;
    dcol[i] = disc[i].col;
    dw[i] = disc[i].w;
    tab[i] = table + ltp_table_offset(disc[i].radius);
  }
  // A disc followed by one of the same geometry is entirely overwritten: skip it.
  for (int i = 0; i < kLtpDiscs; ++i) {
    visible[i] = i + 1 == kLtpDiscs || disc[i].row != disc[i + 1].row || disc[i].col != disc[i + 1].col ||
                 disc[i].radius != disc[i + 1].radius;
  }
  // Canvas rows of this band, and the discs sorted by first and by last row for the sweep.
  const int r_begin = static_cast<int>(2 * row_begin), r_end = static_cast<int>(2 * row_end);
  int by_lo[kLtpDiscs], by_hi[kLtpDiscs], nv = 0;
  for (int i = 0; i < kLtpDiscs; ++i) {
    if (!visible[i]) continue;
    const int lo = disc[i].row - disc[i].radius, hi = disc[i].row + disc[i].radius;
    if (hi < r_begin || lo >= r_end) continue;
    by_lo[nv] = i;
    by_hi[nv] = i;
    ++nv;
  }
  auto lo_of = [&](int i) { return disc[i].row - disc[i].radius; };
  auto hi_of = [&](int i) { return disc[i].row + disc[i].radius; };
  std::sort(by_lo, by_lo + nv, [&](int a, int b) { return lo_of(a) < lo_of(b); });
  std::sort(by_hi, by_hi + nv, [&](int a, int b) { return hi_of(a) < hi_of(b); });
  int next_in = 0, next_out = 0;
  DiscMask active;

  // Two canvas rows, zeroed once; afterwards only the columns a row painted are cleared again, and
  // only those are averaged (a stroke usually spans a fraction of the width).
  std::vector<float> buf(2 * static_cast<size_t>(S), 0.0f);
  int used_lo[2] = {S, S}, used_hi[2] = {-1, -1};
  RowIntervals iv;
  for (int64_t orow = row_begin; orow < row_end; ++orow) {
    T* o = out + orow * size;
    bool any = false;
    for (int half = 0; half < 2; ++half) {
      const int R = static_cast<int>(2 * orow + half);
      while (next_in < nv && lo_of(by_lo[next_in]) <= R) active.set(by_lo[next_in++]);
      while (next_out < nv && hi_of(by_hi[next_out]) < R) active.clear(by_hi[next_out++]);
      float* row = buf.data() + half * S;
      if (used_lo[half] <= used_hi[half]) std::fill(row + used_lo[half], row + used_hi[half] + 1, 0.0f);
      iv.n = 0;
      // Fast path: the span lies inside the interval that hid the previous disc (consecutive discs
      // are close), else the general interval update.
      int cached = -1;
      for (int word = 1; word >= 0; --word) {
        uint64_t bits = active.w[word];
        while (bits) {
          const int bit = 63 - __builtin_clzll(bits);
          bits &= ~(uint64_t(1) << bit);
          const int k = word * 64 + bit;
          const int hw = tab[k][std::abs(R - drow[k])];  // the disc is active: |R - row| <= radius
          const int a = std::max(dcol[k] - hw, 0), b = std::min(dcol[k] + hw, S - 1);
          if (cached >= 0 && iv.lo[cached] <= a && b <= iv.hi[cached]) continue;
          if (a <= b) cached = iv.paint(a, b, dw[k], row);
        }
      }
      // Painting only writes inside the row's sorted intervals, so their span bounds what is non-zero.
      used_lo[half] = iv.n > 0 ? iv.lo[0] : S;
      used_hi[half] = iv.n > 0 ? iv.hi[iv.n - 1] : -1;
      any = any || iv.n > 0;
    }
    if (!any) {
      std::fill(o, o + size, T(0));
      continue;
    }
    const float* r0 = buf.data();
    const float* r1 = buf.data() + S;
    const int j_lo = std::min(used_lo[0], used_lo[1]) / 2, j_hi = std::max(used_hi[0], used_hi[1]) / 2;
    std::fill(o, o + j_lo, T(0));
    std::fill(o + j_hi + 1, o + size, T(0));
    for (int j = j_lo; j <= j_hi; ++j) {
      // The 2x2 mean, in the order of OpenCV's exact-2x area path.
      const float v = (r0[2 * j] + r0[2 * j + 1] + r1[2 * j] + r1[2 * j + 1]) * 0.25f;
      o[j] = static_cast<T>(v);
    }
  }
}

template <typename T>
void exact_band(const T* f_in, int size, int ss, int64_t row_begin, int64_t row_end, T* out) {
  double f[10];
  for (int k = 0; k < 10; ++k) f[k] = static_cast<double>(f_in[k]);
  const ExactStroke s = exact_stroke(f);
  for (int64_t i = row_begin; i < row_end; ++i) {
    T* o = out + i * size;
    for (int j = 0; j < size; ++j) o[j] = static_cast<T>(exact_pixel(s, static_cast<int>(i), j, size, ss));
  }
}

// Finite and in [0, 1]: the kernels index the canvas with these values.
template <typename T>
void check_values(const T* p, int64_t count) {
  for (int64_t k = 0; k < count; ++k) {
    const T v = p[k];
    SGFAST_CHECK_ARG(std::isfinite(static_cast<double>(v)), "params", "values must be finite, found ", v,
                     " at flat index ", k);
    SGFAST_CHECK_ARG(v >= T(0) && v <= T(1), "params", "values must lie in [0, 1] (they are not clamped), found ",
                     v, " at flat index ", k);
  }
}

at::Tensor rasterize_strokes_cpu(const at::Tensor& params_in, int64_t size, c10::string_view mode_sv,
                                 int64_t supersample) {
  const std::string mode = check_rasterize_args(params_in, size, mode_sv, supersample);
  const at::Tensor params = params_in.contiguous();
  const int64_t n = params.size(0);
  at::Tensor out = at::empty({n, size, size}, params.options());
  if (n == 0) return out;
  advise_huge_pages(out.data_ptr(), out.nbytes());
  const int sz = static_cast<int>(size), ss = static_cast<int>(supersample);
  const int64_t bands = bands_per_stroke(n, size);
  const int64_t rows_per_band = (size + bands - 1) / bands;

  AT_DISPATCH_FLOATING_TYPES(params.scalar_type(), "rasterize_strokes_cpu", [&] {
    const scalar_t* p = params.data_ptr<scalar_t>();
    scalar_t* o = out.data_ptr<scalar_t>();
    check_values(p, n * 10);
    if (mode == "ltp") {
      // Half-width table up to the largest radius any stroke of this batch can use.
      double zmax = 0.0;
      for (int64_t k = 0; k < n; ++k) zmax = std::max({zmax, double(p[k * 10 + 6]), double(p[k * 10 + 7])});
      const int rmax = 1 + static_cast<int>(std::floor(zmax * size * 0.5));
      std::vector<int> table(ltp_table_entries(rmax));
      for (int r = 0; r <= rmax; ++r) ltp_circle_halfwidths(r, table.data() + ltp_table_offset(r));
      at::parallel_for(0, n * bands, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t k = item / bands, b = item % bands;
          const int64_t r0 = b * rows_per_band, r1 = std::min<int64_t>(size, r0 + rows_per_band);
          if (r0 < r1) ltp_band(p + k * 10, sz, table.data(), r0, r1, o + k * size * size);
        }
      });
    } else {
      at::parallel_for(0, n * bands, 1, [&](int64_t begin, int64_t end) {
        for (int64_t item = begin; item < end; ++item) {
          const int64_t k = item / bands, b = item % bands;
          const int64_t r0 = b * rows_per_band, r1 = std::min<int64_t>(size, r0 + rows_per_band);
          if (r0 < r1) exact_band(p + k * 10, sz, ss, r0, r1, o + k * size * size);
        }
      });
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CPU, m) { m.impl("rasterize_strokes", &rasterize_strokes_cpu); }

}  // namespace sgfast
