// The schemas of every pydeblur operator, in one TORCH_LIBRARY, and the kernels' limits exported to
// Python. Kernels are registered per backend in csrc/cpu/*.cpp (CPU) and csrc/cuda/*.cu (CUDA);
// fake kernels and autograd live in pydeblur/ops/. The backward operators are private (a leading
// underscore): the autograd registered in pydeblur/ops/ calls them. The layout of the sources is
// described in csrc/include/pydeblur/common.h.
#include <Python.h>
#include <torch/library.h>

#include "pydeblur/bilateral_math.h"
#include "pydeblur/ssim_math.h"

// The Python module `pydeblur._C`: importing it loads this library and runs the registrations. Its
// attributes are the limits that the Python wrappers check, so that each is defined once, here in
// C++ (pydeblur/ops/_library.py reads them).
PyMODINIT_FUNC PyInit__C(void) {
  static PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  PyObject* module = PyModule_Create(&module_def);
  if (module == nullptr) return nullptr;
  if (PyModule_AddIntConstant(module, "BILATERAL_MAX_KERNEL_SIZE",
                              pydeblur::bilateral::kMaxKernelSize) < 0 ||
      PyModule_AddIntConstant(module, "SSIM_MAX_WINDOW", pydeblur::ssim::kMaxWindow) < 0) {
    Py_DECREF(module);
    return nullptr;
  }
  return module;
}

TORCH_LIBRARY(pydeblur, m) {
  // ---- wiener_bank ----
  // y [B, C, H, W], psf [Pb, Pc, kh, kw] (Pb in {1, B}, Pc in {1, C}), nsr [S] -> [B, S, C, H, W]
  m.def("wiener_bank(Tensor y, Tensor psf, Tensor nsr) -> Tensor");
  // -> (dL/dy, dL/dpsf, dL/dnsr); an output whose output_mask entry is false is an empty tensor.
  m.def(
      "_wiener_bank_backward(Tensor grad, Tensor y, Tensor psf, Tensor nsr, bool[3] output_mask) "
      "-> (Tensor, Tensor, Tensor)");

  // ---- bilateral_filter ----
  // Returns the filtered image and the per-pixel weight sum [B, 1, H, W], which the backward
  // reuses.
  m.def(
      "bilateral_filter(Tensor x, int kernel_size, float sigma_color, float sigma_space) -> "
      "(Tensor, Tensor)");
  m.def(
      "_bilateral_filter_backward(Tensor grad_out, Tensor x, Tensor out, Tensor norm, "
      "int kernel_size, float sigma_color, float sigma_space) -> Tensor");

  // ---- ssim ----
  // Per-plane SSIM means [B, C] and, when save_partials, the partial derivatives of the SSIM map
  // with respect to the five local moments [B, C, 4, H', W'] that _ssim_backward needs (see
  // ssim_math.h).
  m.def(
      "ssim_forward(Tensor x, Tensor y, int window_size, float sigma, float data_range, "
      "bool valid, bool save_partials) -> (Tensor, Tensor)");
  // Gradients of sum(grad_means * means) with respect to x and y.
  m.def(
      "_ssim_backward(Tensor grad_means, Tensor x, Tensor y, Tensor partials, int window_size, "
      "float sigma, bool valid) -> (Tensor, Tensor)");
}
