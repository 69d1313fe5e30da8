// Every sgfast op schema, declared once. Kernels are registered per device in csrc/cpu/*.cpp and
// csrc/cuda/*.cu with TORCH_LIBRARY_IMPL; autograd and fake (meta) kernels live in sgfast/ops/.
#include <Python.h>
#include <ATen/Config.h>
#include <torch/library.h>

// ATen's at::parallel_for is OpenMP code inlined into this library: built without -fopenmp, every
// CPU kernel would silently run on one thread (setup.py passes the flag).
#if AT_PARALLEL_OPENMP && !defined(_OPENMP)
#error "sgfast must be compiled with -fopenmp when torch uses the OpenMP parallel backend"
#endif

#ifdef SGFAST_WITH_CUDA
#include <cuda_runtime_api.h>
#endif

// An empty Python module: importing sgfast._C only loads the library, whose static initialisers
// register the ops with the dispatcher (the pattern of pytorch/extension-cpp).
extern "C" {
PyMODINIT_FUNC PyInit__C(void) {  // PyMODINIT_FUNC: exported despite -fvisibility=hidden
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

namespace sgfast {

// The CUDA runtime version the library was built with, 0 for a CPU-only build.
int64_t cuda_version() {
#ifdef SGFAST_WITH_CUDA
  return CUDART_VERSION;
#else
  return 0;
#endif
}

TORCH_LIBRARY(sgfast, m) {
  m.def("_cuda_version() -> int", &cuda_version);

  // Stroke rasterizer (forward only). params [N, 10]; mode "ltp" | "exact"; -> alpha [N, size, size].
  m.def("rasterize_strokes(Tensor params, int size, str mode, int supersample) -> Tensor");

  // Bi-level compositing. canvas [B,3,H,W], alpha [B,K,H,W], color [B,K,3], mask [B,1,H,W]?, layer [K] bool?
  m.def("composite(Tensor canvas, Tensor alpha, Tensor color, Tensor? mask, Tensor? layer) -> Tensor");
  // Every intermediate canvas: [B, K, 3, H, W] (frame k = canvas after stroke k).
  m.def("composite_frames(Tensor canvas, Tensor alpha, Tensor color, Tensor? mask, Tensor? layer) -> Tensor");
  m.def("_composite_backward(Tensor grad_out, Tensor canvas, Tensor alpha, Tensor color, Tensor? mask, "
        "Tensor? layer) -> (Tensor, Tensor, Tensor)");

  // Exact stroke renderer fused with compositing. canvas [B,3,H,W], strokes [B,N,13], mask [B,1,H,W]?,
  // layer [N] bool?, softness in pixels > 0 -> canvas [B,3,H,W]. The backward returns (grad canvas, grad strokes).
  m.def("render_strokes(Tensor canvas, Tensor strokes, Tensor? mask, Tensor? layer, float softness) -> Tensor");
  m.def("_render_strokes_backward(Tensor grad_out, Tensor canvas, Tensor strokes, Tensor? mask, Tensor? layer, "
        "float softness) -> (Tensor, Tensor)");

  // Aligned crop (spatial transformer). x [B,C,H,W], boxes [B,4] (x, y, w, h) -> [B, C, out_h, out_w].
  m.def("aligned_crop(Tensor x, Tensor boxes, int out_h, int out_w, Tensor? mask) -> Tensor");
  m.def("_aligned_crop_backward(Tensor grad_out, Tensor boxes, Tensor? mask, int in_h, int in_w) -> Tensor");

  // Focus distance L (Eq. 13-14) per image -> [B]; focus reward L(C0) - L(C1) -> [B].
  m.def("focus_distance(Tensor target, Tensor canvas, Tensor gbp, Tensor boxes, int out_h, int out_w) -> Tensor");
  m.def("_focus_distance_backward(Tensor grad_out, Tensor target, Tensor canvas, Tensor gbp, Tensor boxes, "
        "int out_h, int out_w) -> Tensor");
  m.def("focus_reward(Tensor target, Tensor canvas0, Tensor canvas1, Tensor gbp, Tensor boxes, int out_h, "
        "int out_w) -> Tensor");
  m.def("_focus_reward_backward(Tensor grad_out, Tensor target, Tensor canvas0, Tensor canvas1, Tensor gbp, "
        "Tensor boxes, int out_h, int out_w) -> (Tensor, Tensor)");
}

}  // namespace sgfast
