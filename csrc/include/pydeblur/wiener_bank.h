// Host-side pieces of the Wiener bank shared by the CPU and CUDA kernels (defined in
// csrc/cpu/wiener_bank.cpp): argument checks, psf2otf, and the PSF gradient from its spectrum.
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace pydeblur {

// Checks shapes, dtypes and devices of y [B, C, H, W], psf [Pb, Pc, kh, kw] (Pb in {1, B},
// Pc in {1, C}) and nsr [S]. Values (signs, finiteness) are checked by the Python wrapper.
void check_wiener_inputs(const at::Tensor& y, const at::Tensor& psf, const at::Tensor& nsr);

// The half (rfft2) spectrum [Pb, Pc, H, W / 2 + 1] of psf [Pb, Pc, kh, kw] zero-padded to H x W
// with element (kh / 2, kw / 2) moved to the origin (MATLAB's psf2otf).
at::Tensor psf_to_otf(const at::Tensor& psf, int64_t H, int64_t W);

// dL/dpsf [Pb, Pc, kh, kw] from the half spectrum [B, C, H, W / 2 + 1] of dL/dk, where k is the
// padded, centred PSF of every plane: sums over the planes that share a PSF, then inverts
// psf_to_otf.
at::Tensor psf_grad_from_spectrum(const at::Tensor& dk_spectrum, const at::Tensor& psf, int64_t W);

}  // namespace pydeblur
