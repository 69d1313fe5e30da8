// CPU kernels of composite, composite_frames and _composite_backward (math in kernels/composite.h).
//
// Work is split into fixed tiles of kTile pixels of one image and spread with at::parallel_for.
// The tiling depends only on the shape, and the colour gradient is summed per tile then over tiles
// in a fixed order, so results are bitwise identical whatever the thread count.
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "kernels/composite.h"

namespace sgfast {
namespace {

using composite::Args;
using composite::kGroup;

constexpr int64_t kTile = 4096;

// Lanes per inner loop: the backward keeps kGroup x 3 x L values of each of two arrays, which at
// these sizes stays in the L1 cache (about 12 KB each for float).
template <typename T>
constexpr int lanes() {
  return sizeof(T) == 4 ? 64 : 32;
}

template <typename T>
const T* opt_ptr(const at::Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

inline const bool* layer_ptr(const Args& a) { return a.layer.defined() ? a.layer.data_ptr<bool>() : nullptr; }

template <typename T>
void forward_kernel(const Args& a, T* out, T* frames) {
  constexpr int L = lanes<T>();
  const int64_t hw = a.H * a.W, K = a.K;
  const int64_t tiles = (hw + kTile - 1) / kTile;
  const T* canvas = a.canvas.data_ptr<T>();
  const T* alpha = a.alpha.data_ptr<T>();
  const T* color = a.color.data_ptr<T>();
  const T* mask = opt_ptr<T>(a.mask);
  const bool* layer = layer_ptr(a);
  at::parallel_for(0, a.B * tiles, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / tiles, p0 = (i % tiles) * kTile, p1 = std::min(hw, p0 + kTile);
      for (int64_t p = p0; p < p1; p += L) {
        const int n = static_cast<int>(std::min<int64_t>(L, p1 - p));
        composite::forward_lanes<T, L>(n, K, hw, canvas + b * 3 * hw + p, alpha + b * K * hw + p, color + b * K * 3,
                                       mask ? mask + b * hw + p : nullptr, layer,
                                       out ? out + b * 3 * hw + p : nullptr,
                                       frames ? frames + b * K * 3 * hw + p : nullptr);
      }
    }
  });
}

template <typename T>
void backward_kernel(const Args& a, const T* grad_out, T* grad_canvas, T* grad_alpha, T* grad_color) {
  constexpr int L = lanes<T>();
  const int64_t hw = a.H * a.W, K = a.K, B = a.B;
  const int64_t tiles = (hw + kTile - 1) / kTile;
  const T* canvas = a.canvas.data_ptr<T>();
  const T* alpha = a.alpha.data_ptr<T>();
  const T* color = a.color.data_ptr<T>();
  const T* mask = opt_ptr<T>(a.mask);
  const bool* layer = layer_ptr(a);
  // Colour-gradient partial sums per (image, tile), in double.
  std::vector<double> partial(static_cast<size_t>(B * tiles * K * 3), 0.0);
  at::parallel_for(0, B * tiles, 1, [&](int64_t begin, int64_t end) {
    T dcol[kGroup][3][L];
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / tiles, p0 = (i % tiles) * kTile, p1 = std::min(hw, p0 + kTile);
      for (int64_t k0 = 0; k0 < K; k0 += kGroup) {
        const int64_t k1 = std::min(K, k0 + kGroup);
        std::fill(&dcol[0][0][0], &dcol[0][0][0] + kGroup * 3 * L, T(0));
        for (int64_t p = p0; p < p1; p += L) {
          const int n = static_cast<int>(std::min<int64_t>(L, p1 - p));
          composite::backward_group_lanes<T, L>(
              n, K, hw, k0, k1, grad_out + b * 3 * hw + p, canvas + b * 3 * hw + p, alpha + b * K * hw + p,
              color + b * K * 3, mask ? mask + b * hw + p : nullptr, layer, grad_canvas + b * 3 * hw + p,
              grad_alpha + b * K * hw + p, dcol);
        }
        double* part = partial.data() + i * K * 3;
        for (int64_t k = k0; k < k1; ++k)
          for (int ch = 0; ch < 3; ++ch) {
            double s = 0.0;
            for (int l = 0; l < L; ++l) s += static_cast<double>(dcol[k - k0][ch][l]);
            part[k * 3 + ch] = s;
          }
      }
    }
  });
  // Fixed-order sum over tiles.
  for (int64_t b = 0; b < B; ++b)
    for (int64_t j = 0; j < K * 3; ++j) {
      double s = 0.0;
      for (int64_t t = 0; t < tiles; ++t) s += partial[(b * tiles + t) * K * 3 + j];
      grad_color[b * K * 3 + j] = static_cast<T>(s);
    }
}

at::Tensor composite_cpu(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                         const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  at::Tensor out = at::empty_like(a.canvas);
  if (out.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite",
                             [&] { forward_kernel<scalar_t>(a, out.data_ptr<scalar_t>(), nullptr); });
  return out;
}

at::Tensor composite_frames_cpu(const at::Tensor& canvas, const at::Tensor& alpha, const at::Tensor& color,
                                const std::optional<at::Tensor>& mask, const std::optional<at::Tensor>& layer) {
  const Args a = composite::check_args(canvas, alpha, color, mask, layer);
  at::Tensor frames = at::empty({a.B, a.K, 3, a.H, a.W}, a.canvas.options());
  if (frames.numel() == 0) return frames;
  AT_DISPATCH_FLOATING_TYPES(a.canvas.scalar_type(), "sgfast::composite_frames",
                             [&] { forward_kernel<scalar_t>(a, nullptr, frames.data_ptr<scalar_t>()); });
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
    backward_kernel<scalar_t>(a, g.data_ptr<scalar_t>(), grad_canvas.data_ptr<scalar_t>(),
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
