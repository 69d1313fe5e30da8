// Bi-level compositing math shared by the CPU and CUDA kernels.
//
//   C_0 = canvas;  C_{k+1} = C_k * (1 - a_k) + a_k * col_k * m_k  (k = 0..K-1);  out = C_K
//   m_k = 1 without a mask; S for a foreground stroke (layer[k] true, or no layer); 1 - S otherwise.
//
// Backward with g_k = dL/dC_k (g_K = grad_out):
//   g_k = g_{k+1} * (1 - a_k)
//   dL/da_k = sum_c g_{k+1,c} * (col_{k,c} * m_k - C_{k,c})     (alpha is shared by the 3 channels)
//   dL/dcol_{k,c} = sum over pixels of g_{k+1,c} * a_k * m_k    (reduced by the caller)
//
// The functions handle one "pixel value" V through an IO policy: ScalarIO (one pixel; CUDA threads
// and CPU tails) or a SIMD vector of consecutive pixels (CPU, csrc/cpu/composite.cpp). Everything
// of a pixel stays in registers. The backward never stores the K intermediate canvases of an image:
// it recomputes them per pixel, kGroup strokes at a time. For K <= kGroup there is one group and no
// extra work; for larger K each group recomputes its start canvas C_{k0} from C_0 and its incoming
// gradient g_{k1} from a suffix product of (1 - a), so any K works at O(K^2 / kGroup) per pixel.
#pragma once
#include <stdint.h>

#include "kernels/common.h"

// Forced inlining: on the CPU these templates must be compiled inside the caller's SIMD target.
#if defined(__CUDACC__)
#define SGFAST_CFN __host__ __device__ __forceinline__
#define SGFAST_UNROLL _Pragma("unroll")
#else
#define SGFAST_CFN inline __attribute__((always_inline))
#define SGFAST_UNROLL _Pragma("GCC unroll 16")
#endif

namespace sgfast {
namespace composite {

// Strokes whose intermediate canvases are kept at once by the backward.
constexpr int kGroup = 16;

// ---- Launch arithmetic of the CUDA backward (host code, shared with the CPU twins' tests).
// Tiles per image from the shape only (about 4 pixels per thread, at most 1024), never from the
// device, so the colour gradient's summation order depends on the shape alone; images beyond
// grid.y's 65535 are looped over.
inline int64_t backward_tiles(int64_t hw) {
  const int64_t t = (hw + 4 * kThreads - 1) / (4 * kThreads);
  return t < 1 ? 1 : (t > 1024 ? 1024 : t);
}
inline Grid backward_grid(int64_t B, int64_t hw) { return Grid{backward_tiles(hw), images_grid_y(B)}; }

// One pixel per value.
template <typename T>
struct ScalarIO {
  using V = T;
  static constexpr int kWidth = 1;
  static SGFAST_CFN V load(const T* p) { return *p; }
  static SGFAST_CFN void store(T* p, V v) { *p = v; }
  static SGFAST_CFN V splat(T x) { return x; }
};

// m_k = p_k + q_k * S: (p, q) = (1, 0) without a mask, (0, 1) foreground, (1, -1) background.
template <typename T>
SGFAST_CFN void gate_coeffs(bool has_mask, const bool* layer, int64_t k, T& p, T& q) {
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

// Forward of one value. Pointers are at (image b, first pixel); planes are hw apart.
// out: 3 planes (may be null); frames: K x 3 planes of every intermediate canvas (may be null).
template <typename IO, typename T>
SGFAST_CFN void forward_px(int64_t K, int64_t hw, const T* __restrict__ canvas, const T* __restrict__ alpha,
                           const T* __restrict__ color, const T* __restrict__ mask,
                           const bool* __restrict__ layer, T* __restrict__ out, T* __restrict__ frames) {
  using V = typename IO::V;
  const V s = mask != nullptr ? IO::load(mask) : IO::splat(T(0));
  V c[3];
  for (int ch = 0; ch < 3; ++ch) c[ch] = IO::load(canvas + ch * hw);
  for (int64_t k = 0; k < K; ++k) {
    T p, q;
    gate_coeffs<T>(mask != nullptr, layer, k, p, q);
    const V a = IO::load(alpha + k * hw);
    const V am = a * (IO::splat(p) + IO::splat(q) * s);
    const V keep = IO::splat(T(1)) - a;
    for (int ch = 0; ch < 3; ++ch) {
      c[ch] = c[ch] * keep + am * IO::splat(color[k * 3 + ch]);
      if (frames != nullptr) IO::store(frames + (k * 3 + ch) * hw, c[ch]);
    }
  }
  if (out != nullptr)
    for (int ch = 0; ch < 3; ++ch) IO::store(out + ch * hw, c[ch]);
}

#if !defined(__CUDACC__)
#pragma GCC diagnostic push
// saved[j] is read only for j < count, where it was written.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
// Colour-gradient accumulators of a group kept in an array of values (registers once inlined).
template <typename V, int G>
struct ArrayAcc {
  V (&a)[G][3];
  SGFAST_CFN void add(int j, int ch, V v) const { a[j][ch] = a[j][ch] + v; }
};

// Backward of strokes [k0, k1) (k1 - k0 <= G) for one value. Writes grad_alpha of those strokes,
// adds the colour gradient terms of stroke k0 + j, channel ch to dcol (dcol.add(j, ch, term), per
// lane), and writes grad_canvas (= g_0) when k0 == 0. G (the group size) and where the accumulators
// live are the caller's: the CPU keeps kGroup in arrays, the CUDA kernel chooses per type
// (csrc/cuda/composite.cu).
template <typename IO, typename T, int G, typename Acc>
SGFAST_CFN void backward_group_px(int64_t K, int64_t hw, int64_t k0, int64_t k1, const T* __restrict__ grad_out,
                                  const T* __restrict__ canvas, const T* __restrict__ alpha,
                                  const T* __restrict__ color, const T* __restrict__ mask,
                                  const bool* __restrict__ layer, T* __restrict__ grad_canvas,
                                  T* __restrict__ grad_alpha, const Acc& dcol) {
  using V = typename IO::V;
  const bool has_mask = mask != nullptr;
  const V s = has_mask ? IO::load(mask) : IO::splat(T(0));
  const V one = IO::splat(T(1));

  // C_{k0}: forward from the input canvas over the strokes before the group.
  V c[3];
  for (int ch = 0; ch < 3; ++ch) c[ch] = IO::load(canvas + ch * hw);
  for (int64_t k = 0; k < k0; ++k) {
    T p, q;
    gate_coeffs<T>(has_mask, layer, k, p, q);
    const V a = IO::load(alpha + k * hw);
    const V am = a * (IO::splat(p) + IO::splat(q) * s);
    for (int ch = 0; ch < 3; ++ch) c[ch] = c[ch] * (one - a) + am * IO::splat(color[k * 3 + ch]);
  }

  // g_{k1} = grad_out * prod_{k >= k1} (1 - a_k).
  V g[3];
  for (int ch = 0; ch < 3; ++ch) g[ch] = IO::load(grad_out + ch * hw);
  if (k1 < K) {
    V t = one;
    for (int64_t k = k1; k < K; ++k) t = t * (one - IO::load(alpha + k * hw));
    for (int ch = 0; ch < 3; ++ch) g[ch] = g[ch] * t;
  }

  // Forward through the group, keeping every C_k (registers once unrolled).
  const int count = static_cast<int>(k1 - k0);
  V saved[G][3];
  SGFAST_UNROLL
  for (int j = 0; j < G; ++j) {
    if (j < count) {
      const int64_t k = k0 + j;
      T p, q;
      gate_coeffs<T>(has_mask, layer, k, p, q);
      const V a = IO::load(alpha + k * hw);
      const V am = a * (IO::splat(p) + IO::splat(q) * s);
      for (int ch = 0; ch < 3; ++ch) {
        saved[j][ch] = c[ch];
        c[ch] = c[ch] * (one - a) + am * IO::splat(color[k * 3 + ch]);
      }
    }
  }

  // Reverse through the group.
  SGFAST_UNROLL
  for (int j = G - 1; j >= 0; --j) {
    if (j < count) {
      const int64_t k = k0 + j;
      T p, q;
      gate_coeffs<T>(has_mask, layer, k, p, q);
      const V a = IO::load(alpha + k * hw);
      const V m = IO::splat(p) + IO::splat(q) * s;
      const V am = a * m;
      const V keep = one - a;
      V da = IO::splat(T(0));
      for (int ch = 0; ch < 3; ++ch) {
        const V col = IO::splat(color[k * 3 + ch]);
        da = da + g[ch] * (col * m - saved[j][ch]);
        dcol.add(j, ch, g[ch] * am);
        g[ch] = g[ch] * keep;
      }
      IO::store(grad_alpha + k * hw, da);
    }
  }

  if (k0 == 0)
    for (int ch = 0; ch < 3; ++ch) IO::store(grad_canvas + ch * hw, g[ch]);
}

// The CPU kernels' form: groups of kGroup, accumulators dcol[k - k0][ch].
template <typename IO, typename T>
SGFAST_CFN void backward_group_px(int64_t K, int64_t hw, int64_t k0, int64_t k1, const T* __restrict__ grad_out,
                                  const T* __restrict__ canvas, const T* __restrict__ alpha,
                                  const T* __restrict__ color, const T* __restrict__ mask,
                                  const bool* __restrict__ layer, T* __restrict__ grad_canvas,
                                  T* __restrict__ grad_alpha, typename IO::V (&dcol)[kGroup][3]) {
  backward_group_px<IO, T, kGroup>(K, hw, k0, k1, grad_out, canvas, alpha, color, mask, layer, grad_canvas,
                                   grad_alpha, ArrayAcc<typename IO::V, kGroup>{dcol});
}
#if !defined(__CUDACC__)
#pragma GCC diagnostic pop
#endif

}  // namespace composite
}  // namespace sgfast

// ---- Host side: argument checks shared by the CPU and CUDA entry points. ----
#include <optional>

#include "checks.h"

namespace sgfast {
namespace composite {

// The inputs, checked and made contiguous.
struct Args {
  at::Tensor canvas, alpha, color, mask, layer;  // mask / layer undefined when absent
  int64_t B, K, H, W;
};

inline Args check_args(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                       const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  check_dim(canvas, 4, "canvas", "[B, 3, H, W]");
  SGFAST_CHECK_ARG(canvas.size(1) == 3, "canvas", "expected 3 channels [B, 3, H, W], got shape ", canvas.sizes());
  check_float(canvas, "canvas");
  const int64_t B = canvas.size(0), H = canvas.size(2), W = canvas.size(3);
  check_dim(alpha, 4, "alpha", "[B, K, H, W]");
  const int64_t K = alpha.size(1);
  SGFAST_CHECK_ARG(alpha.size(0) == B && alpha.size(2) == H && alpha.size(3) == W, "alpha",
                   "expected [B, K, H, W] = [", B, ", K, ", H, ", ", W, "] to match canvas, got ", alpha.sizes());
  SGFAST_CHECK_ARG(alpha.scalar_type() == canvas.scalar_type(), "alpha", "expected dtype ", canvas.scalar_type(),
                   " (the canvas dtype), got ", alpha.scalar_type());
  check_same_device(canvas, alpha, "alpha");
  check_dim(color, 3, "color", "[B, K, 3]");
  SGFAST_CHECK_ARG(color.size(0) == B && color.size(1) == K && color.size(2) == 3, "color", "expected [B, K, 3] = [",
                   B, ", ", K, ", 3], got ", color.sizes());
  SGFAST_CHECK_ARG(color.scalar_type() == canvas.scalar_type(), "color", "expected dtype ", canvas.scalar_type(),
                   " (the canvas dtype), got ", color.scalar_type());
  check_same_device(canvas, color, "color");
  Args args{canvas.contiguous(), alpha.contiguous(), color.contiguous(), at::Tensor(), at::Tensor(), B, K, H, W};
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
    check_dim(f, 1, "layer", "[K]");
    SGFAST_CHECK_ARG(f.size(0) == K, "layer", "expected [K] = [", K, "], got ", f.sizes());
    SGFAST_CHECK_ARG(f.scalar_type() == at::kBool, "layer", "expected dtype bool, got ", f.scalar_type());
    check_same_device(canvas, f, "layer");
    args.layer = f.contiguous();
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

}  // namespace composite
}  // namespace sgfast
