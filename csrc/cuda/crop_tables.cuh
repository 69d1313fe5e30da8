// The tap tables of a batch on the device (kernels/crop.h: TapLayout, TapTables), built by crop.cu
// and shared with focus.cu.
#pragma once
#include <ATen/ATen.h>

#include "kernels/crop.h"

namespace sgfast {

struct CudaTapTables {
  TapLayout layout;
  at::Tensor idx, wts;  // int64 [layout.idx_size()], the boxes' dtype [layout.wts_size()]
};

// Tables of crops of size (h, w) from H x W images, for contiguous boxes [B, 4] on the device.
CudaTapTables make_tap_tables_cuda(const at::Tensor& boxes, int64_t H, int64_t W, int64_t h, int64_t w);

// grad [B, C, h, w] (contiguous) -> grad_x [B, C, in_h, in_w] (times mask when defined).
at::Tensor crop_backward_cuda_impl(const at::Tensor& grad, const at::Tensor& boxes, const at::Tensor& mask,
                                   const CudaTapTables& tab, int64_t in_h, int64_t in_w);

}  // namespace sgfast
