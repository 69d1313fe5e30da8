// Input checks with messages that name the argument (shared by the CPU and CUDA entry points).
#pragma once
#include <ATen/ATen.h>

#define SGFAST_CHECK_ARG(cond, name, ...) TORCH_CHECK(cond, "sgfast: argument '", name, "': ", __VA_ARGS__)

namespace sgfast {

inline void check_float(const at::Tensor& t, const char* name) {
  SGFAST_CHECK_ARG(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble, name,
                   "expected float32 or float64, got ", t.scalar_type());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name, const char* shape) {
  SGFAST_CHECK_ARG(t.dim() == dim, name, "expected ", dim, "-d tensor ", shape, ", got shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& a, const at::Tensor& b, const char* name) {
  SGFAST_CHECK_ARG(a.device() == b.device(), name, "expected device ", a.device(), ", got ", b.device());
}

// NaN/inf boxes, refused by the CPU kernels themselves (reading a CPU tensor costs no sync), so code
// compiled by torch.compile, which skips the Python wrapper's check, is refused the same way (a
// ValueError) instead of getting a crop of NaN. The CUDA kernels give NaN for such an image instead
// (a check there would be a host sync on every call).
inline void check_boxes_finite_cpu(const at::Tensor& boxes) {
  TORCH_CHECK_VALUE(boxes.numel() == 0 || at::isfinite(boxes).all().item<bool>(),
                    "sgfast: argument 'boxes': contains NaN or inf");
}

}  // namespace sgfast
