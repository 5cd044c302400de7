// The schemas of every pydeblur operator, in one TORCH_LIBRARY. Kernels are registered per backend
// in csrc/cpu/*.cpp (CPU) and csrc/cuda/*.cu (CUDA); fake kernels and autograd live in
// pydeblur/ops/.
#include <Python.h>
#include <torch/library.h>

// An empty Python module, so that `import pydeblur._C` loads this library and runs the
// registrations.
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(pydeblur, m) {
  // ---- wiener_bank ----
  // y [B, C, H, W], psf [Pb, Pc, kh, kw] (Pb in {1, B}, Pc in {1, C}), nsr [S] -> [B, S, C, H, W]
  m.def("wiener_bank(Tensor y, Tensor psf, Tensor nsr) -> Tensor");
  // -> (dL/dy, dL/dpsf, dL/dnsr); an output whose output_mask entry is false is an empty tensor.
  m.def(
      "wiener_bank_backward(Tensor grad, Tensor y, Tensor psf, Tensor nsr, bool[3] output_mask) -> "
      "(Tensor, Tensor, Tensor)");

  // ---- bilateral_filter ----
  // Returns the filtered image and the per-pixel weight sum [B, 1, H, W], which the backward
  // reuses.
  m.def(
      "bilateral_filter(Tensor x, int kernel_size, float sigma_color, float sigma_space) -> "
      "(Tensor, Tensor)");
  m.def(
      "bilateral_filter_backward(Tensor grad_out, Tensor x, Tensor out, Tensor norm, "
      "int kernel_size, float sigma_color, float sigma_space) -> Tensor");

  // ---- ssim ----
  // Per-plane SSIM means [B, C] and, when save_partials, the partial derivatives of the SSIM map
  // with respect to the five local moments [B, C, 4, H', W'] that ssim_backward needs (see
  // ssim_math.h).
  m.def(
      "ssim_forward(Tensor x, Tensor y, int window_size, float sigma, float data_range, bool "
      "valid, "
      "bool save_partials) -> (Tensor, Tensor)");
  // Gradients of sum(grad_means * means) with respect to x and y.
  m.def(
      "ssim_backward(Tensor grad_means, Tensor x, Tensor y, Tensor partials, int window_size, "
      "float sigma, bool valid) -> (Tensor, Tensor)");
}
