// Host-side argument checks and output shapes of the ssim operators, shared by the CPU and CUDA
// registrations (the Python wrapper gives friendlier errors first; these guard direct op calls).
#pragma once

#include <ATen/ATen.h>

#include "pydeblur/ssim_math.h"

namespace pydeblur {
namespace ssim_op {

inline ssim_math::Geometry check_images(const at::Tensor& x, const at::Tensor& y,
                                        int64_t window_size, double sigma, bool valid) {
  TORCH_CHECK(x.dim() == 4, "ssim: x must be [B, C, H, W], got shape ", x.sizes());
  TORCH_CHECK(x.sizes() == y.sizes(), "ssim: x and y must have one shape, got ", x.sizes(), " and ",
              y.sizes());
  TORCH_CHECK(x.numel() > 0, "ssim: x and y must not be empty, got shape ", x.sizes());
  TORCH_CHECK(x.scalar_type() == y.scalar_type(), "ssim: x and y must have one dtype");
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "ssim: the kernels take float32 or float64, got ", x.scalar_type());
  TORCH_CHECK(window_size >= 3 && window_size % 2 == 1 && window_size <= ssim_math::kMaxWindow,
              "ssim: window_size must be odd, in [3, ", ssim_math::kMaxWindow, "], got ",
              window_size);
  TORCH_CHECK(sigma > 0, "ssim: sigma must be positive, got ", sigma);
  TORCH_CHECK(!valid || (x.size(2) >= window_size && x.size(3) >= window_size),
              "ssim: with padding=\"valid\" the images (", x.size(2), "x", x.size(3),
              ") must be at least window_size (", window_size, ") on each side");
  return ssim_math::make_geometry(static_cast<int>(x.size(2)), static_cast<int>(x.size(3)),
                                  static_cast<int>(window_size), valid);
}

// The per-plane partial maps [B, C, 4, out_height, out_width], or an empty tensor when not saved.
inline at::Tensor empty_partials(const at::Tensor& x, const ssim_math::Geometry& g, bool save) {
  if (!save) return at::empty({0}, x.options());
  return at::empty({x.size(0), x.size(1), ssim_math::kNumPartials, g.out_height, g.out_width},
                   x.options());
}

inline void check_backward(const at::Tensor& grad_means, const at::Tensor& x,
                           const at::Tensor& partials, const ssim_math::Geometry& g) {
  TORCH_CHECK(
      grad_means.dim() == 2 && grad_means.size(0) == x.size(0) && grad_means.size(1) == x.size(1),
      "ssim_backward: grad_means must be [B, C], got ", grad_means.sizes());
  TORCH_CHECK(partials.numel() > 0,
              "ssim_backward: the forward pass did not save its partials (save_partials=False)");
  TORCH_CHECK(partials.dim() == 5 && partials.size(0) == x.size(0) &&
                  partials.size(1) == x.size(1) && partials.size(2) == ssim_math::kNumPartials &&
                  partials.size(3) == g.out_height && partials.size(4) == g.out_width,
              "ssim_backward: partials have shape ", partials.sizes(),
              ", which does not fit the images");
  TORCH_CHECK(
      grad_means.scalar_type() == x.scalar_type() && partials.scalar_type() == x.scalar_type(),
      "ssim_backward: grad_means, x, y and partials must have one dtype");
}

}  // namespace ssim_op
}  // namespace pydeblur
