// CPU kernels of composite, composite_frames and _composite_backward (math in kernels/composite.h).
//
// Work is split into fixed tiles of kTile pixels of one image and spread with at::parallel_for.
// The tiling depends only on the shape, and the colour gradient is summed per tile then over tiles
// in a fixed order, so results are bitwise identical whatever the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

// The SIMD vector types below are only passed between force-inlined functions of one target.
#pragma GCC diagnostic ignored "-Wpsabi"
#include "kernels/composite.h"

namespace sgfast {
namespace {

using composite::Args;
using composite::kGroup;
using composite::ScalarIO;

// Pixels per parallel task: fixed, so the partial sums of the colour gradient (and their order)
// depend only on the shape.
constexpr int64_t kTile = 4096;

// Bytes consecutive pixels processed as one GCC vector (lanes = Bytes / sizeof(T)).
template <typename T, int Bytes>
struct VecIO {
  typedef T V __attribute__((vector_size(Bytes)));
  static constexpr int kWidth = Bytes / static_cast<int>(sizeof(T));
  static SGFAST_CFN V load(const T* p) {
    V v;
    std::memcpy(&v, p, sizeof(V));
    return v;
  }
  static SGFAST_CFN void store(T* p, V v) { std::memcpy(p, &v, sizeof(V)); }
  static SGFAST_CFN V splat(T x) { return V{} + x; }
};

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Raw pointers of one call, shared by the tile functions.
template <typename T>
struct Ptrs {
  int64_t K, hw, tiles;
  const T *grad_out, *canvas, *alpha, *color, *mask;
  const bool* layer;
  T *out, *frames, *grad_canvas, *grad_alpha;
  double* partial;  // [B, tiles, K, 3] colour-gradient sums
};

template <typename IO, typename T>
SGFAST_CFN void forward_at(const Ptrs<T>& a, int64_t b, int64_t p) {
  const int64_t hw = a.hw, K = a.K;
  composite::forward_px<IO, T>(K, hw, a.canvas + b * 3 * hw + p, a.alpha + b * K * hw + p, a.color + b * K * 3,
                               a.mask ? a.mask + b * hw + p : nullptr, a.layer,
                               a.out ? a.out + b * 3 * hw + p : nullptr,
                               a.frames ? a.frames + b * K * 3 * hw + p : nullptr);
}

// Forward of tile i (image i / tiles): SIMD values, then single pixels for the rest.
// (No lambdas here: they would not be compiled for the caller's SIMD target.)
template <typename T, typename VIO>
SGFAST_CFN void forward_tile(const Ptrs<T>& a, int64_t i) {
  const int64_t b = i / a.tiles, p0 = (i % a.tiles) * kTile, p1 = std::min(a.hw, p0 + kTile);
  int64_t p = p0;
  for (; p + VIO::kWidth <= p1; p += VIO::kWidth) forward_at<VIO, T>(a, b, p);
  for (; p < p1; ++p) forward_at<ScalarIO<T>, T>(a, b, p);
}

template <typename IO, typename T>
SGFAST_CFN void backward_at(const Ptrs<T>& a, int64_t b, int64_t p, int64_t k0, int64_t k1,
                            typename IO::V (&dcol)[kGroup][3]) {
  const int64_t hw = a.hw, K = a.K;
  composite::backward_group_px<IO, T>(K, hw, k0, k1, a.grad_out + b * 3 * hw + p, a.canvas + b * 3 * hw + p,
                                      a.alpha + b * K * hw + p, a.color + b * K * 3,
                                      a.mask ? a.mask + b * hw + p : nullptr, a.layer,
                                      a.grad_canvas + b * 3 * hw + p, a.grad_alpha + b * K * hw + p, dcol);
}

// Backward of tile i: grad_canvas and grad_alpha of its pixels, colour-gradient partial sums
// (lanes summed in a fixed order) into partial[i].
template <typename T, typename VIO>
SGFAST_CFN void backward_tile(const Ptrs<T>& a, int64_t i) {
  using V = typename VIO::V;
  const int64_t K = a.K, b = i / a.tiles;
  const int64_t p0 = (i % a.tiles) * kTile, p1 = std::min(a.hw, p0 + kTile);
  for (int64_t k0 = 0; k0 < K; k0 += kGroup) {
    const int64_t k1 = std::min(K, k0 + kGroup);
    V dv[kGroup][3];
    T ds[kGroup][3];
    for (int j = 0; j < kGroup; ++j)
      for (int ch = 0; ch < 3; ++ch) {
        dv[j][ch] = VIO::splat(T(0));
        ds[j][ch] = T(0);
      }
    int64_t p = p0;
    for (; p + VIO::kWidth <= p1; p += VIO::kWidth) backward_at<VIO, T>(a, b, p, k0, k1, dv);
    for (; p < p1; ++p) backward_at<ScalarIO<T>, T>(a, b, p, k0, k1, ds);
    double* part = a.partial + i * K * 3;
    for (int64_t k = k0; k < k1; ++k)
      for (int ch = 0; ch < 3; ++ch) {
        double sum = static_cast<double>(ds[k - k0][ch]);
        for (int l = 0; l < VIO::kWidth; ++l) sum += static_cast<double>(dv[k - k0][ch][l]);
        part[k * 3 + ch] = sum;
      }
  }
}

// One set of tile loops per SIMD level, picked at run time (the build uses no -march flags).
#define SGFAST_COMPOSITE_ISA(NAME, ATTR, BYTES)                                            \
  template <typename T>                                                                    \
  ATTR void forward_##NAME(const Ptrs<T>& a, int64_t begin, int64_t end) {                 \
    for (int64_t i = begin; i < end; ++i) forward_tile<T, VecIO<T, BYTES>>(a, i);          \
  }                                                                                        \
  template <typename T>                                                                    \
  ATTR void backward_##NAME(const Ptrs<T>& a, int64_t begin, int64_t end) {                \
    for (int64_t i = begin; i < end; ++i) backward_tile<T, VecIO<T, BYTES>>(a, i);         \
  }

SGFAST_COMPOSITE_ISA(base, , 16)  // SSE2 / NEON width

enum class Isa { kBase, kAvx2, kAvx512 };

#if defined(__x86_64__) || defined(__i386__)
SGFAST_COMPOSITE_ISA(avx512, __attribute__((target("avx512f,avx512dq,avx512vl,avx2,fma"))), 64)
SGFAST_COMPOSITE_ISA(avx2, __attribute__((target("avx2,fma"))), 32)

// The widest level the CPU has; SGFAST_CPU_SIMD=avx2|base asks for a narrower one (tests, timing).
Isa detect_isa() {
  __builtin_cpu_init();
  Isa best = Isa::kBase;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl"))
    best = Isa::kAvx512;
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    best = Isa::kAvx2;
  const char* want = std::getenv("SGFAST_CPU_SIMD");
  if (want != nullptr && std::strcmp(want, "base") == 0) return Isa::kBase;
  if (want != nullptr && std::strcmp(want, "avx2") == 0 && best == Isa::kAvx512) return Isa::kAvx2;
  return best;
}
#else
// Other architectures: the base width only (the compiler's default SIMD, e.g. NEON).
template <typename T>
void forward_avx512(const Ptrs<T>& a, int64_t begin, int64_t end) { forward_base<T>(a, begin, end); }
template <typename T>
void forward_avx2(const Ptrs<T>& a, int64_t begin, int64_t end) { forward_base<T>(a, begin, end); }
template <typename T>
void backward_avx512(const Ptrs<T>& a, int64_t begin, int64_t end) { backward_base<T>(a, begin, end); }
template <typename T>
void backward_avx2(const Ptrs<T>& a, int64_t begin, int64_t end) { backward_base<T>(a, begin, end); }
Isa detect_isa() { return Isa::kBase; }
#endif

Isa isa() {
  static const Isa value = detect_isa();
  return value;
}

template <typename T>
Ptrs<T> make_ptrs(const Args& a) {
  Ptrs<T> p{};
  p.K = a.K;
  p.hw = a.H * a.W;
  p.tiles = (p.hw + kTile - 1) / kTile;
  p.canvas = a.canvas.data_ptr<T>();
  p.alpha = a.alpha.data_ptr<T>();
  p.color = a.color.data_ptr<T>();
  p.mask = opt_ptr<T>(a.mask);
  p.layer = a.layer.defined() ? a.layer.data_ptr<bool>() : nullptr;
  return p;
}

template <typename T>
void run_forward(const Args& args, T* out, T* frames) {
  Ptrs<T> p = make_ptrs<T>(args);
  p.out = out;
  p.frames = frames;
  const Isa level = isa();
  at::parallel_for(0, args.B * p.tiles, 1, [&](int64_t begin, int64_t end) {
    if (level == Isa::kAvx512)
      forward_avx512<T>(p, begin, end);
    else if (level == Isa::kAvx2)
      forward_avx2<T>(p, begin, end);
    else
      forward_base<T>(p, begin, end);
  });
}

template <typename T>
void run_backward(const Args& args, const T* grad_out, T* grad_canvas, T* grad_alpha, T* grad_color) {
  Ptrs<T> p = make_ptrs<T>(args);
  const int64_t B = args.B, K = args.K;
  std::vector<double> partial(static_cast<size_t>(B * p.tiles * K * 3), 0.0);
  p.grad_out = grad_out;
  p.grad_canvas = grad_canvas;
  p.grad_alpha = grad_alpha;
  p.partial = partial.data();
  const Isa level = isa();
  at::parallel_for(0, B * p.tiles, 1, [&](int64_t begin, int64_t end) {
    if (level == Isa::kAvx512)
      backward_avx512<T>(p, begin, end);
    else if (level == Isa::kAvx2)
      backward_avx2<T>(p, begin, end);
    else
      backward_base<T>(p, begin, end);
  });
  // Fixed-order sum over tiles.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < K * 3; ++j) {
      double sum = 0.0;
      for (int64_t t = 0; t < p.tiles; ++t) sum += partial[(b * p.tiles + t) * K * 3 + j];
      grad_color[b * K * 3 + j] = static_cast<T>(sum);
    }
}

at::Tensor composite_cpu(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  at::Tensor out = at::empty_like(a.canvas);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite",
                             [&] { run_forward<scalar_t>(a, out.data_ptr<scalar_t>(), nullptr); });
  return out;
}

at::Tensor composite_frames_cpu(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                                const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  at::Tensor frames = at::empty({a.B, a.K, 3, a.H, a.W}, a.canvas.options());
  if (frames.numel() == 0) return frames;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite_frames",
                             [&] { run_forward<scalar_t>(a, nullptr, frames.data_ptr<scalar_t>()); });
  return frames;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> composite_backward_cpu(
    const at::Tensor& grad_out, const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
    const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  const at::Tensor g = composite::check_grad_out(grad_out, a);
  if (a.K == 0) return {g.clone(), at::empty_like(a.alpha), at::empty_like(a.color)};
  at::Tensor grad_canvas = at::empty_like(a.canvas);
  at::Tensor grad_alpha = at::empty_like(a.alpha);
  at::Tensor grad_color = at::empty_like(a.color);
  if (a.B == 0) return {grad_canvas, grad_alpha, grad_color};
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::_composite_backward", [&] {
    run_backward<scalar_t>(a, g.data_ptr<scalar_t>(), grad_canvas.data_ptr<scalar_t>(),
                              grad_alpha.data_ptr<scalar_t>(), grad_color.data_ptr<scalar_t>());
  });
  return {grad_canvas, grad_alpha, grad_color};
}

}  // namespace

TORCH_LIBRARY_IMPL(sgfast, CPU, m) {
  m.impl("composite", &composite_cpu);
  m.impl("composite_frames", &composite_frames_cpu);
  m.impl("_composite_backward", &composite_backward_cpu);
}

}  // namespace sgfast
