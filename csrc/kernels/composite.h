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
// The functions work on L "lanes" = L consecutive pixels of one image (plane stride hw). The CPU
// kernel uses L = 32..64 so the lane loops vectorise; the CUDA kernel uses L = 1 (one pixel per
// thread). The backward never stores the K intermediate canvases of a whole image: it recomputes
// them per pixel, kGroup strokes at a time in a small local array (registers on CUDA). For
// K <= kGroup there is one group and no extra work; for larger K each group recomputes its start
// canvas C_{k0} from C_0 and its incoming gradient g_{k1} from a suffix product of (1 - a), so any
// K works at O(K^2 / kGroup) cost per pixel.
#pragma once
#include <stdint.h>

#include "kernels/common.h"

namespace sgfast {
namespace composite {

// Strokes whose intermediate canvases are kept at once by the backward.
constexpr int kGroup = 16;

// m_k = p_k + q_k * S: (p, q) = (1, 0) without a mask, (0, 1) foreground, (1, -1) background.
template <typename T>
SGFAST_HD void gate_coeffs(bool has_mask, const bool* layer, int64_t k, T& p, T& q) {
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

// Loads the mask of n lanes (zeros without a mask, where the gate ignores it).
template <typename T, int L>
SGFAST_HD void load_mask(int n, const T* __restrict__ mask, T (&s)[L]) {
  for (int l = 0; l < L; ++l) s[l] = T(0);
  if (mask != nullptr)
    for (int l = 0; l < n; ++l) s[l] = mask[l];
}

// Forward of n <= L lanes. Pointers are at (image b, first pixel). out: [3] planes (may be null),
// frames: [K, 3] planes of every intermediate canvas (may be null).
template <typename T, int L>
SGFAST_HD void forward_lanes(int n, int64_t K, int64_t hw, const T* __restrict__ canvas,
                             const T* __restrict__ alpha, const T* __restrict__ color,
                             const T* __restrict__ mask, const bool* __restrict__ layer,
                             T* __restrict__ out, T* __restrict__ frames) {
  T s[L];
  load_mask<T, L>(n, mask, s);
  T c[3][L];
  for (int ch = 0; ch < 3; ++ch)
    for (int l = 0; l < n; ++l) c[ch][l] = canvas[ch * hw + l];
  for (int64_t k = 0; k < K; ++k) {
    T p, q;
    gate_coeffs<T>(mask != nullptr, layer, k, p, q);
    const T* a = alpha + k * hw;
    for (int ch = 0; ch < 3; ++ch) {
      const T col = color[k * 3 + ch];
      for (int l = 0; l < n; ++l) {
        const T m = p + q * s[l];
        c[ch][l] = c[ch][l] * (T(1) - a[l]) + a[l] * col * m;
      }
      if (frames != nullptr)
        for (int l = 0; l < n; ++l) frames[(k * 3 + ch) * hw + l] = c[ch][l];
    }
  }
  if (out != nullptr)
    for (int ch = 0; ch < 3; ++ch)
      for (int l = 0; l < n; ++l) out[ch * hw + l] = c[ch][l];
}

// Backward of strokes [k0, k1) (k1 - k0 <= kGroup) for n <= L lanes. Writes grad_alpha of those
// strokes, adds the per-lane colour gradient terms to dcol[k - k0][ch][lane], and writes
// grad_canvas (= g_0) when k0 == 0.
template <typename T, int L>
SGFAST_HD void backward_group_lanes(int n, int64_t K, int64_t hw, int64_t k0, int64_t k1,
                                    const T* __restrict__ grad_out, const T* __restrict__ canvas,
                                    const T* __restrict__ alpha, const T* __restrict__ color,
                                    const T* __restrict__ mask, const bool* __restrict__ layer,
                                    T* __restrict__ grad_canvas, T* __restrict__ grad_alpha,
                                    T (&dcol)[kGroup][3][L]) {
  const bool has_mask = mask != nullptr;
  T s[L];
  load_mask<T, L>(n, mask, s);

  // C_{k0}: forward from the input canvas over the strokes before the group.
  T c[3][L];
  for (int ch = 0; ch < 3; ++ch)
    for (int l = 0; l < n; ++l) c[ch][l] = canvas[ch * hw + l];
  for (int64_t k = 0; k < k0; ++k) {
    T p, q;
    gate_coeffs<T>(has_mask, layer, k, p, q);
    const T* a = alpha + k * hw;
    for (int ch = 0; ch < 3; ++ch) {
      const T col = color[k * 3 + ch];
      for (int l = 0; l < n; ++l) c[ch][l] = c[ch][l] * (T(1) - a[l]) + a[l] * col * (p + q * s[l]);
    }
  }

  // g_{k1} = grad_out * prod_{k >= k1} (1 - a_k).
  T g[3][L];
  for (int ch = 0; ch < 3; ++ch)
    for (int l = 0; l < n; ++l) g[ch][l] = grad_out[ch * hw + l];
  if (k1 < K) {
    T t[L];
    for (int l = 0; l < n; ++l) t[l] = T(1);
    for (int64_t k = k1; k < K; ++k) {
      const T* a = alpha + k * hw;
      for (int l = 0; l < n; ++l) t[l] *= T(1) - a[l];
    }
    for (int ch = 0; ch < 3; ++ch)
      for (int l = 0; l < n; ++l) g[ch][l] *= t[l];
  }

  // Forward through the group, keeping every C_k.
  const int count = static_cast<int>(k1 - k0);
  T saved[kGroup][3][L];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < kGroup; ++j) {
    if (j < count) {
      const int64_t k = k0 + j;
      T p, q;
      gate_coeffs<T>(has_mask, layer, k, p, q);
      const T* a = alpha + k * hw;
      for (int ch = 0; ch < 3; ++ch) {
        const T col = color[k * 3 + ch];
        for (int l = 0; l < n; ++l) {
          saved[j][ch][l] = c[ch][l];
          c[ch][l] = c[ch][l] * (T(1) - a[l]) + a[l] * col * (p + q * s[l]);
        }
      }
    }
  }

  // Reverse through the group.
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = kGroup - 1; j >= 0; --j) {
    if (j < count) {
      const int64_t k = k0 + j;
      T p, q;
      gate_coeffs<T>(has_mask, layer, k, p, q);
      const T* a = alpha + k * hw;
      T da[L];
      for (int l = 0; l < n; ++l) da[l] = T(0);
      for (int ch = 0; ch < 3; ++ch) {
        const T col = color[k * 3 + ch];
        for (int l = 0; l < n; ++l) {
          const T m = p + q * s[l];
          const T gl = g[ch][l];
          da[l] += gl * (col * m - saved[j][ch][l]);
          dcol[j][ch][l] += gl * a[l] * m;
          g[ch][l] = gl * (T(1) - a[l]);
        }
      }
      T* ga = grad_alpha + k * hw;
      for (int l = 0; l < n; ++l) ga[l] = da[l];
    }
  }

  if (k0 == 0)
    for (int ch = 0; ch < 3; ++ch)
      for (int l = 0; l < n; ++l) grad_canvas[ch * hw + l] = g[ch][l];
}

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
