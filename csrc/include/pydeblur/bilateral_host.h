// Host code of bilateral_filter shared by the CPU (csrc/cpu/bilateral_filter.cpp) and CUDA
// (csrc/cuda/bilateral_filter.cu) registrations: the checks that protect the kernels' memory.
// Argument values (the 3..kMaxKernelSize range of the public function, positive and finite sigmas,
// finite pixels) are checked by the Python wrapper (pydeblur/ops/bilateral.py).
#pragma once

#include <ATen/ATen.h>

#include "pydeblur/bilateral_math.h"

namespace pydeblur::bilateral {

// x [B, C, H, W], float32 or float64; an odd kernel_size whose window of 2 r + 1 taps
// (r = kernel_size / 2) fits the kernels' arrays, and r < H, r < W for the reflect padding.
inline void check_inputs(const at::Tensor& x, int64_t kernel_size) {
  TORCH_CHECK_VALUE(x.dim() == 4, "bilateral_filter: x must be [B, C, H, W] (4-D), got shape ",
                    x.sizes());
  TORCH_CHECK_VALUE(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
                    "bilateral_filter: x must be float32 or float64, got ", x.scalar_type());
  TORCH_CHECK_VALUE(kernel_size >= 1 && kernel_size % 2 == 1 && kernel_size <= kMaxKernelSize,
                    "bilateral_filter: kernel_size must be odd and at most ", kMaxKernelSize,
                    ", got ", kernel_size);
  TORCH_CHECK_VALUE(
      kernel_size / 2 < x.size(2) && kernel_size / 2 < x.size(3),
      "bilateral_filter: reflect padding needs kernel_size // 2 < H and < W, got kernel_size ",
      kernel_size, " for an image of ", x.size(2), "x", x.size(3));
}

// The forward's inputs, and grad_out, out [B, C, H, W] and norm [B, 1, H, W] on x's device (any
// floating dtype: the kernels convert them to x's).
inline void check_backward_inputs(const at::Tensor& grad_out, const at::Tensor& x,
                                  const at::Tensor& out, const at::Tensor& norm,
                                  int64_t kernel_size) {
  check_inputs(x, kernel_size);
  TORCH_CHECK_VALUE(grad_out.sizes() == x.sizes() && out.sizes() == x.sizes(),
                    "_bilateral_filter_backward: grad_out and out must have the shape of x ",
                    x.sizes(), ", got ", grad_out.sizes(), " and ", out.sizes());
  TORCH_CHECK_VALUE(norm.dim() == 4 && norm.size(0) == x.size(0) && norm.size(1) == 1 &&
                        norm.size(2) == x.size(2) && norm.size(3) == x.size(3),
                    "_bilateral_filter_backward: norm must be [B, 1, H, W], got ", norm.sizes());
  TORCH_CHECK_VALUE(
      grad_out.device() == x.device() && out.device() == x.device() && norm.device() == x.device(),
      "_bilateral_filter_backward: grad_out, x, out and norm must be on one device");
}

}  // namespace pydeblur::bilateral
