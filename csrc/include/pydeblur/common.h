// What every operator's kernels share: the qualifier of the arithmetic that both the CPU kernels
// (g++) and the CUDA kernels (nvcc) compile, and the normalised Gaussian taps of bilateral_filter's
// spatial weight and of ssim's window.
//
// The layout of each operator <op> (wiener, bilateral, ssim):
//   csrc/include/pydeblur/<op>_math.h  the arithmetic shared by the CPU and CUDA kernels
//                                      (PYDEBLUR_HOST_DEVICE, no ATen) and the kernels' limits;
//   csrc/include/pydeblur/<op>_host.h  host code shared by the CPU and CUDA registrations: the
//                                      checks that protect the kernels' memory, output shapes;
//   csrc/cpu/<op>.cpp, csrc/cuda/<op>.cu  the kernels and their TORCH_LIBRARY_IMPL;
//   csrc/ops.cpp                       every schema, in one TORCH_LIBRARY, and the limits exported
//                                      to Python.
// The Python wrappers (pydeblur/ops/) check types and values with errors that name the argument;
// the C++ checks (TORCH_CHECK_VALUE: a ValueError in Python) guard what the kernels index by, for
// direct torch.ops.pydeblur.* calls.
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define PYDEBLUR_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define PYDEBLUR_HOST_DEVICE inline
#endif

namespace pydeblur {

// The normalised 1-D Gaussian exp(-(k - r)^2 / (2 sigma^2)), k = 0 .. size - 1, r = size / 2, as
// kornia's get_gaussian_kernel1d: computed in double, then rounded to T.
template <typename T>
inline void gaussian_taps(int size, double sigma, T* taps) {
  const int radius = size / 2;
  const auto weight = [&](int k) {
    const double d = k - radius;
    return std::exp(-d * d / (2.0 * sigma * sigma));
  };
  double total = 0.0;
  for (int k = 0; k < size; ++k) total += weight(k);
  for (int k = 0; k < size; ++k) taps[k] = static_cast<T>(weight(k) / total);
}

}  // namespace pydeblur
