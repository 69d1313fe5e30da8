// Stroke rasterizer math shared by the CPU and CUDA kernels (see docs/ops/rasterize.md).
//
// ltp mode: the baseline's label generator `draw(f, size)`, reproduced bit for bit. Python evaluates
// it in float64 with a fixed operation order and truncating int() casts, so every product and sum
// here is written in the same order, and on the device with __dmul_rn/__dadd_rn so nvcc cannot
// contract them into FMAs (setup.py builds with --use_fast_math, which implies -fmad=true).
//
// exact mode: the continuous union of discs centred on the Bezier curve, value w(t*) with t* the
// largest t whose disc contains the point; t* is found by isolating the monotone pieces of the quartic
// g(t) = |B(t) - p|^2 - r(t)^2 (roots of g'' in closed form, of g' and g by bracketed Newton).
#pragma once
#include <math.h>

#include <string>

#include "checks.h"
#include "kernels/common.h"

namespace sgfast {
namespace raster {

constexpr int kLtpDiscs = 100;  // the baseline draws t = i / 100 for i = 0..99 (t = 1 is never drawn)

// ---- Launch arithmetic of the CUDA ltp kernel (host code): one block per (stroke, band of
// kLtpBandRows output rows) work item, the items looped over by a grid of at most kMaxStrideBlocks.
constexpr int kLtpBandRows = 16;
inline int64_t ltp_bands(int64_t size) { return (size + kLtpBandRows - 1) / kLtpBandRows; }
inline Grid ltp_grid(int64_t n, int64_t size) {
  const int64_t items = n * ltp_bands(size);
  return Grid{items < 1 ? 1 : (items > kMaxStrideBlocks ? kMaxStrideBlocks : items), 1};
}

SGFAST_HD double dmul(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
SGFAST_HD double dadd(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
SGFAST_HD double dsub(double a, double b) {
#ifdef __CUDA_ARCH__
  return __dsub_rn(a, b);
#else
  return a - b;
#endif
}

// ---------------------------------------------------------------------------------------------
// ltp mode

// The integer stroke of draw(f, size): grid coordinates on the 2*size canvas, radii, opacities.
struct LtpStroke {
  int x0, x1, x2, y0, y1, y2;  // x = row, y = column
  int z0, z2;                  // radii in canvas pixels
  double w0, w2;
};

struct LtpDisc {
  int row, col, radius;
  float w;
};

// f: the 10 parameters as double, already checked to be finite and in [0, 1].
SGFAST_HD LtpStroke ltp_stroke(const double* f, int size) {
  const double x0 = f[0], y0 = f[1], x2 = f[4], y2 = f[5];
  const double x1 = dadd(x0, dmul(dsub(x2, x0), f[2]));  // relative control point
  const double y1 = dadd(y0, dmul(dsub(y2, y0), f[3]));
  const double scale = (double)(2 * size - 1);
  LtpStroke s;
  s.x0 = (int)dadd(dmul(x0, scale), 0.5);
  s.x1 = (int)dadd(dmul(x1, scale), 0.5);
  s.x2 = (int)dadd(dmul(x2, scale), 0.5);
  s.y0 = (int)dadd(dmul(y0, scale), 0.5);
  s.y1 = (int)dadd(dmul(y1, scale), 0.5);
  s.y2 = (int)dadd(dmul(y2, scale), 0.5);
  // int(1 + z * size // 2): (z * size) // 2 is a float floor division (exact: halving is exact).
  s.z0 = 1 + (int)floor(dmul(dmul(f[6], (double)size), 0.5));
  s.z2 = 1 + (int)floor(dmul(dmul(f[7], (double)size), 0.5));
  s.w0 = f[8];
  s.w2 = f[9];
  return s;
}

// Disc i of the stroke, evaluated exactly as the Python loop does (t = i * (1. / 100)).
SGFAST_HD LtpDisc ltp_disc(const LtpStroke& s, int i) {
  const double tmp = 1.0 / 100.0;
  const double t = dmul((double)i, tmp);
  const double u = dsub(1.0, t);
  const double a = dmul(u, u), b = dmul(dmul(2.0, t), u), c = dmul(t, t);
  LtpDisc d;
  d.row = (int)dadd(dadd(dmul(a, (double)s.x0), dmul(b, (double)s.x1)), dmul(c, (double)s.x2));
  d.col = (int)dadd(dadd(dmul(a, (double)s.y0), dmul(b, (double)s.y1)), dmul(c, (double)s.y2));
  d.radius = (int)dadd(dmul(u, (double)s.z0), dmul(t, (double)s.z2));
  d.w = (float)dadd(dmul(u, s.w0), dmul(t, s.w2));
  return d;
}

// Largest radius ltp can produce at this size: 1 + floor(size / 2).
SGFAST_HD int ltp_max_radius(int size) { return 1 + size / 2; }

// Offset of radius r's row in the triangular half-width table (entries d = 0..r).
SGFAST_HD int ltp_table_offset(int r) { return r * (r + 1) / 2; }
SGFAST_HD int ltp_table_entries(int rmax) { return ltp_table_offset(rmax + 1); }

// OpenCV's filled circle (cv2.circle, thickness -1, LINE_8, shift 0) is its integer midpoint
// routine filling horizontal spans: per iteration, rows c +- dy over [cx - dx, cx + dx] and rows
// c +- dx over [cx - dy, cx + dy]. out[d] = half-width of the span at row offset d (d = 0..r).
SGFAST_HD void ltp_circle_halfwidths(int r, int* out) {
  for (int d = 0; d <= r; ++d) out[d] = 0;
  int err = 0, dx = r, dy = 0, plus = 1, minus = 2 * r - 1;
  while (dx >= dy) {
    if (out[dy] < dx) out[dy] = dx;
    if (out[dx] < dy) out[dx] = dy;
    dy++;
    err += plus;
    plus += 2;
    if (err > 0) {
      err -= minus;
      dx -= 1;
      minus -= 2;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// exact mode

// Stroke in canvas-side units: B(t) = A t^2 + V t + P0 (row, col), r(t) = r0 + dr t, w(t) = w0 + dw t.
struct ExactStroke {
  double ax, ay, vx, vy, px, py;
  double r0, dr, w0, w2;
  double lo_x, hi_x, lo_y, hi_y;  // bounding box of the union of discs (control hull + max radius)
};

SGFAST_HD double exact_coord(double v) { return (255.0 * v + 0.5) / 256.0; }
SGFAST_HD double exact_radius(double z) { return (1.0 + 64.0 * z) / 256.0; }

SGFAST_HD ExactStroke exact_stroke(const double* f) {
  const double x0 = f[0], y0 = f[1], x2 = f[4], y2 = f[5];
  const double x1 = x0 + (x2 - x0) * f[2];
  const double y1 = y0 + (y2 - y0) * f[3];
  const double X0 = exact_coord(x0), X1 = exact_coord(x1), X2 = exact_coord(x2);
  const double Y0 = exact_coord(y0), Y1 = exact_coord(y1), Y2 = exact_coord(y2);
  ExactStroke s;
  s.ax = X0 - 2.0 * X1 + X2;
  s.ay = Y0 - 2.0 * Y1 + Y2;
  s.vx = 2.0 * (X1 - X0);
  s.vy = 2.0 * (Y1 - Y0);
  s.px = X0;
  s.py = Y0;
  const double r0 = exact_radius(f[6]), r2 = exact_radius(f[7]);
  s.r0 = r0;
  s.dr = r2 - r0;
  s.w0 = f[8];
  s.w2 = f[9];
  const double rmax = r0 > r2 ? r0 : r2;
  s.lo_x = fmin(X0, fmin(X1, X2)) - rmax;
  s.hi_x = fmax(X0, fmax(X1, X2)) + rmax;
  s.lo_y = fmin(Y0, fmin(Y1, Y2)) - rmax;
  s.hi_y = fmax(Y0, fmax(Y1, Y2)) + rmax;
  return s;
}

struct Quartic {
  double c4, c3, c2, c1, c0;
  SGFAST_HD double g(double t) const { return (((c4 * t + c3) * t + c2) * t + c1) * t + c0; }
  SGFAST_HD double dg(double t) const { return ((4.0 * c4 * t + 3.0 * c3) * t + 2.0 * c2) * t + c1; }
};

// Root of a monotone function on [a, b] whose sign differs at the ends, by Newton steps kept inside
// the bracket (bisection when a step leaves it). Returns a point of the final bracket on the side
// where f <= 0 (so the containment predicate holds there), at most kTol from the root.
constexpr double kTol = 1e-12;
constexpr int kMaxSteps = 100;

template <typename F, typename DF>
SGFAST_HD double solve_le0(const F& f, const DF& df, double a, double b, bool le0_at_a) {
  double t = 0.5 * (a + b);
  for (int k = 0; k < kMaxSteps && b - a > kTol; ++k) {
    const double v = f(t);
    if ((v <= 0.0) == le0_at_a) a = t; else b = t;
    double next = t - v / df(t);
    if (!(next > a && next < b)) next = 0.5 * (a + b);  // also catches df = 0 and NaN
    if (fabs(next - t) < 0.25 * kTol) {
      // Newton has converged (maybe from one side): close the bracket around it.
      const double lo = fmax(a, next - kTol), hi = fmin(b, next + kTol);
      if ((f(lo) <= 0.0) == le0_at_a) a = lo; else b = lo;
      if ((f(hi) <= 0.0) == le0_at_a) a = fmax(a, hi); else b = fmin(b, hi);
      break;
    }
    t = next;
  }
  return le0_at_a ? a : b;
}

// Largest t in [0, 1] with |B(t) - p|^2 <= (r(t) + extra)^2; false when there is none.
SGFAST_HD bool exact_largest_t(const ExactStroke& s, double x, double y, double extra, double* t_out) {
  const double dx = s.px - x, dy = s.py - y;
  const double r0 = s.r0 + extra, dr = s.dr;
  Quartic q;
  q.c4 = s.ax * s.ax + s.ay * s.ay;
  q.c3 = 2.0 * (s.ax * s.vx + s.ay * s.vy);
  q.c2 = s.vx * s.vx + s.vy * s.vy + 2.0 * (s.ax * dx + s.ay * dy) - dr * dr;
  q.c1 = 2.0 * (s.vx * dx + s.vy * dy) - 2.0 * r0 * dr;
  q.c0 = dx * dx + dy * dy - r0 * r0;
  if (q.g(1.0) <= 0.0) {
    *t_out = 1.0;
    return true;
  }
  // Breakpoints where g' may change monotonicity: roots of g'' = 12 c4 t^2 + 6 c3 t + 2 c2 in (0, 1).
  double br[4];
  int nb = 0;
  br[nb++] = 0.0;
  {
    const double a = 12.0 * q.c4, b = 6.0 * q.c3, c = 2.0 * q.c2;
    double r1 = -1.0, r2 = -1.0;
    if (a > 1e-300) {
      const double disc = b * b - 4.0 * a * c;
      if (disc > 0.0) {
        // Numerically stable pair of roots.
        const double sq = sqrt(disc);
        const double qq = -0.5 * (b + (b >= 0.0 ? sq : -sq));
        r1 = qq / a;
        r2 = qq != 0.0 ? c / qq : r1;
        if (r1 > r2) { const double tmp = r1; r1 = r2; r2 = tmp; }
      }
    } else if (b != 0.0) {
      r1 = -c / b;
    }
    if (r1 > 0.0 && r1 < 1.0) br[nb++] = r1;
    if (r2 > 0.0 && r2 < 1.0 && r2 > r1) br[nb++] = r2;
    br[nb++] = 1.0;
  }
  // Critical points of g: sign changes of g' on each monotone piece of g'.
  double cp[5];
  int nc = 0;
  cp[nc++] = 0.0;
  auto dgf = [&](double t) { return q.dg(t); };
  auto d2gf = [&](double t) { return (12.0 * q.c4 * t + 6.0 * q.c3) * t + 2.0 * q.c2; };
  for (int k = 0; k + 1 < nb; ++k) {
    const double a = br[k], b = br[k + 1];
    const double da = q.dg(a), db = q.dg(b);
    if ((da <= 0.0) != (db <= 0.0)) cp[nc++] = solve_le0(dgf, d2gf, a, b, da <= 0.0);
  }
  cp[nc++] = 1.0;
  // g is monotone between consecutive critical points: scan the pieces from the right.
  auto gf = [&](double t) { return q.g(t); };
  for (int k = nc - 1; k > 0; --k) {
    const double a = cp[k - 1], b = cp[k];
    // g(b) > 0 is known: b = 1 was tested above, other b's were tested as the previous piece's a.
    if (q.g(a) <= 0.0) {
      *t_out = solve_le0(gf, dgf, a, b, true);
      return true;
    }
  }
  return false;
}

// Opacity of the stroke at t.
SGFAST_HD double exact_value(const ExactStroke& s, double t) { return (1.0 - t) * s.w0 + t * s.w2; }

// Value of output pixel (row i, column j) of a size x size canvas: the mean of w(t*) over ss x ss
// samples. A conservative test first (the stroke's box, then one root search with the radius grown
// by a little over half a pixel diagonal) returns 0 for pixels the stroke cannot reach.
SGFAST_HD double exact_pixel(const ExactStroke& s, int i, int j, int size, int ss) {
  const double px = 1.0 / size;
  const double half_diag = 0.7072 * px;
  const double cx = (i + 0.5) * px, cy = (j + 0.5) * px;
  double t;
  if (cx < s.lo_x - half_diag || cx > s.hi_x + half_diag || cy < s.lo_y - half_diag || cy > s.hi_y + half_diag ||
      !exact_largest_t(s, cx, cy, half_diag, &t)) {
    return 0.0;
  }
  double acc = 0.0;
  for (int a = 0; a < ss; ++a) {
    const double x = (i + (a + 0.5) / ss) * px;
    for (int b = 0; b < ss; ++b) {
      const double y = (j + (b + 0.5) / ss) * px;
      if (exact_largest_t(s, x, y, 0.0, &t)) acc += exact_value(s, t);
    }
  }
  return acc / (static_cast<double>(ss) * ss);
}

}  // namespace raster

// Argument checks shared by the CPU and CUDA entry points (the Python wrapper checks first, with the
// same wording; these guard direct torch.ops.sgfast calls). Returns the mode as a std::string.
inline std::string check_rasterize_args(const at::Tensor& params, int64_t size, c10::string_view mode_sv,
                                        int64_t supersample) {
  const std::string mode(mode_sv.data(), mode_sv.size());
  SGFAST_CHECK_ARG(mode == "ltp" || mode == "exact", "mode", "expected 'ltp' or 'exact', got '", mode, "'");
  SGFAST_CHECK_ARG(size >= 1 && size <= 16384, "size", "expected 1 <= size <= 16384, got ", size);
  SGFAST_CHECK_ARG(supersample >= 1 && supersample <= 64, "supersample", "expected 1 <= supersample <= 64, got ",
                   supersample);
  check_float(params, "params");
  SGFAST_CHECK_ARG(params.dim() == 2 && params.size(1) == 10, "params", "expected shape [N, 10], got ",
                   params.sizes());
  return mode;
}

}  // namespace sgfast
