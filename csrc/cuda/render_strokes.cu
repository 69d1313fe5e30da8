// CUDA kernels of render_strokes and _render_strokes_backward (math in kernels/render_strokes.h,
// contract in docs/ops/render_strokes.md). Compile-checked only so far: no GPU has run them yet.
//
// Binning on the device, without atomics: one thread per stroke counts, then writes, its
// (tile, stroke) entries (tiles in order) at offsets from a prefix sum; the entries are sorted by the
// key (image, tile, stroke) with at::sort (keys are unique, so the order is fixed) and each tile's
// range found with at::searchsorted. One block of 16 x 16 threads per (image, tile), one thread per
// pixel, walks the tile's list in stroke order, as the CPU kernel does (the same per-row piece
// culling and search, kernels/render_strokes.h, with one pixel per lane).
// Backward: the tile's list is walked back in chunks of kChunk strokes; each chunk recomputes the
// canvas before it by a forward pass (nothing per stroke is stored), records its strokes, and sums each
// stroke's kBasis gradient terms over the block in a fixed order (warp shuffles, then warps) into
// that (tile, stroke)'s slot; one thread per stroke then sums its slots in tile order, in double.
// The grids depend on the shape only: two runs give bitwise equal results.
#include <torch/library.h>

#include "cuda/cuda_utils.cuh"
#include "kernels/render_strokes.h"

namespace sgfast {
namespace {

using render::Args;
using render::Cover;
using render::kBasis;
using render::kParams;
using render::kTile;
using render::Scalar;
using render::Stroke;

constexpr int kBlock = kTile * kTile;  // one thread per pixel of a tile
constexpr int kWarps = kBlock / 32;
constexpr int kChunk = 16;            // strokes recorded at once by the backward
constexpr int kLoopThreads = 256;

inline unsigned loop_blocks(int64_t n) {
  const int64_t b = (n + kLoopThreads - 1) / kLoopThreads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535 * 32 ? 65535 * 32 : b));
}

inline unsigned tile_blocks(int64_t items) {
  return static_cast<unsigned>(items < 1 ? 1 : (items > (int64_t(1) << 20) ? (int64_t(1) << 20) : items));
}

#define SGFAST_RENDER_LOOP(i, n) \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (int64_t)blockDim.x * gridDim.x)

// Entry of a tile's list: stroke index | q0 << 32 | q1 << 40.
__device__ __forceinline__ int64_t pack_entry(int64_t n, int q0, int q1) {
  return n | (static_cast<int64_t>(q0) << 32) | (static_cast<int64_t>(q1) << 40);
}
__device__ __forceinline__ void unpack_entry(int64_t v, int64_t* n, int* q0, int* q1) {
  *n = v & 0xffffffffLL;
  *q0 = static_cast<int>((v >> 32) & 0xff);
  *q1 = static_cast<int>((v >> 40) & 0xff);
}

template <typename T>
__global__ void make_strokes_kernel(int64_t count, const T* __restrict__ f, int64_t H, int64_t W, T softness,
                                    Stroke<T>* __restrict__ st) {
  SGFAST_RENDER_LOOP(k, count) { st[k] = render::make_stroke<T>(f + k * kParams, H, W, softness); }
}

// Per stroke: its (tile, pieces) entries, counted (keys == nullptr) or written from offset[k].
template <typename T>
__global__ void bin_kernel(int64_t count, int64_t N, int64_t H, int64_t W, int64_t TW, int64_t tiles,
                           const Stroke<T>* __restrict__ st, int64_t* __restrict__ counts,
                           const int64_t* __restrict__ offsets, int64_t* __restrict__ keys,
                           int64_t* __restrict__ items, int64_t* __restrict__ entries) {
  SGFAST_RENDER_LOOP(k, count) {
    const Stroke<T>& s = st[k];
    const int64_t b = k / N, n = k - b * N;
    int64_t emitted = 0;
    T lx, hx, ly, hy;
    render::stroke_box(s, &lx, &hx, &ly, &hy);
    int64_t ty0, ty1, tx0, tx1;
    if (render::tile_span(lx, hx, H, &ty0, &ty1) && render::tile_span(ly, hy, W, &tx0, &tx1)) {
      for (int64_t ty = ty0; ty <= ty1; ++ty)
        for (int64_t tx = tx0; tx <= tx1; ++tx) {
          T x0, x1, y0, y1;
          render::tile_rect(ty, tx, H, W, &x0, &x1, &y0, &y1);
          int q0, q1;
          if (!render::pieces_in_rect(s, x0, x1, y0, y1, &q0, &q1)) continue;
          if (keys != nullptr) {
            const int64_t at = offsets[k] + emitted;
            const int64_t item = b * tiles + ty * TW + tx;
            items[at] = item;
            keys[at] = item * N + n;
            entries[at] = pack_entry(n, q0, q1);
          }
          ++emitted;
        }
    }
    if (keys == nullptr) counts[k] = emitted;
  }
}

__global__ void invert_kernel(int64_t count, const int64_t* __restrict__ perm, int64_t* __restrict__ inv) {
  SGFAST_RENDER_LOOP(j, count) { inv[perm[j]] = j; }
}

// The binned strokes of one call.
struct Binned {
  at::Tensor strokes;  // bytes of B * N Stroke<T>
  at::Tensor start;    // [B * tiles + 1] entries of work item (b, tile)
  at::Tensor entries;  // [total] packed, sorted by (image, tile, stroke)
  at::Tensor offsets;  // [B * N] first emitted entry of each stroke (emission order)
  at::Tensor counts;   // [B * N]
  at::Tensor perm;     // [total] emission index of each sorted entry
  int64_t TW = 0, tiles = 0, total = 0;
};

template <typename T>
Binned bin(const Args& a) {
  Binned r;
  const int64_t BN = a.B * a.N;
  const auto opts = a.canvas.options();
  const auto longs = opts.dtype(at::kLong);
  r.strokes = at::empty({static_cast<int64_t>(BN * sizeof(Stroke<T>))}, opts.dtype(at::kByte));
  Stroke<T>* st = reinterpret_cast<Stroke<T>*>(r.strokes.data_ptr<uint8_t>());
  make_strokes_kernel<T><<<loop_blocks(BN), kLoopThreads, 0, current_stream()>>>(
      BN, a.strokes.data_ptr<T>(), a.H, a.W, static_cast<T>(a.softness), st);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const int64_t TH = render::tiles_along(a.H);
  r.TW = render::tiles_along(a.W);
  r.tiles = TH * r.TW;
  r.counts = at::empty({BN}, longs);
  bin_kernel<T><<<loop_blocks(BN), kLoopThreads, 0, current_stream()>>>(
      BN, a.N, a.H, a.W, r.TW, r.tiles, st, r.counts.data_ptr<int64_t>(), nullptr, nullptr, nullptr, nullptr);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  const at::Tensor inclusive = at::cumsum(r.counts, 0);
  r.offsets = inclusive - r.counts;
  r.total = inclusive[BN - 1].item<int64_t>();  // one sync: the size of the lists
  at::Tensor keys = at::empty({r.total}, longs), items = at::empty({r.total}, longs);
  at::Tensor entries = at::empty({r.total}, longs);
  if (r.total > 0) {
    bin_kernel<T><<<loop_blocks(BN), kLoopThreads, 0, current_stream()>>>(
        BN, a.N, a.H, a.W, r.TW, r.tiles, st, r.counts.data_ptr<int64_t>(), r.offsets.data_ptr<int64_t>(),
        keys.data_ptr<int64_t>(), items.data_ptr<int64_t>(), entries.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  // Unique keys: the sorted order, and so every tile's list, is fixed.
  auto sorted = at::sort(keys, 0, false);
  r.perm = std::get<1>(sorted);
  r.entries = entries.index_select(0, r.perm).contiguous();
  const at::Tensor sorted_items = items.index_select(0, r.perm).contiguous();
  r.start = at::searchsorted(sorted_items, at::arange(a.B * r.tiles + 1, longs)).contiguous();
  return r;
}

// The pixel centres [y0, y1] of the row segment (kSegment columns of the tile) of column j0 + lj.
template <typename T>
__device__ __forceinline__ void segment_of(int64_t j0, int lj, int64_t W, T* y0, T* y1) {
  const int64_t s0 = j0 + (lj / render::kSegment) * render::kSegment;
  const int64_t s1 = s0 + render::kSegment < W ? s0 + render::kSegment : W;
  *y0 = static_cast<T>(s0) + T(0.5);
  *y1 = static_cast<T>(s1 - 1) + T(0.5);
}

template <typename T>
__device__ __forceinline__ T load_or(const T* p, bool valid, T fallback) {
  return valid ? *p : fallback;
}

template <typename T>
__global__ void forward_kernel(int64_t count, int64_t tiles, int64_t TW, int64_t H, int64_t W, int64_t N,
                               const Stroke<T>* __restrict__ st, const int64_t* __restrict__ start,
                               const int64_t* __restrict__ entries, const T* __restrict__ canvas,
                               const T* __restrict__ mask, const bool* __restrict__ layer, T inv_softness,
                               T* __restrict__ out) {
  const int li = threadIdx.x / kTile, lj = threadIdx.x % kTile;
  const int64_t hw = H * W;
  for (int64_t item = blockIdx.x; item < count; item += gridDim.x) {
    const int64_t b = item / tiles, tile = item - b * tiles;
    const int64_t i0 = (tile / TW) * kTile, j0 = (tile % TW) * kTile;
    const int64_t i = i0 + li, j = j0 + lj;
    if (i >= H || j >= W) continue;  // no block-wide step below
    const int64_t p = i * W + j;
    const T* c = canvas + b * 3 * hw;
    T C0 = c[p], C1 = c[hw + p], C2 = c[2 * hw + p];
    const T x = static_cast<T>(i) + T(0.5), y = static_cast<T>(j) + T(0.5);
    T y0, y1;
    segment_of<T>(j0, lj, W, &y0, &y1);
    const T S = mask != nullptr ? mask[b * hw + p] : T(0);
    const Stroke<T>* sb = st + b * N;
    for (int64_t e = start[item]; e < start[item + 1]; ++e) {
      int64_t n;
      int q0, q1;
      unpack_entry(entries[e], &n, &q0, &q1);
      const Stroke<T>& s = sb[n];
      int r0, r1;
      if (!render::row_pieces(s, q0, q1, x, y0, y1, &r0, &r1)) continue;
      const Cover<Scalar<T>> cv = render::cover<Scalar<T>>(s, x, y, r0, r1, inv_softness);
      if (!(cv.c > T(0))) continue;
      T gp, gq;
      render::gate_coeffs<T>(mask != nullptr, layer, n, gp, gq);
      const T am = cv.a * (gp + gq * S), keep = T(1) - cv.a;
      C0 = C0 * keep + am * s.col[0];
      C1 = C1 * keep + am * s.col[1];
      C2 = C2 * keep + am * s.col[2];
    }
    T* o = out + b * 3 * hw;
    o[p] = C0;
    o[hw + p] = C1;
    o[2 * hw + p] = C2;
  }
}

// kBasis sums over the block in a fixed order (warp shuffles, then the warps in order), in double,
// written to out[0 .. kBasis) by the first threads. Every thread of the block must call it.
template <typename T>
__device__ void block_sum_basis(T (&v)[kBasis], T (*red)[kWarps], double* out) {
#pragma unroll
  for (int k = 0; k < kBasis; ++k)
    for (int offset = 16; offset > 0; offset >>= 1) v[k] += __shfl_down_sync(0xffffffffu, v[k], offset);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0)
#pragma unroll
    for (int k = 0; k < kBasis; ++k) red[k][warp] = v[k];
  __syncthreads();
  if (threadIdx.x < kBasis) {
    double sum = 0.0;
    for (int w = 0; w < kWarps; ++w) sum += static_cast<double>(red[threadIdx.x][w]);
    out[threadIdx.x] = sum;
  }
  __syncthreads();
}

template <typename T>
__global__ void __launch_bounds__(kBlock) backward_kernel(
    int64_t count, int64_t tiles, int64_t TW, int64_t H, int64_t W, int64_t N, const Stroke<T>* __restrict__ st,
    const int64_t* __restrict__ start, const int64_t* __restrict__ entries, const T* __restrict__ canvas,
    const T* __restrict__ mask, const bool* __restrict__ layer, T inv_softness, const T* __restrict__ grad_out,
    T* __restrict__ grad_canvas, double* __restrict__ partial) {
  __shared__ T red[kBasis][kWarps];
  const int li = threadIdx.x / kTile, lj = threadIdx.x % kTile;
  const int64_t hw = H * W;
  for (int64_t item = blockIdx.x; item < count; item += gridDim.x) {
    const int64_t b = item / tiles, tile = item - b * tiles;
    const int64_t i0 = (tile / TW) * kTile, j0 = (tile % TW) * kTile;
    const int64_t i = i0 + li, j = j0 + lj;
    const bool valid = i < H && j < W;  // threads off the canvas only take part in the sums
    const int64_t p = valid ? i * W + j : 0;
    const T* c = canvas + b * 3 * hw;
    const T* go = grad_out + b * 3 * hw;
    const T x = static_cast<T>(i) + T(0.5), y = static_cast<T>(j) + T(0.5);
    T y0, y1;
    segment_of<T>(j0, lj, W, &y0, &y1);
    const T S = mask != nullptr ? load_or(mask + b * hw + p, valid, T(0)) : T(0);
    const Stroke<T>* sb = st + b * N;
    const int64_t e_begin = start[item], e_end = start[item + 1];
    T g0 = load_or(go + p, valid, T(0)), g1 = load_or(go + hw + p, valid, T(0)), g2 = load_or(go + 2 * hw + p, valid, T(0));
    for (int64_t chunk_end = e_end; chunk_end > e_begin;) {
      const int64_t chunk_begin = chunk_end - kChunk > e_begin ? chunk_end - kChunk : e_begin;
      // The canvas before the chunk, recomputed.
      T C0 = load_or(c + p, valid, T(0)), C1 = load_or(c + hw + p, valid, T(0)), C2 = load_or(c + 2 * hw + p, valid, T(0));
      for (int64_t e = e_begin; e < chunk_begin && valid; ++e) {
        int64_t n;
        int q0, q1;
        unpack_entry(entries[e], &n, &q0, &q1);
        const Stroke<T>& s = sb[n];
        int r0, r1;
        if (!render::row_pieces(s, q0, q1, x, y0, y1, &r0, &r1)) continue;
        const Cover<Scalar<T>> cv = render::cover<Scalar<T>>(s, x, y, r0, r1, inv_softness);
        if (!(cv.c > T(0))) continue;
        T gp, gq;
        render::gate_coeffs<T>(mask != nullptr, layer, n, gp, gq);
        const T am = cv.a * (gp + gq * S), keep = T(1) - cv.a;
        C0 = C0 * keep + am * s.col[0];
        C1 = C1 * keep + am * s.col[1];
        C2 = C2 * keep + am * s.col[2];
      }
      // Forward through the chunk, keeping what the reverse walk needs.
      T ra[kChunk], rc[kChunk], rt[kChunk], rG[kChunk], rC0[kChunk], rC1[kChunk], rC2[kChunk];
      const int len = static_cast<int>(chunk_end - chunk_begin);
      for (int jj = 0; jj < len; ++jj) {
        ra[jj] = rc[jj] = rt[jj] = rG[jj] = T(0);
        rC0[jj] = C0;
        rC1[jj] = C1;
        rC2[jj] = C2;
        if (!valid) continue;
        int64_t n;
        int q0, q1;
        unpack_entry(entries[chunk_begin + jj], &n, &q0, &q1);
        const Stroke<T>& s = sb[n];
        int r0, r1;
        if (!render::row_pieces(s, q0, q1, x, y0, y1, &r0, &r1)) continue;
        const Cover<Scalar<T>> cv = render::cover<Scalar<T>>(s, x, y, r0, r1, inv_softness);
        if (!(cv.c > T(0))) continue;
        ra[jj] = cv.a;
        rc[jj] = cv.c;
        rt[jj] = cv.t;
        rG[jj] = cv.ramp ? cv.w * inv_softness : T(0);
        T gp, gq;
        render::gate_coeffs<T>(mask != nullptr, layer, n, gp, gq);
        const T am = cv.a * (gp + gq * S), keep = T(1) - cv.a;
        C0 = C0 * keep + am * s.col[0];
        C1 = C1 * keep + am * s.col[1];
        C2 = C2 * keep + am * s.col[2];
      }
      // Reverse through the chunk; every thread takes part in each stroke's block sum.
      for (int jj = len - 1; jj >= 0; --jj) {
        const int64_t e = chunk_begin + jj;
        int64_t n;
        int q0, q1;
        unpack_entry(entries[e], &n, &q0, &q1);
        const Stroke<T>& s = sb[n];
        T acc[kBasis];
#pragma unroll
        for (int k = 0; k < kBasis; ++k) acc[k] = T(0);
        if (valid && rc[jj] > T(0)) {
          T gp, gq;
          render::gate_coeffs<T>(mask != nullptr, layer, n, gp, gq);
          const T m = gp + gq * S;
          const T dA = g0 * (s.col[0] * m - rC0[jj]) + g1 * (s.col[1] * m - rC1[jj]) + g2 * (s.col[2] * m - rC2[jj]);
          const T am = ra[jj] * m;
          acc[10] = g0 * am;
          acc[11] = g1 * am;
          acc[12] = g2 * am;
          const T keep = T(1) - ra[jj];
          g0 *= keep;
          g1 *= keep;
          g2 *= keep;
          const T dc = dA * rc[jj];
          acc[8] = dc * (T(1) - rt[jj]);
          acc[9] = dc * rt[jj];
          if (rG[jj] != T(0)) render::add_geometry<Scalar<T>>(s, x, y, rt[jj], dA * rG[jj], acc);
        }
        block_sum_basis<T>(acc, red, partial + e * kBasis);
      }
      chunk_end = chunk_begin;
    }
    if (valid) {
      T* gc = grad_canvas + b * 3 * hw;
      gc[p] = g0;
      gc[hw + p] = g1;
      gc[2 * hw + p] = g2;
    }
  }
}

// Per stroke: its (tile, stroke) sums in tile order (emission order), then the 13 gradients.
template <typename T>
__global__ void reduce_kernel(int64_t count, int64_t H, int64_t W, const int64_t* __restrict__ offsets,
                              const int64_t* __restrict__ counts, const int64_t* __restrict__ inv_perm,
                              const double* __restrict__ partial, const T* __restrict__ strokes,
                              T* __restrict__ grad) {
  SGFAST_RENDER_LOOP(k, count) {
    double acc[kBasis];
    for (int q = 0; q < kBasis; ++q) acc[q] = 0.0;
    for (int64_t i = offsets[k]; i < offsets[k] + counts[k]; ++i) {
      const double* src = partial + inv_perm[i] * kBasis;
      for (int q = 0; q < kBasis; ++q) acc[q] += src[q];
    }
    render::stroke_gradient<T>(strokes + k * kParams, acc, H, W, grad + k * kParams);
  }
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

inline const bool* layer_ptr(const Args& a) { return a.layer.defined() ? a.layer.data_ptr<bool>() : nullptr; }

at::Tensor render_strokes_cuda(const at::Tensor& canvas, const at::Tensor& strokes, const std::optional<at::Tensor>& mask,
                               const std::optional<at::Tensor>& layer, double softness) {
  const Args a = render::check_args(canvas, strokes, mask, layer, softness);
  c10::cuda::CUDAGuard guard(a.canvas.device());
  at::Tensor out = at::empty_like(a.canvas);
  if (out.numel() == 0) return out;
  if (a.N == 0) return out.copy_(a.canvas);
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::render_strokes", [&] {
    using T = scalar_t;
    const Binned r = bin<T>(a);
    const int64_t count = a.B * r.tiles;
    forward_kernel<T><<<tile_blocks(count), kBlock, 0, current_stream()>>>(
        count, r.tiles, r.TW, a.H, a.W, a.N, reinterpret_cast<const Stroke<T>*>(r.strokes.data_ptr<uint8_t>()),
        r.start.data_ptr<int64_t>(), r.entries.data_ptr<int64_t>(), a.canvas.data_ptr<T>(), opt_ptr<T>(a.mask),
        layer_ptr(a), static_cast<T>(1.0 / a.softness), out.data_ptr<T>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> render_strokes_backward_cuda(const at::Tensor& grad_out, const at::Tensor& canvas,
                                                                const at::Tensor& strokes,
                                                                const std::optional<at::Tensor>& mask,
                                                                const std::optional<at::Tensor>& layer,
                                                                double softness) {
  const Args a = render::check_args(canvas, strokes, mask, layer, softness);
  const at::Tensor g = render::check_grad_out(grad_out, a);
  c10::cuda::CUDAGuard guard(a.canvas.device());
  at::Tensor grad_canvas = at::empty_like(a.canvas);
  at::Tensor grad_strokes = at::zeros_like(a.strokes);
  if (a.N == 0) return {grad_canvas.copy_(g), grad_strokes};
  if (grad_canvas.numel() == 0) return {grad_canvas, grad_strokes};
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::_render_strokes_backward", [&] {
    using T = scalar_t;
    const Binned r = bin<T>(a);
    const int64_t count = a.B * r.tiles;
    at::Tensor partial = at::empty({r.total * kBasis}, a.canvas.options().dtype(at::kDouble));
    backward_kernel<T><<<tile_blocks(count), kBlock, 0, current_stream()>>>(
        count, r.tiles, r.TW, a.H, a.W, a.N, reinterpret_cast<const Stroke<T>*>(r.strokes.data_ptr<uint8_t>()),
        r.start.data_ptr<int64_t>(), r.entries.data_ptr<int64_t>(), a.canvas.data_ptr<T>(), opt_ptr<T>(a.mask),
        layer_ptr(a), static_cast<T>(1.0 / a.softness), g.data_ptr<T>(), grad_canvas.data_ptr<T>(),
        partial.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (r.total > 0) {
      at::Tensor inv = at::empty_like(r.perm);
      invert_kernel<<<loop_blocks(r.total), kLoopThreads, 0, current_stream()>>>(r.total, r.perm.data_ptr<int64_t>(),
                                                                                   inv.data_ptr<int64_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      const int64_t BN = a.B * a.N;
      reduce_kernel<T><<<loop_blocks(BN), kLoopThreads, 0, current_stream()>>>(
          BN, a.H, a.W, r.offsets.data_ptr<int64_t>(), r.counts.data_ptr<int64_t>(), inv.data_ptr<int64_t>(),
          partial.data_ptr<double>(), a.strokes.data_ptr<T>(), grad_strokes.data_ptr<T>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {grad_canvas, grad_strokes};
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CUDA, m) {
  m.impl("render_strokes", &render_strokes_cuda);
  m.impl("_render_strokes_backward", &render_strokes_backward_cuda);
}

}  // namespace sgfast
