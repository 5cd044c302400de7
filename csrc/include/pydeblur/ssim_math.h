// Per-pixel SSIM arithmetic shared by the CPU (csrc/cpu/ssim.cpp) and CUDA (csrc/cuda/ssim.cu)
// kernels, so that the CPU tests check the arithmetic the GPU runs.
//
// Notation: the five local moments of a pixel are the window-weighted means
//   mx = <x>, my = <y>, exx = <x^2>, eyy = <y^2>, exy = <xy>
// and SSIM = (2 mx my + C1)(2 (exy - mx my) + C2) / ((mx^2 + my^2 + C1)(exx - mx^2 + eyy - my^2 +
// C2)).
#pragma once

#include "pydeblur/common.h"

namespace pydeblur::ssim {

// The largest window the kernels accept: they keep the taps in fixed arrays of this size (the CUDA
// kernels pass them by value). The one definition of the limit: pydeblur/ops/ssim.py reads it from
// the compiled library (csrc/ops.cpp exports it).
constexpr int kMaxWindow = 31;

// Where the SSIM map lies on the image. Padded coordinates put the image at offset `pad`; output
// pixel (p, q) sees padded rows p .. p + 2 radius and columns q .. q + 2 radius.
struct Geometry {
  int height, width;  // the image
  int radius;         // window_size // 2
  int pad;            // radius for "same" (zero padding), 0 for "valid"
  int out_height, out_width;
};

inline Geometry make_geometry(int height, int width, int window_size, bool valid) {
  Geometry g;
  g.height = height;
  g.width = width;
  g.radius = window_size / 2;
  g.pad = valid ? 0 : g.radius;
  g.out_height = height + 2 * g.pad - 2 * g.radius;
  g.out_width = width + 2 * g.pad - 2 * g.radius;
  return g;
}

// The SSIM value of one pixel from its five local moments.
template <typename T>
PYDEBLUR_HOST_DEVICE T ssim_value(T mx, T my, T exx, T eyy, T exy, T c1, T c2) {
  const T a1 = T(2) * mx * my + c1;
  const T a2 = T(2) * (exy - mx * my) + c2;
  const T b1 = mx * mx + my * my + c1;
  const T b2 = (exx - mx * mx) + (eyy - my * my) + c2;
  return (a1 * a2) / (b1 * b2);
}

// The SSIM value of one pixel and its partial derivatives with respect to the five moments
// (d/dexx == d/deyy, hence one `d_second`).
template <typename T>
struct ValueAndPartials {
  T value, d_mx, d_my, d_second, d_exy;
};

template <typename T>
PYDEBLUR_HOST_DEVICE ValueAndPartials<T> ssim_value_and_partials(T mx, T my, T exx, T eyy, T exy,
                                                                 T c1, T c2) {
  const T a1 = T(2) * mx * my + c1;
  const T a2 = T(2) * (exy - mx * my) + c2;
  const T b1 = mx * mx + my * my + c1;
  const T b2 = (exx - mx * mx) + (eyy - my * my) + c2;
  const T inv_b = T(1) / (b1 * b2);
  const T s = a1 * a2 * inv_b;
  const T d_a1 = a2 * inv_b;  // dS/dA1
  const T d_a2 = a1 * inv_b;  // dS/dA2
  const T d_b1 = -s / b1;     // dS/dB1
  const T d_b2 = -s / b2;     // dS/dB2
  ValueAndPartials<T> r;
  r.value = s;
  r.d_mx = T(2) * (my * (d_a1 - d_a2) + mx * (d_b1 - d_b2));
  r.d_my = T(2) * (mx * (d_a1 - d_a2) + my * (d_b1 - d_b2));
  r.d_second = d_b2;
  r.d_exy = T(2) * d_a2;
  return r;
}

// The gradient at one input pixel (value x, y) from the adjoint-filtered, upstream-weighted
// partials f_* = W^T (g * dS/d*): dL/dx = f_mx + 2 x f_second + y f_exy, and symmetrically for y.
template <typename T>
PYDEBLUR_HOST_DEVICE void ssim_input_gradients(T x, T y, T f_mx, T f_my, T f_second, T f_exy, T* dx,
                                               T* dy) {
  *dx = f_mx + T(2) * x * f_second + y * f_exy;
  *dy = f_my + T(2) * y * f_second + x * f_exy;
}

// The partial maps saved by the forward pass, in this order, per plane.
enum Partial { kMx = 0, kMy = 1, kSecond = 2, kExy = 3, kNumPartials = 4 };

}  // namespace pydeblur::ssim
