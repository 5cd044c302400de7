// Per-pixel arithmetic of the bilateral filter, shared by the CPU kernels (plain g++) and the CUDA
// kernels (nvcc), so that the CPU tests check the same arithmetic the GPU runs.
//
// The filter (kornia.filters.bilateral_blur with border_type="reflect", color_distance_type="l1"):
//   d(p, q)  = sum_c |x_c(q) - x_c(p)|                      (L1 colour distance over the channels)
//   w(p, q)  = s(q - p) * exp(-0.5 d^2 / sigma_color^2)     (s: normalised 2-D Gaussian, s = g(dy)
//   g(dx)) W(p)     = sum_q w(p, q)                                (the normaliser, saved for the
//   backward) out_c(p) = sum_q w(p, q) x_c(q) / W(p)
// with q over the k x k window around p, read from the reflect-padded image.
//
// Gradient, with G_c(p) = dL/dout_c(p) / W(p) and dot(p) = sum_c G_c(p) out_c(p):
//   dL/dw(p, q) = a(p, q) = sum_c G_c(p) x_c(q) - dot(p)
//   dL/dd(p, q) = b(p, q) = a(p, q) w(p, q) (-d / sigma_color^2)
//   x_c(q) receives G_c(p) w(p, q) + b sgn(x_c(q) - x_c(p)), and x_c(p) receives -b sgn(...),
// where sgn(0) = 0 as in torch.abs's derivative.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "pydeblur/common.h"

namespace pydeblur::bilateral {

// Largest supported window; the kernels keep the 1-D spatial weights in fixed arrays of this size.
// The one definition of the limit: pydeblur/ops/bilateral.py reads it from the compiled library
// (csrc/ops.cpp exports it).
constexpr int kMaxKernelSize = 15;

// The 1-D Gaussian g of the spatial weight, passed by value to the kernels (CUDA: as a kernel
// parameter, which lives in constant memory, so nothing is copied and the host never waits).
template <typename T>
struct SpatialKernel {
  T g[kMaxKernelSize];
};

PYDEBLUR_HOST_DEVICE int32_t float_bits_as_int(float value) {
#if defined(__CUDA_ARCH__)
  return __float_as_int(value);
#else
  int32_t bits;
  std::memcpy(&bits, &value, sizeof(bits));
  return bits;
#endif
}

PYDEBLUR_HOST_DEVICE float int_bits_as_float(int32_t bits) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(bits);
#else
  float value;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
#endif
}

// exp(x) for x <= 88 (here x <= 0 always), branch-free so that g++ vectorises the loops that call
// it (a clamp of x, even written as a select, makes g++ thread it into branches). Cephes' expf:
// x = n ln2 + r with |r| <= ln2 / 2 (ln2 split in two for an exact reduction), a degree-6
// polynomial for e^r, and 2^n put into the exponent bits. Relative error < 2 ulp down to x = -87.3.
// Below, where 2^n is no longer a normal float, a bit mask returns +0 (exp is 0 below -103.9
// anyway, and a subnormal weight never moves a sum that holds the centre's weight); the mask also
// clears whatever the polynomial made of a huge |x| (-inf included: float-to-int conversion of it
// gives INT_MIN on x86 and in CUDA).
PYDEBLUR_HOST_DEVICE float exp_approx(float x) {
  // Round to nearest by the 1.5 * 2^23 trick (vectorises without SSE4.1 roundps).
  const float shifter = 12582912.0f;
  float n = (x * 1.44269504088896341f + shifter) - shifter;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  const int32_t biased = static_cast<int32_t>(n) + 127;  // the exponent field of 2^n
  const int32_t keep = ~(biased >> 31);                  // all ones where 2^n is a normal float
  const int32_t power = static_cast<int32_t>(static_cast<uint32_t>(biased) << 23) & keep;
  return int_bits_as_float(float_bits_as_int(p * int_bits_as_float(power)) & keep);
}

PYDEBLUR_HOST_DEVICE float range_exp(float x) { return exp_approx(x); }
PYDEBLUR_HOST_DEVICE double range_exp(double x) { return ::exp(x); }

// -0.5 / sigma_color^2: the factor of d^2 in the range weight's exponent.
template <typename T>
PYDEBLUR_HOST_DEVICE T range_scale(double sigma_color) {
  return static_cast<T>(-0.5 / (sigma_color * sigma_color));
}

// w(p, q) from the spatial weight s and the colour distance d.
template <typename T>
PYDEBLUR_HOST_DEVICE T pair_weight(T spatial, T distance, T scale) {
  return spatial * range_exp(scale * distance * distance);
}

// b(p, q) = dL/dd: the gradient reaching the colour distance through the range weight.
template <typename T>
PYDEBLUR_HOST_DEVICE T distance_gradient(T weight_gradient, T weight, T distance, T scale) {
  return weight_gradient * weight * (T(2) * scale * distance);
}

// The derivative of |v|: sgn(v) times g, and 0 at v == 0 (torch.abs's subgradient), branch-free.
template <typename T>
PYDEBLUR_HOST_DEVICE T signed_gradient(T g, T v) {
  return g * (static_cast<T>(v > T(0)) - static_cast<T>(v < T(0)));
}

// PyTorch's "reflect" padding index (the edge is not repeated); valid for -n < i < 2n - 1.
PYDEBLUR_HOST_DEVICE int reflect_index(int i, int n) {
  i = i < 0 ? -i : i;
  return i >= n ? 2 * (n - 1) - i : i;
}

// The spatial kernel g: kornia.filters.get_gaussian_kernel1d, computed in double, rounded to T.
template <typename T>
inline SpatialKernel<T> spatial_kernel(int kernel_size, double sigma_space) {
  SpatialKernel<T> kernel{};
  gaussian_taps(kernel_size, sigma_space, kernel.g);
  return kernel;
}

}  // namespace pydeblur::bilateral
