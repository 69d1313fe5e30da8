// CPU kernels of render_strokes and _render_strokes_backward (math in kernels/render_strokes.h,
// contract in docs/ops/render_strokes.md).
//
// Binning: per image, every stroke is tested against the 16 x 16 tiles of its box; a tile keeps the
// strokes whose piece boxes meet it, in stroke order, with the range of pieces that do (CSR lists,
// built per image in parallel). Work items are bands of 16 rows (a row of tiles) of one image,
// handed out to at::parallel_for's threads dynamically; their pixels are walked row by row, a SIMD
// vector of consecutive pixels walking the list of its tile (pieces culled again per row segment of 8
// pixels), so the cost follows the area the strokes cover, not N x H x W, and no [B, N, H, W] tensor
// exists.
// Backward: per pixel vector, a forward walk records what each covering stroke did (alpha, t^, the
// canvas before it), then a reverse walk accumulates the gradient sums of kernels/render_strokes.h
// per (tile, stroke) in vector lanes; the lanes are summed in a fixed order in double at the end of
// the band, and the tiles in tile order. Nothing depends on which thread renders a band, so results
// are bitwise the same for any thread count (they may differ in the last bits between SIMD levels).
// SIMD: compiled for AVX2 and the base width (SSE2 / NEON), AVX2 picked at run time where the CPU
// has it; SGFAST_CPU_SIMD=base asks for the base width (as composite).
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

// The SIMD vector types below are only passed between force-inlined functions of one target.
#pragma GCC diagnostic ignored "-Wpsabi"
#include "kernels/render_strokes.h"

namespace sgfast {
namespace {

using render::Args;
using render::Cover;
using render::kBasis;
using render::kParams;
using render::kTile;
using render::Stroke;

// Helpers of the tile loops; the SIMD entry points (SGFAST_RENDER_ISA) are
// __attribute__((flatten)), so everything they call is inlined and compiled for their target.
#define SGFAST_LFN inline
// Small helpers on SIMD values: always inlined (never compiled for the base target on their own).
#define SGFAST_LANE inline __attribute__((always_inline))

// ---- Lane policies: Bytes of consecutive pixels as one GCC vector ------------------------------
template <typename T>
struct IntOf;
template <>
struct IntOf<float> {
  using type = int32_t;
};
template <>
struct IntOf<double> {
  using type = int64_t;
};

template <typename T, int Bytes>
struct VecOf {
  typedef T V __attribute__((vector_size(Bytes)));
};

// Square roots of a vector (the intrinsic of each width).
#if defined(__x86_64__) || defined(__i386__)
inline VecOf<float, 16>::V lanes_sqrt(VecOf<float, 16>::V v) { return (VecOf<float, 16>::V)_mm_sqrt_ps((__m128)v); }
inline VecOf<double, 16>::V lanes_sqrt(VecOf<double, 16>::V v) {
  return (VecOf<double, 16>::V)_mm_sqrt_pd((__m128d)v);
}
__attribute__((target("avx2,fma"))) inline VecOf<float, 32>::V lanes_sqrt(VecOf<float, 32>::V v) {
  return (VecOf<float, 32>::V)_mm256_sqrt_ps((__m256)v);
}
__attribute__((target("avx2,fma"))) inline VecOf<double, 32>::V lanes_sqrt(VecOf<double, 32>::V v) {
  return (VecOf<double, 32>::V)_mm256_sqrt_pd((__m256d)v);
}
// Whether any lane of a mask is set.
template <int Bytes>
struct MaskOf {
  typedef int64_t M __attribute__((vector_size(Bytes)));
};
inline bool lanes_any(MaskOf<16>::M m) { return _mm_movemask_epi8((__m128i)m) != 0; }
__attribute__((target("avx2,fma"))) inline bool lanes_any(MaskOf<32>::M m) {
  return !_mm256_testz_si256((__m256i)m, (__m256i)m);
}
#else
template <int Bytes>
struct MaskOf {
  typedef int64_t M __attribute__((vector_size(Bytes)));
};
template <typename M>
inline bool lanes_any(M m) {
  int64_t r = 0;
  for (int l = 0; l < static_cast<int>(sizeof(M) / sizeof(int64_t)); ++l) r |= m[l];
  return r != 0;
}
template <typename V>
inline V lanes_sqrt(V v) {
  for (int l = 0; l < static_cast<int>(sizeof(V) / sizeof(v[0])); ++l) v[l] = std::sqrt(v[l]);
  return v;
}
#endif

template <typename T, int Bytes>
struct Lanes {
  using V = typename VecOf<T, Bytes>::V;
  typedef typename IntOf<T>::type M __attribute__((vector_size(Bytes)));
  static constexpr int kWidth = Bytes / static_cast<int>(sizeof(T));
  static SGFAST_LANE V splat(T x) { return V{} + x; }
  static SGFAST_LANE V vsqrt(V v) { return lanes_sqrt(v); }
  static SGFAST_LANE V sel(M m, V a, V b) { return m ? a : b; }
  static SGFAST_LANE M mand(M a, M b) { return a & b; }
  static SGFAST_LANE M mor(M a, M b) { return a | b; }
  static SGFAST_LANE M mnot(M a) { return ~a; }
  static SGFAST_LANE bool any(M m) { return lanes_any((typename MaskOf<Bytes>::M)m); }
  static SGFAST_LANE bool all(M m) { return !any(~m); }
  static SGFAST_LANE V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static SGFAST_LANE void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
};

// ---- Binning ------------------------------------------------------------------------------------
struct Entry {
  int32_t stroke;
  int16_t q0, q1;  // pieces that meet the tile
};

struct Bins {
  int64_t TH, TW, tiles;      // tiles per image = TH x TW
  std::vector<int64_t> start;  // [B * tiles + 1]: entries of work item (b, tile)
  std::vector<Entry> entries;
};

template <typename T>
std::vector<Stroke<T>> make_strokes(const Args& a) {
  std::vector<Stroke<T>> st(static_cast<size_t>(a.B * a.N));
  const T* f = a.strokes.data_ptr<T>();
  const T softness = static_cast<T>(a.softness);
  at::parallel_for(0, a.B * a.N, 64, [&](int64_t begin, int64_t end) {
    for (int64_t k = begin; k < end; ++k) st[k] = render::make_stroke<T>(f + k * kParams, a.H, a.W, softness);
  });
  return st;
}

template <typename T>
Bins bin_strokes(const Args& a, const std::vector<Stroke<T>>& st) {
  Bins bins;
  bins.TH = render::tiles_along(a.H);
  bins.TW = render::tiles_along(a.W);
  bins.tiles = bins.TH * bins.TW;
  const int64_t tiles = bins.tiles;
  std::vector<std::vector<int64_t>> counts(a.B);
  std::vector<std::vector<Entry>> lists(a.B);
  at::parallel_for(0, a.B, 1, [&](int64_t begin, int64_t end) {
    std::vector<std::pair<int64_t, Entry>> raw;
    for (int64_t b = begin; b < end; ++b) {
      raw.clear();
      for (int64_t n = 0; n < a.N; ++n) {
        const Stroke<T>& s = st[b * a.N + n];
        T lx, hx, ly, hy;
        render::stroke_box(s, &lx, &hx, &ly, &hy);
        int64_t ty0, ty1, tx0, tx1;
        if (!render::tile_span(lx, hx, a.H, &ty0, &ty1) || !render::tile_span(ly, hy, a.W, &tx0, &tx1)) continue;
        for (int64_t ty = ty0; ty <= ty1; ++ty)
          for (int64_t tx = tx0; tx <= tx1; ++tx) {
            T x0, x1, y0, y1;
            render::tile_rect(ty, tx, a.H, a.W, &x0, &x1, &y0, &y1);
            int q0, q1;
            if (render::pieces_in_rect(s, x0, x1, y0, y1, &q0, &q1))
              raw.push_back({ty * bins.TW + tx, Entry{static_cast<int32_t>(n), static_cast<int16_t>(q0),
                                                      static_cast<int16_t>(q1)}});
          }
      }
      // Stable counting sort by tile: each tile's list stays in stroke order.
      std::vector<int64_t>& count = counts[b];
      count.assign(tiles + 1, 0);
      for (const auto& r : raw) ++count[r.first + 1];
      for (int64_t t = 0; t < tiles; ++t) count[t + 1] += count[t];
      std::vector<Entry>& list = lists[b];
      list.resize(raw.size());
      std::vector<int64_t> pos(count.begin(), count.end() - 1);
      for (const auto& r : raw) list[pos[r.first]++] = r.second;
    }
  });
  bins.start.assign(a.B * tiles + 1, 0);
  int64_t total = 0;
  for (int64_t b = 0; b < a.B; ++b) total += static_cast<int64_t>(lists[b].size());
  bins.entries.resize(total);
  int64_t base = 0;
  for (int64_t b = 0; b < a.B; ++b) {
    for (int64_t t = 0; t < tiles; ++t) bins.start[b * tiles + t] = base + counts[b][t];
    if (!lists[b].empty()) std::memcpy(bins.entries.data() + base, lists[b].data(), lists[b].size() * sizeof(Entry));
    base += static_cast<int64_t>(lists[b].size());
  }
  bins.start[a.B * tiles] = base;
  return bins;
}

// ---- Tiles --------------------------------------------------------------------------------------
// Raw pointers of one call.
template <typename T>
struct Ctx {
  int64_t N, H, W, items;  // items = B * TH: bands of a row of tiles
  const Bins* bins;
  const Stroke<T>* st;
  const T *canvas, *mask, *grad_out;
  const bool* layer;
  T inv_softness;
  T *out, *grad_canvas;
  double* partial;  // [entries, kBasis]
};

// A work item: a band of kTile rows of one image (a row of tiles). Its pixels are walked row by row
// across the tiles (memory is read in rows, which the prefetchers follow), each pixel vector
// walking the list of the tile it lies in.
struct BandAt {
  int64_t b, ty, i0, i1;
  int64_t tile0;         // b * tiles + ty * TW: the band's first tile (its tiles are consecutive)
  int64_t first, last;   // the band's entries (its tiles' lists, one after the other)
};

template <typename T>
SGFAST_LFN BandAt band_at(const Ctx<T>& c, int64_t item) {
  const Bins& bins = *c.bins;
  BandAt at;
  at.b = item / bins.TH;
  at.ty = item % bins.TH;
  at.i0 = at.ty * kTile;
  at.i1 = std::min(c.H, at.i0 + kTile);
  at.tile0 = at.b * bins.tiles + at.ty * bins.TW;
  at.first = bins.start[at.tile0];
  at.last = bins.start[at.tile0 + bins.TW];
  return at;
}

// n <= width values from p (the rest 0) as a vector, and back.
template <typename LP, typename T>
SGFAST_LANE typename LP::V load_n(const T* p, int n) {
  if (n == LP::kWidth) return LP::load(p);
  T buf[LP::kWidth] = {};
  for (int l = 0; l < n; ++l) buf[l] = p[l];
  return LP::load(buf);
}

template <typename LP, typename T>
SGFAST_LANE void store_n(T* p, typename LP::V v, int n) {
  if (n == LP::kWidth) return LP::store(p, v);
  T buf[LP::kWidth];
  LP::store(buf, v);
  for (int l = 0; l < n; ++l) p[l] = buf[l];
}

// The pixel centres [y0, y1] of the row segment (kSegment columns of the tile [j0, j1)) holding j.
template <typename T>
SGFAST_LFN void segment_of(int64_t j0, int64_t j1, int64_t j, T* y0, T* y1) {
  const int64_t s0 = j0 + ((j - j0) / render::kSegment) * render::kSegment;
  const int64_t s1 = std::min(j1, s0 + render::kSegment);
  *y0 = static_cast<T>(s0) + T(0.5);
  *y1 = static_cast<T>(s1 - 1) + T(0.5);
}

template <typename T>
SGFAST_LFN bool segment_pieces(const Stroke<T>& s, const Entry& e, T x, T y0, T y1, int* q0, int* q1) {
  return render::row_pieces(s, e.q0, e.q1, x, y0, y1, q0, q1);
}

template <typename LP, typename T>
SGFAST_LANE typename LP::V lane_offsets() {
  typename LP::V v;
  for (int l = 0; l < LP::kWidth; ++l) v[l] = static_cast<T>(l) + T(0.5);
  return v;
}

template <typename LP, typename T>
SGFAST_LFN void forward_band(const Ctx<T>& c, int64_t item) {
  using V = typename LP::V;
  constexpr int kW = LP::kWidth;
  const BandAt at = band_at(c, item);
  const int64_t hw = c.H * c.W, TW = c.bins->TW;
  const int64_t* start = c.bins->start.data();
  const T* canvas = c.canvas + at.b * 3 * hw;
  const T* mask = c.mask != nullptr ? c.mask + at.b * hw : nullptr;
  T* out = c.out + at.b * 3 * hw;
  const Entry* entries = c.bins->entries.data();
  const Stroke<T>* st = c.st + at.b * c.N;
  const V offsets = lane_offsets<LP, T>();
  for (int64_t i = at.i0; i < at.i1; ++i) {
    const T x = static_cast<T>(i) + T(0.5);
    for (int64_t tx = 0; tx < TW; ++tx) {
      const int64_t j0 = tx * kTile, j1 = std::min(c.W, j0 + kTile);
      const int64_t first = start[at.tile0 + tx], last = start[at.tile0 + tx + 1];
      for (int64_t j = j0; j < j1; j += kW) {
        const int n = static_cast<int>(std::min<int64_t>(kW, j1 - j));
        const int64_t p = i * c.W + j;
        V C0 = load_n<LP>(canvas + p, n), C1 = load_n<LP>(canvas + hw + p, n), C2 = load_n<LP>(canvas + 2 * hw + p, n);
        if (first != last) {
          T y0, y1;
          segment_of(j0, j1, j, &y0, &y1);
          const V y = offsets + static_cast<T>(j);
          const V S = mask != nullptr ? load_n<LP>(mask + p, n) : LP::splat(T(0));
          for (int64_t e = first; e < last; ++e) {
            const Entry& en = entries[e];
            const Stroke<T>& s = st[en.stroke];
            int q0, q1;
            if (!segment_pieces(s, en, x, y0, y1, &q0, &q1)) continue;
            const Cover<LP> cv = render::cover<LP>(s, x, y, q0, q1, c.inv_softness);
            if (!LP::any(cv.c > T(0))) continue;
            T gp, gq;
            render::gate_coeffs<T>(mask != nullptr, c.layer, en.stroke, gp, gq);
            const V am = cv.a * (gp + gq * S), keep = T(1) - cv.a;
            C0 = C0 * keep + am * s.col[0];
            C1 = C1 * keep + am * s.col[1];
            C2 = C2 * keep + am * s.col[2];
          }
        }
        store_n<LP>(out + p, C0, n);
        store_n<LP>(out + hw + p, C1, n);
        store_n<LP>(out + 2 * hw + p, C2, n);
      }
    }
  }
}

// What the reverse walk needs of a stroke that covers some lane of a pixel vector.
template <typename LP>
struct Rec {
  int64_t e;  // entry index
  typename LP::V a, c, w, t, G1;  // G1 = w / softness on the ramp, else 0 (dL/ds = dL/dalpha G1)
  typename LP::V C[3];            // canvas before the stroke
};

// Per-thread buffers of the backward. Raw bytes aligned by hand: the alignment of a SIMD vector
// type depends on the target a function is compiled for, so std::vector<V> (compiled for the base
// target) would under-align what the AVX2 code reads.
template <typename LP>
struct Scratch {
  std::vector<unsigned char> rec_bytes, acc_bytes;
  Rec<LP>* recs = nullptr;
  typename LP::V* acc = nullptr;  // [entries of the band, kBasis]

  static void* aligned(std::vector<unsigned char>& bytes, size_t size) {
    bytes.resize(size + 64);
    const uintptr_t p = reinterpret_cast<uintptr_t>(bytes.data());
    return reinterpret_cast<void*>((p + 63) & ~static_cast<uintptr_t>(63));
  }
  void reserve(int64_t longest_list, int64_t entries) {
    recs = static_cast<Rec<LP>*>(aligned(rec_bytes, static_cast<size_t>(longest_list) * sizeof(Rec<LP>)));
    acc = static_cast<typename LP::V*>(aligned(acc_bytes, static_cast<size_t>(entries) * kBasis * sizeof(typename LP::V)));
  }
};

template <typename LP, typename T>
SGFAST_LFN void backward_band(const Ctx<T>& c, int64_t item, Scratch<LP>& sc) {
  using V = typename LP::V;
  constexpr int kW = LP::kWidth;
  const BandAt at = band_at(c, item);
  const int64_t hw = c.H * c.W, TW = c.bins->TW;
  const int64_t* start = c.bins->start.data();
  const T* canvas = c.canvas + at.b * 3 * hw;
  const T* gout = c.grad_out + at.b * 3 * hw;
  const T* mask = c.mask != nullptr ? c.mask + at.b * hw : nullptr;
  T* gcanvas = c.grad_canvas + at.b * 3 * hw;
  const Entry* entries = c.bins->entries.data();
  const Stroke<T>* st = c.st + at.b * c.N;
  const int64_t L = at.last - at.first;
  int64_t longest = 0;
  for (int64_t tx = 0; tx < TW; ++tx) longest = std::max(longest, start[at.tile0 + tx + 1] - start[at.tile0 + tx]);
  sc.reserve(longest, L);
  V* acc_all = sc.acc;
  for (int64_t k = 0; k < L * kBasis; ++k) acc_all[k] = LP::splat(T(0));
  const V offsets = lane_offsets<LP, T>();
  for (int64_t i = at.i0; i < at.i1; ++i) {
    const T x = static_cast<T>(i) + T(0.5);
    for (int64_t tx = 0; tx < TW; ++tx) {
      const int64_t j0 = tx * kTile, j1 = std::min(c.W, j0 + kTile);
      const int64_t first = start[at.tile0 + tx], last = start[at.tile0 + tx + 1];
      if (first == last) {
        for (int ch = 0; ch < 3; ++ch)
          std::memcpy(gcanvas + ch * hw + i * c.W + j0, gout + ch * hw + i * c.W + j0, (j1 - j0) * sizeof(T));
        continue;
      }
      for (int64_t j = j0; j < j1; j += kW) {
        const int n = static_cast<int>(std::min<int64_t>(kW, j1 - j));
        const int64_t p = i * c.W + j;
        T y0, y1;
        segment_of(j0, j1, j, &y0, &y1);
        const V y = offsets + static_cast<T>(j);
        const V S = mask != nullptr ? load_n<LP>(mask + p, n) : LP::splat(T(0));
        V C0 = load_n<LP>(canvas + p, n), C1 = load_n<LP>(canvas + hw + p, n), C2 = load_n<LP>(canvas + 2 * hw + p, n);
        int64_t nrec = 0;
        for (int64_t e = first; e < last; ++e) {
          const Entry& en = entries[e];
          const Stroke<T>& s = st[en.stroke];
          int q0, q1;
          if (!segment_pieces(s, en, x, y0, y1, &q0, &q1)) continue;
          const Cover<LP> cv = render::cover<LP>(s, x, y, q0, q1, c.inv_softness);
          if (!LP::any(cv.c > T(0))) continue;
          Rec<LP>& r = sc.recs[nrec++];
          r.e = e;
          r.a = cv.a;
          r.c = cv.c;
          r.w = cv.w;
          r.t = cv.t;
          r.G1 = LP::sel(cv.ramp, cv.w * c.inv_softness, LP::splat(T(0)));
          r.C[0] = C0;
          r.C[1] = C1;
          r.C[2] = C2;
          T gp, gq;
          render::gate_coeffs<T>(mask != nullptr, c.layer, en.stroke, gp, gq);
          const V am = cv.a * (gp + gq * S), keep = T(1) - cv.a;
          C0 = C0 * keep + am * s.col[0];
          C1 = C1 * keep + am * s.col[1];
          C2 = C2 * keep + am * s.col[2];
        }
        V g0 = load_n<LP>(gout + p, n), g1 = load_n<LP>(gout + hw + p, n), g2 = load_n<LP>(gout + 2 * hw + p, n);
        for (int64_t k = nrec - 1; k >= 0; --k) {
          const Rec<LP>& r = sc.recs[k];
          const Entry& en = entries[r.e];
          const Stroke<T>& s = st[en.stroke];
          T gp, gq;
          render::gate_coeffs<T>(mask != nullptr, c.layer, en.stroke, gp, gq);
          const V m = gp + gq * S;
          const V dA = g0 * (s.col[0] * m - r.C[0]) + g1 * (s.col[1] * m - r.C[1]) + g2 * (s.col[2] * m - r.C[2]);
          V* acc = acc_all + (r.e - at.first) * kBasis;
          const V am = r.a * m;
          acc[10] += g0 * am;
          acc[11] += g1 * am;
          acc[12] += g2 * am;
          const V keep = T(1) - r.a;
          g0 = g0 * keep;
          g1 = g1 * keep;
          g2 = g2 * keep;
          const V dc = dA * r.c;
          acc[8] += dc * (T(1) - r.t);
          acc[9] += dc * r.t;
          if (LP::any(r.G1 != T(0))) render::add_geometry<LP>(s, x, y, r.t, dA * r.G1, acc);
        }
        store_n<LP>(gcanvas + p, g0, n);
        store_n<LP>(gcanvas + hw + p, g1, n);
        store_n<LP>(gcanvas + 2 * hw + p, g2, n);
      }
    }
  }
  // Per (tile, stroke): the lanes in a fixed order, in double (each sum runs over its tile's pixels,
  // rows then vectors, whatever the band).
  for (int64_t e = 0; e < L; ++e)
    for (int k = 0; k < kBasis; ++k) {
      const V v = acc_all[e * kBasis + k];
      double sum = 0.0;
      for (int l = 0; l < kW; ++l) sum += static_cast<double>(v[l]);
      c.partial[(at.first + e) * kBasis + k] = sum;
    }
}

// One pair of item loops per SIMD level, picked at run time (the build uses no -march flags).
// Bands are handed out dynamically, one at a time from one counter, to the threads of one
// at::parallel_for (a busy core does not hold the others back; which thread renders a band changes
// no result).

#define SGFAST_RENDER_ISA(NAME, ATTR, BYTES)                                                        \
  template <typename T>                                                                             \
  ATTR __attribute__((flatten)) void forward_##NAME(const Ctx<T>& c, std::atomic<int64_t>* next) {  \
    for (int64_t i = next->fetch_add(1); i < c.items; i = next->fetch_add(1))                       \
      forward_band<Lanes<T, BYTES>, T>(c, i);                                                       \
  }                                                                                                 \
  template <typename T>                                                                             \
  ATTR __attribute__((flatten)) void backward_##NAME(const Ctx<T>& c, std::atomic<int64_t>* next) { \
    Scratch<Lanes<T, BYTES>> sc;                                                                    \
    for (int64_t i = next->fetch_add(1); i < c.items; i = next->fetch_add(1))                       \
      backward_band<Lanes<T, BYTES>, T>(c, i, sc);                                                  \
  }

SGFAST_RENDER_ISA(base, , 16)  // SSE2 / NEON width

enum class Isa { kBase, kAvx2 };

#if defined(__x86_64__) || defined(__i386__)
SGFAST_RENDER_ISA(avx2, __attribute__((target("avx2,fma"))), 32)

// AVX2 where the CPU has it (also on AVX-512 CPUs: GCC 12 scalarised much of this kernel's 64-byte
// mask logic, 4x slower than AVX2 when measured); SGFAST_CPU_SIMD=base asks for the base width.
Isa detect_isa() {
  __builtin_cpu_init();
  Isa best = Isa::kBase;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) best = Isa::kAvx2;
  const char* want = std::getenv("SGFAST_CPU_SIMD");
  if (want != nullptr && std::strcmp(want, "base") == 0) return Isa::kBase;
  return best;
}
#else
template <typename T>
void forward_avx2(const Ctx<T>& c, std::atomic<int64_t>* next) { forward_base<T>(c, next); }
template <typename T>
void backward_avx2(const Ctx<T>& c, std::atomic<int64_t>* next) { backward_base<T>(c, next); }
Isa detect_isa() { return Isa::kBase; }
#endif

Isa isa() {
  static const Isa value = detect_isa();
  return value;
}

template <typename T>
Ctx<T> make_ctx(const Args& a, const Bins& bins, const std::vector<Stroke<T>>& st) {
  Ctx<T> c{};
  c.N = a.N;
  c.H = a.H;
  c.W = a.W;
  c.items = a.B * bins.TH;
  c.bins = &bins;
  c.st = st.data();
  c.canvas = a.canvas.data_ptr<T>();
  c.mask = a.mask.defined() ? a.mask.data_ptr<T>() : nullptr;
  c.layer = a.layer.defined() ? a.layer.data_ptr<bool>() : nullptr;
  c.inv_softness = static_cast<T>(1.0 / a.softness);
  return c;
}

template <typename T>
void run_forward(const Args& a, T* out) {
  const std::vector<Stroke<T>> st = make_strokes<T>(a);
  const Bins bins = bin_strokes<T>(a, st);
  Ctx<T> c = make_ctx<T>(a, bins, st);
  c.out = out;
  const Isa level = isa();
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    if (level == Isa::kAvx2)
      forward_avx2<T>(c, &next);
    else
      forward_base<T>(c, &next);
  });
}

template <typename T>
void run_backward(const Args& a, const T* grad_out, T* grad_canvas, T* grad_strokes) {
  const std::vector<Stroke<T>> st = make_strokes<T>(a);
  const Bins bins = bin_strokes<T>(a, st);
  std::vector<double> partial(bins.entries.size() * kBasis);
  Ctx<T> c = make_ctx<T>(a, bins, st);
  c.grad_out = grad_out;
  c.grad_canvas = grad_canvas;
  c.partial = partial.data();
  const Isa level = isa();
  std::atomic<int64_t> next{0};
  at::parallel_for(0, at::get_num_threads(), 1, [&](int64_t, int64_t) {
    if (level == Isa::kAvx2)
      backward_avx2<T>(c, &next);
    else
      backward_base<T>(c, &next);
  });
  // Sum over tiles in tile order, then the 13 gradients per stroke.
  const T* f = a.strokes.data_ptr<T>();
  at::parallel_for(0, a.B, 1, [&](int64_t begin, int64_t end) {
    std::vector<double> acc(static_cast<size_t>(a.N * kBasis));
    for (int64_t b = begin; b < end; ++b) {
      std::fill(acc.begin(), acc.end(), 0.0);
      const int64_t e0 = bins.start[b * bins.tiles], e1 = bins.start[(b + 1) * bins.tiles];
      for (int64_t e = e0; e < e1; ++e) {
        double* dst = acc.data() + static_cast<int64_t>(bins.entries[e].stroke) * kBasis;
        const double* src = partial.data() + e * kBasis;
        for (int k = 0; k < kBasis; ++k) dst[k] += src[k];
      }
      for (int64_t n = 0; n < a.N; ++n)
        render::stroke_gradient<T>(f + (b * a.N + n) * kParams, acc.data() + n * kBasis, a.H, a.W,
                                   grad_strokes + (b * a.N + n) * kParams);
    }
  });
}

at::Tensor render_strokes_cpu(const at::Tensor& canvas, const at::Tensor& strokes, const std::optional<at::Tensor>& mask,
                              const std::optional<at::Tensor>& layer, double softness) {
  const Args a = render::check_args(canvas, strokes, mask, layer, softness);
  at::Tensor out = at::empty_like(a.canvas);
  if (out.numel() == 0) return out;
  if (a.N == 0) return out.copy_(a.canvas);
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::render_strokes",
                             [&] { run_forward<scalar_t>(a, out.data_ptr<scalar_t>()); });
  return out;
}

std::tuple<at::Tensor, at::Tensor> render_strokes_backward_cpu(const at::Tensor& grad_out, const at::Tensor& canvas,
                                                               const at::Tensor& strokes,
                                                               const std::optional<at::Tensor>& mask,
                                                               const std::optional<at::Tensor>& layer, double softness) {
  const Args a = render::check_args(canvas, strokes, mask, layer, softness);
  const at::Tensor g = render::check_grad_out(grad_out, a);
  at::Tensor grad_canvas = at::empty_like(a.canvas);
  at::Tensor grad_strokes = at::zeros_like(a.strokes);
  if (a.N == 0) return {grad_canvas.copy_(g), grad_strokes};
  if (grad_canvas.numel() == 0) return {grad_canvas, grad_strokes};
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::_render_strokes_backward", [&] {
    run_backward<scalar_t>(a, g.data_ptr<scalar_t>(), grad_canvas.data_ptr<scalar_t>(),
                           grad_strokes.data_ptr<scalar_t>());
  });
  return {grad_canvas, grad_strokes};
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CPU, m) {
  m.impl("render_strokes", &render_strokes_cpu);
  m.impl("_render_strokes_backward", &render_strokes_backward_cpu);
}

}  // namespace sgfast
