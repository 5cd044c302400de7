// Host code of wiener_bank shared by the CPU (csrc/cpu/wiener_bank.cpp) and CUDA
// (csrc/cuda/wiener_bank.cu) registrations: the checks that protect the kernels' memory, psf2otf,
// and the PSF gradient from its spectrum. Values (signs, finiteness) are checked by the Python
// wrapper (pydeblur/ops/wiener.py), which also turns the PSF layouts it accepts into [Pb, Pc, kh,
// kw].
#pragma once

#include <ATen/ATen.h>

namespace pydeblur::wiener {

// y [B, C, H, W], psf [Pb, Pc, kh, kw] (Pb in {1, B}, Pc in {1, C}, 0 < kh <= H, 0 < kw <= W) and
// nsr [S], S >= 1: one floating dtype, one device.
inline void check_inputs(const at::Tensor& y, const at::Tensor& psf, const at::Tensor& nsr) {
  TORCH_CHECK_VALUE(y.dim() == 4, "wiener_bank: y must be [B, C, H, W], got shape ", y.sizes());
  TORCH_CHECK_VALUE(psf.dim() == 4, "wiener_bank: psf must be [Pb, Pc, kh, kw], got shape ",
                    psf.sizes());
  TORCH_CHECK_VALUE(nsr.dim() == 1 && nsr.numel() > 0,
                    "wiener_bank: nsr must be [S] with S >= 1, got shape ", nsr.sizes());
  TORCH_CHECK_VALUE(y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble,
                    "wiener_bank: y must be float32 or float64, got ", y.scalar_type());
  TORCH_CHECK_VALUE(psf.scalar_type() == y.scalar_type() && nsr.scalar_type() == y.scalar_type(),
                    "wiener_bank: y, psf and nsr must have one dtype, got ", y.scalar_type(), ", ",
                    psf.scalar_type(), ", ", nsr.scalar_type());
  TORCH_CHECK_VALUE(psf.device() == y.device() && nsr.device() == y.device(),
                    "wiener_bank: y, psf and nsr must be on one device, got ", y.device(), ", ",
                    psf.device(), ", ", nsr.device());
  TORCH_CHECK_VALUE(psf.size(0) == 1 || psf.size(0) == y.size(0), "wiener_bank: psf batch size ",
                    psf.size(0), " must be 1 or that of y (", y.size(0), ")");
  TORCH_CHECK_VALUE(psf.size(1) == 1 || psf.size(1) == y.size(1), "wiener_bank: psf channels ",
                    psf.size(1), " must be 1 or those of y (", y.size(1), ")");
  TORCH_CHECK_VALUE(psf.size(2) <= y.size(2) && psf.size(3) <= y.size(3), "wiener_bank: psf (",
                    psf.size(2), "x", psf.size(3), ") is larger than the image (", y.size(2), "x",
                    y.size(3), ")");
  TORCH_CHECK_VALUE(psf.size(2) > 0 && psf.size(3) > 0, "wiener_bank: psf is empty");
}

// The inputs of the forward, and grad [B, S, C, H, W] of their dtype and device.
inline void check_backward_inputs(const at::Tensor& grad, const at::Tensor& y,
                                  const at::Tensor& psf, const at::Tensor& nsr) {
  check_inputs(y, psf, nsr);
  TORCH_CHECK_VALUE(
      grad.sizes() == at::IntArrayRef({y.size(0), nsr.size(0), y.size(1), y.size(2), y.size(3)}),
      "_wiener_bank_backward: grad must be [B, S, C, H, W], got ", grad.sizes());
  TORCH_CHECK_VALUE(grad.scalar_type() == y.scalar_type(),
                    "_wiener_bank_backward: grad must have the dtype of y (", y.scalar_type(),
                    "), got ", grad.scalar_type());
  TORCH_CHECK_VALUE(grad.device() == y.device(), "_wiener_bank_backward: grad is on ",
                    grad.device(), ", y on ", y.device());
}

// The half (rfft2) spectrum [Pb, Pc, H, W / 2 + 1] of psf [Pb, Pc, kh, kw] zero-padded to H x W
// with element (kh / 2, kw / 2) moved to the origin (MATLAB's psf2otf).
inline at::Tensor psf_to_otf(const at::Tensor& psf, int64_t H, int64_t W) {
  const int64_t kh = psf.size(2), kw = psf.size(3);
  at::Tensor padded = at::zeros({psf.size(0), psf.size(1), H, W}, psf.options());
  padded.narrow(2, 0, kh).narrow(3, 0, kw).copy_(psf);
  padded = at::roll(padded, {-(kh / 2), -(kw / 2)}, {2, 3});
  return at::fft_rfft2(padded).contiguous();
}

// dL/dpsf [Pb, Pc, kh, kw] from the half spectrum [B, C, H, W / 2 + 1] of dL/dk, where k is the
// padded, centred PSF of every plane: sums over the planes that share a PSF, then inverts
// psf_to_otf.
inline at::Tensor psf_grad_from_spectrum(const at::Tensor& dk_spectrum, const at::Tensor& psf,
                                         int64_t W) {
  at::Tensor summed = dk_spectrum;
  if (psf.size(0) == 1 && summed.size(0) != 1) summed = summed.sum(0, /*keepdim=*/true);
  if (psf.size(1) == 1 && summed.size(1) != 1) summed = summed.sum(1, /*keepdim=*/true);
  const int64_t H = dk_spectrum.size(2), kh = psf.size(2), kw = psf.size(3);
  at::Tensor dk = at::fft_irfft2(summed, at::IntArrayRef{H, W});
  // psf element (i, j) sits at ((i - kh / 2) mod H, (j - kw / 2) mod W) of k.
  return at::roll(dk, {kh / 2, kw / 2}, {2, 3}).narrow(2, 0, kh).narrow(3, 0, kw).contiguous();
}

}  // namespace pydeblur::wiener
