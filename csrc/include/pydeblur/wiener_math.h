// Per-frequency arithmetic of the Wiener bank, shared by the CPU (csrc/cpu/wiener_bank.cpp) and
// CUDA (csrc/cuda/wiener_bank.cu) kernels, so that the CPU tests check the arithmetic the GPU runs.
//
// Notation, at one frequency of the half (rfft) spectrum: Y = rfft2(y), K = the OTF of the PSF,
// D_s = |K|^2 + nsr_s, H_s = conj(K) / D_s (the Wiener filter), G_s = rfft2(dL/dx_s).
#pragma once

#include "pydeblur/common.h"

namespace pydeblur::wiener {

// Laid out and aligned like c10::complex<T> and std::complex<T>, so their buffers can be
// reinterpreted.
template <typename T>
struct alignas(2 * sizeof(T)) Complex {
  T re;
  T im;
};

// X_s = conj(K) Y / (|K|^2 + nsr_s) for s = 0..S-1, written to out[s * out_stride].
template <typename T>
PYDEBLUR_HOST_DEVICE void forward_frequency(Complex<T> y, Complex<T> k, const T* nsr, int S,
                                            Complex<T>* out, long long out_stride) {
  const T k2 = k.re * k.re + k.im * k.im;
  const T num_re = k.re * y.re + k.im * y.im;  // conj(K) Y
  const T num_im = k.re * y.im - k.im * y.re;
  for (int s = 0; s < S; ++s) {
    const T inv = T(1) / (k2 + nsr[s]);
    out[s * out_stride] = Complex<T>{num_re * inv, num_im * inv};
  }
}

// Gradient terms of one filter s at one frequency. With x_s = irfft2(H_s Y) (a real circular
// convolution), and `weight` = (1 or 2, the multiplicity of this bin in the full spectrum) / (H W):
//   dY  += conj(H_s) G_s                                   (dL/dy  = irfft2(sum_s dY))
//   dK  += (nsr_s conj(G_s) Y - K^2 G_s conj(Y)) / D_s^2    (dL/dk  = irfft2(sum_s dK), k = padded
//   PSF) dnsr = -weight Re(conj(G_s) Y conj(K)) / D_s^2          (dL/dnsr_s = sum over frequencies)
template <typename T>
struct BackwardTerms {
  Complex<T> dy;
  Complex<T> dk;
  T dnsr;
};

template <typename T>
PYDEBLUR_HOST_DEVICE BackwardTerms<T> backward_frequency(Complex<T> y, Complex<T> k, Complex<T> g,
                                                         T nsr, T weight) {
  const T k2 = k.re * k.re + k.im * k.im;
  const T inv = T(1) / (k2 + nsr);
  const T inv2 = inv * inv;
  // conj(G) Y
  const T gy_re = g.re * y.re + g.im * y.im;
  const T gy_im = g.re * y.im - g.im * y.re;
  // K^2
  const T kk_re = k.re * k.re - k.im * k.im;
  const T kk_im = T(2) * k.re * k.im;
  // K^2 G conj(Y) = K^2 conj(conj(G) Y)
  const T kgy_re = kk_re * gy_re + kk_im * gy_im;
  const T kgy_im = kk_im * gy_re - kk_re * gy_im;
  BackwardTerms<T> t;
  // conj(H) G = K G / D
  t.dy = Complex<T>{(k.re * g.re - k.im * g.im) * inv, (k.re * g.im + k.im * g.re) * inv};
  t.dk = Complex<T>{(nsr * gy_re - kgy_re) * inv2, (nsr * gy_im - kgy_im) * inv2};
  // Re(conj(G) Y conj(K))
  t.dnsr = -weight * (gy_re * k.re + gy_im * k.im) * inv2;
  return t;
}

// Multiplicity / (H W) of column `kx` of a half spectrum of width W / 2 + 1: columns 0 and (W even)
// W / 2 appear once in the full spectrum, the others twice (with their conjugate twin).
template <typename T>
PYDEBLUR_HOST_DEVICE T half_spectrum_weight(long long kx, long long W, T inv_hw) {
  const bool single = kx == 0 || (W % 2 == 0 && kx == W / 2);
  return single ? inv_hw : T(2) * inv_hw;
}

}  // namespace pydeblur::wiener
