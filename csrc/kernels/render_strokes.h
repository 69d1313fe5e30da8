// render_strokes math shared by the CPU and CUDA kernels (contract: docs/ops/render_strokes.md).
//
// A stroke, in pixels (x = rows scaled by H, y = columns scaled by W, radii by sqrt(H W)):
//   B(t) = A t^2 + V t + P,  R(t) = r0 + dr t,  w(t) = w0 + dw t,  t in [0, 1]
//   f(t) = R(t) - |p - B(t)|,  s(p) = max_t f(t),  t^ = the largest maximiser
//   alpha(p) = clamp(0.5 + s / softness, 0, 1) * w(t^)
// then C = C (1 - alpha) + alpha color gate, in stroke order (composite's recurrence and gates).
//
// Culling: the curve is cut into kPieces equal t intervals ("pieces"); each piece's control hull
// (de Casteljau) bounds it, and its box grown by the piece's largest radius + softness / 2 (+ a
// rounding margin) bounds every pixel where that piece can give alpha > 0. A pixel outside a piece's
// box has f < -softness / 2 on that piece, so the piece cannot hold the maximiser of a pixel with
// alpha > 0: tiles and pixels only search the pieces whose boxes contain them.
//
// Search for s and t^ on the pieces [q0, q1]: f' is sampled at the piece ends; every sign change
// + -> - brackets a local maximum, found by Newton steps on f' kept inside the bracket (bisection
// otherwise); the range ends are candidates when f' points out of the range; the best candidate wins
// (the later one on a tie).
//
// Gradients (envelope theorem): with t^ held fixed, ds/dtheta = df(t^)/dtheta; w(t^) also holds t^
// fixed. Per (tile, stroke) the backward sums kBasis numbers over the tile's pixels (see Basis);
// they become the 13 stroke gradients once summed over tiles (stroke_gradient).
#pragma once
#include <math.h>
#include <stdint.h>

#include "kernels/common.h"

// On the CPU the SIMD entry points are __attribute__((flatten)): these templates are inlined into
// them and compiled for their target.
#if defined(__CUDACC__)
#define SGFAST_RFN __host__ __device__ __forceinline__
#else
#define SGFAST_RFN inline
#endif

namespace sgfast {
namespace render {

constexpr int kPieces = 8;   // t intervals of a stroke (a power of 2: t = q / kPieces is exact)
constexpr int kTile = 16;    // tiles of kTile x kTile pixels
constexpr int kSegment = 8;  // pieces are culled again per row segment of kSegment pixels of a tile
constexpr int kParams = 13;  // x0 y0 x1 y1 x2 y2 z0 z2 w0 w2 r g b
constexpr int kBasis = 13;   // gradient sums per (tile, stroke), see Basis
constexpr int kMaxSteps = 60;

// Newton / bisection tolerance on t.
template <typename T>
SGFAST_RFN T t_tol();
template <>
SGFAST_RFN float t_tol<float>() { return 2e-7f; }
template <>
SGFAST_RFN double t_tol<double>() { return 1e-13; }

// Below d_eps pixels from the centre line, p - B(t^) has no reliable direction (rounding): the
// gradient through |p - B| is taken as 0 there (the kink's symmetric subgradient). d_eps = 8 (H + W)
// times the machine epsilon: a few units in the last place of the coordinates.
template <typename T>
SGFAST_RFN T machine_eps();
template <>
SGFAST_RFN float machine_eps<float>() { return 1.1920929e-7f; }
template <>
SGFAST_RFN double machine_eps<double>() { return 2.220446049250313e-16; }

template <typename T>
SGFAST_RFN T min_(T a, T b) { return a < b ? a : b; }
template <typename T>
SGFAST_RFN T max_(T a, T b) { return a > b ? a : b; }

template <typename T>
struct Stroke {
  T ax, ay, vx, vy, px, py;  // B(t) = A t^2 + V t + P
  T r0, dr;                  // R(t) = r0 + dr t
  T w0, dw;                  // w(t) = w0 + dw t
  T col[3];
  T d_eps;  // see machine_eps
  // f is Lipschitz in t with constant |dr| + max |B'| (|q / d| <= |B'|, and |B'| is largest at an
  // end): on a piece of length h, f <= (f(a) + f(b) + lip_h) / 2 with lip_h = that constant times h.
  // Where that is <= -softness / 2 (f(a) + f(b) + lip_h <= cut = -softness) the piece cannot give
  // alpha > 0 and is not searched.
  T lip_h, cut;
  // B, B' and R at the piece ends t_k = k / kPieces (the scan's samples).
  T sx[kPieces + 1], sy[kPieces + 1], gx[kPieces + 1], gy[kPieces + 1], sr[kPieces + 1];
  // Box of piece q, grown by its reach: pixel centres outside it get no alpha from the piece.
  T lo_x[kPieces], hi_x[kPieces], lo_y[kPieces], hi_y[kPieces];
};

// The numbers of one stroke (13, already checked to be finite and in [0, 1]) on an H x W canvas.
template <typename T>
SGFAST_RFN Stroke<T> make_stroke(const T* f, int64_t H, int64_t W, T softness) {
  const T h = static_cast<T>(H), w = static_cast<T>(W);
  const T rho = static_cast<T>(sqrt(static_cast<double>(H) * static_cast<double>(W)));
  const T x0 = f[0], y0 = f[1], x2 = f[4], y2 = f[5];
  const T x1 = x0 + (x2 - x0) * f[2];
  const T y1 = y0 + (y2 - y0) * f[3];
  const T X0 = (T(255) * x0 + T(0.5)) / T(256) * h, X1 = (T(255) * x1 + T(0.5)) / T(256) * h;
  const T X2 = (T(255) * x2 + T(0.5)) / T(256) * h;
  const T Y0 = (T(255) * y0 + T(0.5)) / T(256) * w, Y1 = (T(255) * y1 + T(0.5)) / T(256) * w;
  const T Y2 = (T(255) * y2 + T(0.5)) / T(256) * w;
  Stroke<T> s;
  s.ax = X0 - T(2) * X1 + X2;
  s.ay = Y0 - T(2) * Y1 + Y2;
  s.vx = T(2) * (X1 - X0);
  s.vy = T(2) * (Y1 - Y0);
  s.px = X0;
  s.py = Y0;
  const T r0 = (T(1) + T(64) * f[6]) / T(256) * rho, r2 = (T(1) + T(64) * f[7]) / T(256) * rho;
  s.r0 = r0;
  s.dr = r2 - r0;
  s.w0 = f[8];
  s.dw = f[9] - f[8];
  s.col[0] = f[10];
  s.col[1] = f[11];
  s.col[2] = f[12];
  s.d_eps = T(8) * (h + w) * machine_eps<T>();
  {
    const T v0 = sqrt(s.vx * s.vx + s.vy * s.vy);
    const T v1x = T(2) * s.ax + s.vx, v1y = T(2) * s.ay + s.vy;
    const T v1 = sqrt(v1x * v1x + v1y * v1y);
    const T lip = (s.dr < T(0) ? -s.dr : s.dr) + (v0 > v1 ? v0 : v1);
    s.lip_h = lip * (T(1.001) / T(kPieces)) + T(1e-3);  // (a little over, for rounding)
    s.cut = -softness;
  }
  for (int k = 0; k <= kPieces; ++k) {
    const T t = T(k) / T(kPieces);
    s.sx[k] = (s.ax * t + s.vx) * t + s.px;
    s.sy[k] = (s.ay * t + s.vy) * t + s.py;
    s.gx[k] = T(2) * s.ax * t + s.vx;
    s.gy[k] = T(2) * s.ay * t + s.vy;
    s.sr[k] = r0 + s.dr * t;
  }
  // Rounding margin of the boxes: well above the error of B, |p - B| and R in T at this size.
  const T margin = T(0.01) + T(4e-6) * (h + w);
  for (int q = 0; q < kPieces; ++q) {
    const T a = T(q) / T(kPieces), b = T(q + 1) / T(kPieces);
    // Control points of B on [a, b]: B(a), B(a) + (b - a) B'(a) / 2, B(b).
    const T qx0 = (s.ax * a + s.vx) * a + s.px, qy0 = (s.ay * a + s.vy) * a + s.py;
    const T qx2 = (s.ax * b + s.vx) * b + s.px, qy2 = (s.ay * b + s.vy) * b + s.py;
    const T half = T(0.5) * (b - a);
    const T qx1 = qx0 + half * (T(2) * s.ax * a + s.vx), qy1 = qy0 + half * (T(2) * s.ay * a + s.vy);
    const T ra = r0 + s.dr * a, rb = r0 + s.dr * b;
    const T reach = (ra > rb ? ra : rb) + T(0.5) * softness + margin;
    s.lo_x[q] = min_(qx0, min_(qx1, qx2)) - reach;
    s.hi_x[q] = max_(qx0, max_(qx1, qx2)) + reach;
    s.lo_y[q] = min_(qy0, min_(qy1, qy2)) - reach;
    s.hi_y[q] = max_(qy0, max_(qy1, qy2)) + reach;
  }
  return s;
}

// Pieces [q0, q1] whose boxes meet the rectangle of pixel centres [x0, x1] x [y0, y1]; false if none.
template <typename T>
SGFAST_RFN bool pieces_in_rect(const Stroke<T>& s, T x0, T x1, T y0, T y1, int* q0, int* q1) {
  int first = -1, last = -1;
  for (int q = 0; q < kPieces; ++q) {
    if (s.lo_x[q] <= x1 && s.hi_x[q] >= x0 && s.lo_y[q] <= y1 && s.hi_y[q] >= y0) {
      if (first < 0) first = q;
      last = q;
    }
  }
  *q0 = first;
  *q1 = last;
  return first >= 0;
}

// ---- The per-pixel search, written once for a lane policy LP ----------------------------------
// LP::V holds the values of one pixel (Scalar below: CUDA threads) or of several consecutive pixels
// of a row (SIMD vectors: csrc/cpu/render_strokes.cpp); LP::M is the matching lane mask. Every lane
// runs the same sequence of operations as the scalar code, so a lane's result does not depend on
// its neighbours (masked lanes only wait).
template <typename T>
struct Scalar {
  using V = T;
  using M = bool;
  static SGFAST_RFN V splat(T v) { return v; }
  static SGFAST_RFN V vsqrt(V v) { return sqrt(v); }
  static SGFAST_RFN V sel(M m, V a, V b) { return m ? a : b; }
  static SGFAST_RFN M mand(M a, M b) { return a && b; }
  static SGFAST_RFN M mor(M a, M b) { return a || b; }
  static SGFAST_RFN M mnot(M a) { return !a; }
  static SGFAST_RFN bool any(M m) { return m; }
  static SGFAST_RFN bool all(M m) { return m; }
};

// The pieces of [e0, e1] that meet the row segment of pixel centres (x, [y0, y1]) (kSegment pixels
// of a tile row, the same on the CPU for any SIMD width and on CUDA).
template <typename T>
SGFAST_RFN bool row_pieces(const Stroke<T>& s, int e0, int e1, T x, T y0, T y1, int* q0, int* q1) {
  int first = -1, last = -1;
  for (int q = e0; q <= e1; ++q) {
    const bool in = (s.lo_x[q] <= x) & (s.hi_x[q] >= x) & (s.lo_y[q] <= y1) & (s.hi_y[q] >= y0);
    first = (in && first < 0) ? q : first;
    last = in ? q : last;
  }
  *q0 = first;
  *q1 = last;
  return first >= 0;
}

// At t, for the pixel centres (x, y), with E = B(t) - p, d = |E| and q = E . B'(t):
//   f = R - d,  f' = dr - q / d,  g = q - dr d = -d f',  g' = |B'|^2 + E . B'' - dr q / d.
// The maximiser is sought as a root of g, which is smooth where f' is not (f has a kink where the
// centre line passes through p, d = 0; g is 0 there). fp = 0 where d = 0.
template <typename LP>
struct Eval {
  typename LP::V f, fp, g, gp;
};

template <typename LP, typename T>
SGFAST_RFN Eval<LP> eval(const Stroke<T>& s, typename LP::V t, T x, typename LP::V y) {
  using V = typename LP::V;
  using M = typename LP::M;
  const V ex = (s.ax * t + s.vx) * t + (s.px - x);
  const V ey = (s.ay * t + s.vy) * t + s.py - y;
  const V bx = T(2) * s.ax * t + s.vx, by = T(2) * s.ay * t + s.vy;
  const V d = LP::vsqrt(ex * ex + ey * ey);
  const M nz = d > T(0);
  const V inv = T(1) / LP::sel(nz, d, LP::splat(T(1)));
  const V q = ex * bx + ey * by;
  const V qd = LP::sel(nz, q * inv, LP::splat(T(0)));
  Eval<LP> e;
  e.f = s.r0 + s.dr * t - d;
  e.fp = s.dr - qd;
  e.fp = LP::sel(nz, e.fp, LP::splat(T(0)));
  e.g = q - s.dr * d;
  e.gp = bx * bx + by * by + T(2) * (ex * s.ax + ey * s.ay) - s.dr * qd;
  return e;
}

// Newton steps on g stop once a step is below this.
template <typename T>
SGFAST_RFN T newton_tol();
template <>
SGFAST_RFN float newton_tol<float>() { return 1e-4f; }
template <>
SGFAST_RFN double newton_tol<double>() { return 1e-7; }

template <typename LP>
struct Hit {
  typename LP::V s, t;
};

// Offers (f, t) where m: the best so far is replaced by a larger f, or by the same f at a larger t
// (t^ is the largest maximiser), whatever the order of the offers.
template <typename LP>
SGFAST_RFN void offer(typename LP::M m, typename LP::V f, typename LP::V t, Hit<LP>& best) {
  const typename LP::M take = LP::mand(m, LP::mor(f > best.s, LP::mand(f == best.s, t > best.t)));
  best.s = LP::sel(take, f, best.s);
  best.t = LP::sel(take, t, best.t);
}

// f, f', g (see eval) and q = (B - p) . B' at sample k (the piece end t_k), from the tables of
// make_stroke.
template <typename LP, typename T>
SGFAST_RFN void sample(const Stroke<T>& s, int k, T x, typename LP::V y, typename LP::V& f, typename LP::V& fp,
                       typename LP::V& g, typename LP::V& q) {
  using V = typename LP::V;
  const T ex = s.sx[k] - x;
  const V ey = s.sy[k] - y;
  const V d = LP::vsqrt(ex * ex + ey * ey);
  q = ex * s.gx[k] + ey * s.gy[k];
  const typename LP::M nz = d > T(0);
  f = s.sr[k] - d;
  fp = LP::sel(nz, s.dr - q / LP::sel(nz, d, LP::splat(T(1))), LP::splat(T(0)));
  g = q - s.dr * d;
}

// Whether f' may change sign inside a piece of length h whose ends have the same sign of f' (m0, m1
// > 0, or both < 0): the derivative of f's cubic Hermite interpolant (f0, m0, f1, m1) reaches the
// other sign inside. That interpolant's derivative is, for s in [0, 1] along the piece,
//   p'(s) = m0 (1 - 4s + 3s^2) + m1 (3s^2 - 2s) + 6 D (s - s^2),  D = (f1 - f0) / h.
template <typename LP, typename T>
SGFAST_RFN typename LP::M hermite_turns(typename LP::V f0, typename LP::V m0, typename LP::V f1,
                                        typename LP::V m1, T h) {
  using V = typename LP::V;
  using M = typename LP::M;
  const V D = (f1 - f0) * (T(1) / h);
  const V A = T(3) * (m0 + m1) - T(6) * D, B = T(6) * D - T(4) * m0 - T(2) * m1;
  // p' = A s^2 + B s + m0 has its extremum at s* = -B / (2 A), of value m0 - B^2 / (4 A). With
  // m0, m1 > 0 it dips below 0 inside iff A > 0, 0 < s* < 1 and B^2 > 4 A m0; with m0, m1 < 0 it rises
  // above 0 iff A < 0, 0 < s* < 1 and again B^2 > 4 A m0 (no division).
  const V twoA = T(2) * A;
  const M big = B * B > T(4) * A * m0;
  const M pos = LP::mand(LP::mand(m0 > T(0), m1 > T(0)), LP::mand(A > T(0), LP::mand(B < T(0), B > -twoA)));
  const M neg = LP::mand(LP::mand(m0 < T(0), m1 < T(0)), LP::mand(A < T(0), LP::mand(B > T(0), B < -twoA)));
  return LP::mand(big, LP::mor(pos, neg));
}

// The maximum of f on [a, b] (per lane) in lanes `act`, where f' goes from + to - (g = -d f' from
// ga < 0 to gb > 0, as sampled): Newton steps on g inside the shrinking bracket (bisection when a step
// leaves it), from the regula falsi point. Once a step is below newton_tol, s = f + f' step (exact
// where f is piecewise linear, at a kink; off by f'' step^2 / 2 at a smooth maximum).
template <typename LP, typename T>
SGFAST_RFN void solve_bracket(const Stroke<T>& s, typename LP::V a, typename LP::V b, typename LP::V ga,
                              typename LP::V gb, T x, typename LP::V y, typename LP::M act, Hit<LP>& best) {
  using V = typename LP::V;
  using M = typename LP::M;
  M live = act;
  V lo = a, hi = b;
  V t = a + (b - a) * (ga / LP::sel(live, ga - gb, LP::splat(T(1))));
  t = LP::sel(LP::mand(t >= lo, t <= hi), t, T(0.5) * (a + b));
  M done = LP::mand(live, LP::mnot(live));  // lanes whose f is taken at t after the loop
  for (int it = 0; it < kMaxSteps && LP::any(live); ++it) {
    const Eval<LP> e = eval<LP>(s, t, x, y);
    const M up = e.g < T(0), down = e.g > T(0);  // the maximum lies right / left of t
    lo = LP::sel(LP::mand(live, up), t, lo);
    hi = LP::sel(LP::mand(live, down), t, hi);
    const M zero = LP::mand(live, LP::mnot(LP::mor(up, down)));
    offer<LP>(zero, e.f, t, best);
    live = LP::mand(live, LP::mnot(zero));
    const V step = -e.g / LP::sel(e.gp > T(0), e.gp, LP::splat(T(1)));
    const V next = t + step;
    const M newton = LP::mand(live, LP::mand(e.gp > T(0), LP::mand(next >= lo, next <= hi)));
    const V astep = LP::sel(step < T(0), -step, step);
    const M conv = LP::mand(newton, astep <= newton_tol<T>());
    offer<LP>(conv, e.f + e.fp * step, next, best);
    const M bisect = LP::mand(live, LP::mnot(newton));
    const V mid = T(0.5) * (lo + hi);
    t = LP::sel(newton, next, LP::sel(bisect, mid, t));
    const M narrow = LP::mand(bisect, (hi - lo) <= t_tol<T>());
    done = LP::mor(done, narrow);
    live = LP::mand(live, LP::mnot(LP::mor(conv, narrow)));
  }
  done = LP::mor(done, live);  // out of steps
  if (LP::any(done)) offer<LP>(done, eval<LP>(s, t, x, y).f, t, best);
}

// A piece whose ends have the same sign of f' but where f' may change sign inside (hermite_turns: a
// maximum and a minimum between the samples; or the closest point of the curve to p lies inside) is
// scanned again in kSub sub-pieces, each lane's first + -> - bracket there solved, every sub-sample
// offered as well.
constexpr int kSub = 8;

template <typename LP, typename T>
SGFAST_RFN void search_piece(const Stroke<T>& s, T a, T b, T x, typename LP::V y, typename LP::M act,
                             Hit<LP>& best) {
  using V = typename LP::V;
  using M = typename LP::M;
  const T h = (b - a) / T(kSub);
  Eval<LP> ep = eval<LP>(s, LP::splat(a), x, y);
  V b1 = LP::splat(b), ga = LP::splat(T(-1)), gb = LP::splat(T(1));
  M has1 = LP::mand(act, LP::mnot(act));
  for (int j = 1; j <= kSub; ++j) {
    const T tj = j == kSub ? b : a + T(j) * h;
    const Eval<LP> ej = eval<LP>(s, LP::splat(tj), x, y);
    offer<LP>(act, ej.f, LP::splat(tj), best);
    const M first = LP::mand(LP::mand(act, LP::mnot(has1)), LP::mand(ep.fp > T(0), ej.fp < T(0)));
    b1 = LP::sel(first, LP::splat(tj), b1);
    ga = LP::sel(first, ep.g, ga);
    gb = LP::sel(first, ej.g, gb);
    has1 = LP::mor(has1, first);
    ep = ej;
  }
  if (LP::any(has1)) solve_bracket<LP>(s, b1 - h, b1, ga, gb, x, y, has1, best);
}

// s(p) and t^ searched on pieces [q0, q1] (t in [q0 / kPieces, (q1 + 1) / kPieces]) from f and f' at
// the piece ends: the left end where f' <= 0 there, the right end where f' >= 0, samples where
// f' = 0, the maximum inside each piece where f' goes from + to -, and pieces where it may do so
// between the samples (search_piece); pieces whose Lipschitz bound (Stroke::lip_h) stays below
// -softness / 2 are skipped: their maximum, were it the largest, would give alpha = 0 all the same.
// Each lane keeps its first two + -> - pieces for one vector
// solve each; a third (rare: f has at most a few local maxima) is solved on the spot.
template <typename LP, typename T>
SGFAST_RFN Hit<LP> search(const Stroke<T>& s, T x, typename LP::V y, int q0, int q1) {
  using V = typename LP::V;
  using M = typename LP::M;
  Hit<LP> best;
  best.s = LP::splat(-INFINITY);
  best.t = LP::splat(T(0));
  const int k0 = q0, k1 = q1 + 1;
  const T step = T(1) / T(kPieces);
  V pf, pfp, pg, pq;
  sample<LP>(s, k0, x, y, pf, pfp, pg, pq);
  offer<LP>(pfp <= T(0), pf, LP::splat(T(k0) * step), best);
  // Right ends and the g at both ends of each lane's first two brackets.
  V b1 = LP::splat(T(0)), b2 = b1, ga1 = b1, gb1 = b1, ga2 = b1, gb2 = b1;
  M has1 = LP::mand(pfp > T(0), pfp <= T(0)), has2 = has1;
  for (int k = k0 + 1; k <= k1; ++k) {
    V fk, fpk, gk, qk;
    sample<LP>(s, k, x, y, fk, fpk, gk, qk);
    const T tk = T(k) * step;
    const M reach = pf + fk + s.lip_h > s.cut;  // the piece can give alpha > 0
    M m = LP::mand(reach, LP::mand(pfp > T(0), fpk < T(0)));
    if (LP::any(m)) {
      const M third = LP::mand(m, has2);
      if (LP::any(third)) solve_bracket<LP>(s, LP::splat(tk - step), LP::splat(tk), pg, gk, x, y, third, best);
      const M second = LP::mand(LP::mand(m, has1), LP::mnot(has2));
      b2 = LP::sel(second, LP::splat(tk), b2);
      ga2 = LP::sel(second, pg, ga2);
      gb2 = LP::sel(second, gk, gb2);
      has2 = LP::mor(has2, second);
      const M first = LP::mand(m, LP::mnot(has1));
      b1 = LP::sel(first, LP::splat(tk), b1);
      ga1 = LP::sel(first, pg, ga1);
      gb1 = LP::sel(first, gk, gb1);
      has1 = LP::mor(has1, first);
    }
    // The curve passes its closest point to p inside (q from - to +) with no bracket: near the centre
    // line f' swings there faster than the Hermite test can see.
    const M closest = LP::mand(LP::mand(pq < T(0), qk > T(0)), LP::mnot(LP::mand(pfp > T(0), fpk < T(0))));
    m = LP::mand(reach, LP::mor(hermite_turns<LP>(pf, pfp, fk, fpk, step), closest));
    if (LP::any(m)) search_piece<LP>(s, tk - step, tk, x, y, m, best);
    m = k == k1 ? fpk >= T(0) : fpk == T(0);
    offer<LP>(m, fk, LP::splat(tk), best);
    pf = fk;
    pfp = fpk;
    pg = gk;
    pq = qk;
  }
  if (LP::any(has1)) solve_bracket<LP>(s, b1 - step, b1, ga1, gb1, x, y, has1, best);
  if (LP::any(has2)) solve_bracket<LP>(s, b2 - step, b2, ga2, gb2, x, y, has2, best);
  return best;
}

// What a pixel needs of a stroke: coverage c = clamp(0.5 + s / softness, 0, 1), t^, the opacity
// w(t^), alpha = c w, and whether c is on its ramp (0 < . < 1: geometry gradients). Lanes with
// c = 0 have alpha = 0 and add nothing to any gradient.
template <typename LP>
struct Cover {
  typename LP::V c, t, w, a;
  typename LP::M ramp;
};

template <typename LP, typename T>
SGFAST_RFN Cover<LP> cover(const Stroke<T>& s, T x, typename LP::V y, int q0, int q1, T inv_softness) {
  using V = typename LP::V;
  using M = typename LP::M;
  const Hit<LP> h = search<LP>(s, x, y, q0, q1);
  const V v = T(0.5) + h.s * inv_softness;
  const M in = v > T(0);
  Cover<LP> cv;
  cv.ramp = LP::mand(in, v < T(1));
  cv.c = LP::sel(cv.ramp, v, LP::sel(in, LP::splat(T(1)), LP::splat(T(0))));
  cv.t = LP::sel(in, h.t, LP::splat(T(0)));
  cv.w = s.w0 + s.dw * cv.t;
  cv.a = cv.c * cv.w;
  return cv;
}

// Gradient sums of one (tile, stroke), over the tile's pixels, with G = dL/ds, A = dL/dalpha,
// u = (p - B(t^)) / |p - B(t^)| and the Bernstein weights b0 = (1-t)^2, b1 = 2t(1-t), b2 = t^2:
//   0-2: sum G u_x b0, G u_x b1, G u_x b2     3-5: the same with u_y
//   6-7: sum G (1 - t), G t                   8-9: sum A c (1 - t), A c t
//   10-12: sum g_ch alpha gate (the colour gradient, g = dL/dC after the stroke)
// add_geometry adds terms 0-7 (G = 0 off the ramp).
template <typename LP, typename T>
SGFAST_RFN void add_geometry(const Stroke<T>& s, T x, typename LP::V y, typename LP::V t, typename LP::V G,
                             typename LP::V* acc) {
  using V = typename LP::V;
  const V ex = x - ((s.ax * t + s.vx) * t + s.px);
  const V ey = y - ((s.ay * t + s.vy) * t + s.py);
  const V d = LP::vsqrt(ex * ex + ey * ey);
  const typename LP::M far = d > s.d_eps;
  const V Gd = LP::sel(far, G / LP::sel(far, d, LP::splat(T(1))), LP::splat(T(0)));
  const V gx = Gd * ex, gy = Gd * ey;
  const V u = T(1) - t;
  const V b0 = u * u, b1 = T(2) * t * u, b2 = t * t;
  acc[0] += gx * b0;
  acc[1] += gx * b1;
  acc[2] += gx * b2;
  acc[3] += gy * b0;
  acc[4] += gy * b1;
  acc[5] += gy * b2;
  acc[6] += G * u;
  acc[7] += G * t;
}

// The 13 stroke gradients from the summed basis (f: the stroke's numbers).
template <typename T>
SGFAST_RFN void stroke_gradient(const T* f, const double* acc, int64_t H, int64_t W, T* grad) {
  const double kx = static_cast<double>(H) * 255.0 / 256.0, ky = static_cast<double>(W) * 255.0 / 256.0;
  const double kz = sqrt(static_cast<double>(H) * static_cast<double>(W)) * 64.0 / 256.0;
  const double x0 = f[0], y0 = f[1], x1 = f[2], y1 = f[3], x2 = f[4], y2 = f[5];
  grad[0] = static_cast<T>(kx * (acc[0] + (1.0 - x1) * acc[1]));
  grad[2] = static_cast<T>(kx * (x2 - x0) * acc[1]);
  grad[4] = static_cast<T>(kx * (acc[2] + x1 * acc[1]));
  grad[1] = static_cast<T>(ky * (acc[3] + (1.0 - y1) * acc[4]));
  grad[3] = static_cast<T>(ky * (y2 - y0) * acc[4]);
  grad[5] = static_cast<T>(ky * (acc[5] + y1 * acc[4]));
  grad[6] = static_cast<T>(kz * acc[6]);
  grad[7] = static_cast<T>(kz * acc[7]);
  grad[8] = static_cast<T>(acc[8]);
  grad[9] = static_cast<T>(acc[9]);
  grad[10] = static_cast<T>(acc[10]);
  grad[11] = static_cast<T>(acc[11]);
  grad[12] = static_cast<T>(acc[12]);
}

// Colour gate m = p + q S of stroke k (composite's): (1, 0) without a mask, (0, 1) foreground,
// (1, -1) background.
template <typename T>
SGFAST_RFN void gate_coeffs(bool has_mask, const bool* layer, int64_t k, T& p, T& q) {
  if (!has_mask) {
    p = T(1);
    q = T(0);
  } else if (layer == nullptr || layer[k]) {
    p = T(0);
    q = T(1);
  } else {
    p = T(1);
    q = T(-1);
  }
}

// Tile grid of an H x W canvas.
SGFAST_HD int64_t tiles_along(int64_t n) { return (n + kTile - 1) / kTile; }

// Tiles [*a, *b] along one side of n pixels whose pixel centres (i + 0.5) can lie in [lo, hi].
template <typename T>
SGFAST_RFN bool tile_span(T lo, T hi, int64_t n, int64_t* a, int64_t* b) {
  const double l = static_cast<double>(lo) - 0.5, h = static_cast<double>(hi) - 0.5;
  if (h < 0.0 || l > static_cast<double>(n - 1)) return false;
  const int64_t i0 = l <= 0.0 ? 0 : static_cast<int64_t>(ceil(l));
  const int64_t i1 = h >= static_cast<double>(n - 1) ? n - 1 : static_cast<int64_t>(floor(h));
  if (i0 > i1) return false;
  *a = i0 / kTile;
  *b = i1 / kTile;
  return true;
}

// Bounds of all pieces' boxes.
template <typename T>
SGFAST_RFN void stroke_box(const Stroke<T>& s, T* lx, T* hx, T* ly, T* hy) {
  T a = s.lo_x[0], b = s.hi_x[0], c = s.lo_y[0], d = s.hi_y[0];
  for (int q = 1; q < kPieces; ++q) {
    a = min_(a, s.lo_x[q]);
    b = max_(b, s.hi_x[q]);
    c = min_(c, s.lo_y[q]);
    d = max_(d, s.hi_y[q]);
  }
  *lx = a;
  *hx = b;
  *ly = c;
  *hy = d;
}

// The pixel-centre rectangle of tile (ty, tx).
template <typename T>
SGFAST_RFN void tile_rect(int64_t ty, int64_t tx, int64_t H, int64_t W, T* x0, T* x1, T* y0, T* y1) {
  const int64_t i0 = ty * kTile, j0 = tx * kTile;
  const int64_t i1 = (i0 + kTile < H ? i0 + kTile : H) - 1, j1 = (j0 + kTile < W ? j0 + kTile : W) - 1;
  *x0 = static_cast<T>(i0) + T(0.5);
  *x1 = static_cast<T>(i1) + T(0.5);
  *y0 = static_cast<T>(j0) + T(0.5);
  *y1 = static_cast<T>(j1) + T(0.5);
}

}  // namespace render
}  // namespace sgfast

// ---- Host side: argument checks shared by the CPU and CUDA entry points. ----
#ifndef SGFAST_RENDER_MATH_ONLY  // (defined by stand-alone tests of the math above)
#include <cmath>
#include <optional>

#include "checks.h"

namespace sgfast {
namespace render {

struct Args {
  at::Tensor canvas, strokes, mask, layer;  // contiguous; mask / layer undefined when absent
  int64_t B, N, H, W;
  double softness;
};

inline Args check_args(const at::Tensor& canvas, const at::Tensor& strokes, const std::optional<at::Tensor>& mask,
                       const std::optional<at::Tensor>& layer, double softness) {
  check_dim(canvas, 4, "canvas", "[B, 3, H, W]");
  SGFAST_CHECK_ARG(canvas.size(1) == 3, "canvas", "expected 3 channels [B, 3, H, W], got shape ", canvas.sizes());
  check_float(canvas, "canvas");
  const int64_t B = canvas.size(0), H = canvas.size(2), W = canvas.size(3);
  SGFAST_CHECK_ARG(H <= (int64_t(1) << 24) && W <= (int64_t(1) << 24), "canvas", "sides up to 2^24 pixels, got ",
                   canvas.sizes());
  check_dim(strokes, 3, "strokes", "[B, N, 13]");
  SGFAST_CHECK_ARG(strokes.size(0) == B && strokes.size(2) == kParams, "strokes", "expected [B, N, 13] = [", B,
                   ", N, 13], got ", strokes.sizes());
  SGFAST_CHECK_ARG(strokes.scalar_type() == canvas.scalar_type(), "strokes", "expected dtype ", canvas.scalar_type(),
                   " (the canvas dtype), got ", strokes.scalar_type());
  check_same_device(canvas, strokes, "strokes");
  SGFAST_CHECK_ARG(std::isfinite(softness) && softness > 0.0, "softness", "expected a finite number of pixels > 0, got ",
                   softness);
  const int64_t N = strokes.size(1);
  SGFAST_CHECK_ARG(N < (int64_t(1) << 31), "strokes", "at most 2^31 - 1 strokes per image, got ", N);
  Args args{canvas.contiguous(), strokes.contiguous(), at::Tensor(), at::Tensor(), B, N, H, W, softness};
  if (mask.has_value() && mask->defined()) {
    const at::Tensor& m = *mask;
    check_dim(m, 4, "mask", "[B, 1, H, W]");
    SGFAST_CHECK_ARG(m.size(0) == B && m.size(1) == 1 && m.size(2) == H && m.size(3) == W, "mask",
                     "expected [B, 1, H, W] = [", B, ", 1, ", H, ", ", W, "], got ", m.sizes());
    SGFAST_CHECK_ARG(m.scalar_type() == canvas.scalar_type(), "mask", "expected dtype ", canvas.scalar_type(),
                     " (the canvas dtype), got ", m.scalar_type());
    check_same_device(canvas, m, "mask");
    args.mask = m.contiguous();
  }
  if (layer.has_value() && layer->defined()) {
    const at::Tensor& f = *layer;
    check_dim(f, 1, "layer", "[N]");
    SGFAST_CHECK_ARG(f.size(0) == N, "layer", "expected [N] = [", N, "], got ", f.sizes());
    SGFAST_CHECK_ARG(f.scalar_type() == at::kBool, "layer", "expected dtype bool, got ", f.scalar_type());
    check_same_device(canvas, f, "layer");
    args.layer = f.contiguous();
  }
  // Finite and in [0, 1]: the binning indexes tiles with these values. One device sync on CUDA.
  if (args.strokes.numel() > 0) {
    const at::Tensor& s = args.strokes;
    const bool bad = ((~at::isfinite(s)) | (s < 0) | (s > 1)).any().item<bool>();
    if (bad) {
      // ValueError, as the Python wrapper's check on the CPU (which the wrapper skips on CUDA).
      TORCH_CHECK_VALUE(at::isfinite(s).all().item<bool>(), "sgfast: argument 'strokes': contains NaN or inf");
      TORCH_CHECK_VALUE(false, "sgfast: argument 'strokes': values must lie in [0, 1] (they are not clamped), got min ",
                        s.min().item<double>(), ", max ", s.max().item<double>());
    }
  }
  return args;
}

inline at::Tensor check_grad_out(const at::Tensor& grad_out, const Args& args) {
  SGFAST_CHECK_ARG(grad_out.sizes() == args.canvas.sizes(), "grad_out", "expected shape ", args.canvas.sizes(),
                   ", got ", grad_out.sizes());
  SGFAST_CHECK_ARG(grad_out.scalar_type() == args.canvas.scalar_type(), "grad_out", "expected dtype ",
                   args.canvas.scalar_type(), ", got ", grad_out.scalar_type());
  check_same_device(args.canvas, grad_out, "grad_out");
  return grad_out.contiguous();
}

}  // namespace render
}  // namespace sgfast
#endif  // SGFAST_RENDER_MATH_ONLY
