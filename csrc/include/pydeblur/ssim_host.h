// Host code of ssim shared by the CPU (csrc/cpu/ssim.cpp) and CUDA (csrc/cuda/ssim.cu)
// registrations: the checks that protect the kernels' memory and the shape of the saved partials.
// Argument values (the 3..kMaxWindow range of the public function, positive sigma and data_range,
// finite pixels, padding and reduction names) are checked by the Python wrapper
// (pydeblur/ops/ssim.py).
#pragma once

#include <ATen/ATen.h>

#include "pydeblur/ssim_math.h"

namespace pydeblur::ssim {

// x and y [B, C, H, W], one shape (not empty), one floating dtype, one device; an odd window_size
// whose taps fit the kernels' arrays, and with valid, images at least that large (else the map has
// no pixel).
inline Geometry check_inputs(const at::Tensor& x, const at::Tensor& y, int64_t window_size,
                             bool valid) {
  TORCH_CHECK_VALUE(x.dim() == 4, "ssim: x must be [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.sizes() == y.sizes(), "ssim: x and y must have one shape, got ", x.sizes(),
                    " and ", y.sizes());
  TORCH_CHECK_VALUE(x.numel() > 0, "ssim: x and y must not be empty, got shape ", x.sizes());
  TORCH_CHECK_VALUE(x.scalar_type() == y.scalar_type(), "ssim: x and y must have one dtype, got ",
                    x.scalar_type(), " and ", y.scalar_type());
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                    "ssim: the kernels take float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(x.device() == y.device(), "ssim: x and y must be on one device, got ",
                    x.device(), " and ", y.device());
  TORCH_CHECK_VALUE(window_size >= 1 && window_size % 2 == 1 && window_size <= kMaxWindow,
                    "ssim: window_size must be odd and at most ", kMaxWindow, ", got ",
                    window_size);
  TORCH_CHECK_VALUE(!valid || (x.size(2) >= window_size && x.size(3) >= window_size),
                    "ssim: with padding=\"valid\" the images (", x.size(2), "x", x.size(3),
                    ") must be at least window_size (", window_size, ") on each side");
  return make_geometry(static_cast<int>(x.size(2)), static_cast<int>(x.size(3)),
                       static_cast<int>(window_size), valid);
}

// The per-plane partial maps [B, C, 4, out_height, out_width], or an empty tensor when not saved.
inline at::Tensor empty_partials(const at::Tensor& x, const Geometry& g, bool save) {
  if (!save) return at::empty({0}, x.options());
  return at::empty({x.size(0), x.size(1), kNumPartials, g.out_height, g.out_width}, x.options());
}

// The forward's inputs (checked by check_inputs), grad_means [B, C] and the partials the forward
// saved, of x's dtype and device.
inline void check_backward_inputs(const at::Tensor& grad_means, const at::Tensor& x,
                                  const at::Tensor& partials, const Geometry& g) {
  TORCH_CHECK_VALUE(
      grad_means.dim() == 2 && grad_means.size(0) == x.size(0) && grad_means.size(1) == x.size(1),
      "_ssim_backward: grad_means must be [B, C], got ", grad_means.sizes());
  TORCH_CHECK_VALUE(
      partials.numel() > 0,
      "_ssim_backward: the forward pass did not save its partials (save_partials=False)");
  TORCH_CHECK_VALUE(partials.dim() == 5 && partials.size(0) == x.size(0) &&
                        partials.size(1) == x.size(1) && partials.size(2) == kNumPartials &&
                        partials.size(3) == g.out_height && partials.size(4) == g.out_width,
                    "_ssim_backward: partials have shape ", partials.sizes(),
                    ", which does not fit the images");
  TORCH_CHECK_VALUE(
      grad_means.scalar_type() == x.scalar_type() && partials.scalar_type() == x.scalar_type(),
      "_ssim_backward: grad_means, x, y and partials must have one dtype");
  TORCH_CHECK_VALUE(grad_means.device() == x.device() && partials.device() == x.device(),
                    "_ssim_backward: grad_means, x, y and partials must be on one device");
}

}  // namespace pydeblur::ssim
