// The schemas of every pydeblur operator, in one TORCH_LIBRARY. Kernels are registered per backend in
// csrc/cpu/*.cpp (CPU) and csrc/cuda/*.cu (CUDA); fake kernels and autograd live in pydeblur/ops/.
#include <Python.h>
#include <torch/library.h>

// An empty Python module, so that `import pydeblur._C` loads this library and runs the registrations.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(pydeblur, m) {
  // ---- wiener_bank ----

  // ---- bilateral_filter ----
  // Returns the filtered image and the per-pixel weight sum [B, 1, H, W], which the backward reuses.
  m.def(
      "bilateral_filter(Tensor x, int kernel_size, float sigma_color, float sigma_space) -> "
      "(Tensor, Tensor)");
  m.def(
      "bilateral_filter_backward(Tensor grad_out, Tensor x, Tensor out, Tensor norm, "
      "int kernel_size, float sigma_color, float sigma_space) -> Tensor");

  // ---- ssim ----
}
