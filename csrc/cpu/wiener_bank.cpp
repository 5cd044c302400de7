// CPU kernels of pydeblur::wiener_bank and pydeblur::wiener_bank_backward.
//
// Plane by plane: each (b, c) image plane is transformed, filtered by all S filters and transformed
// back while it is in cache; at::parallel_for spreads the planes over the threads (the FFTs inside
// a parallel region run single-threaded). The per-frequency arithmetic is in
// pydeblur/wiener_math.h.
#include "pydeblur/wiener_bank.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/util/complex.h>
#include <torch/library.h>

#include <algorithm>

#include "pydeblur/huge_pages.h"
#include "pydeblur/wiener_math.h"

namespace pydeblur {

void check_wiener_inputs(const at::Tensor& y, const at::Tensor& psf, const at::Tensor& nsr) {
  TORCH_CHECK(y.dim() == 4, "wiener_bank: y must be [B, C, H, W], got shape ", y.sizes());
  TORCH_CHECK(psf.dim() == 4, "wiener_bank: psf must be [Pb, Pc, kh, kw], got shape ", psf.sizes());
  TORCH_CHECK(nsr.dim() == 1 && nsr.numel() > 0,
              "wiener_bank: nsr must be [S] with S >= 1, got shape ", nsr.sizes());
  TORCH_CHECK(y.scalar_type() == at::kFloat || y.scalar_type() == at::kDouble,
              "wiener_bank: y must be float32 or float64, got ", y.scalar_type());
  TORCH_CHECK(psf.scalar_type() == y.scalar_type() && nsr.scalar_type() == y.scalar_type(),
              "wiener_bank: y, psf and nsr must have one dtype, got ", y.scalar_type(), ", ",
              psf.scalar_type(), ", ", nsr.scalar_type());
  TORCH_CHECK(psf.device() == y.device() && nsr.device() == y.device(),
              "wiener_bank: y, psf and nsr must be on one device, got ", y.device(), ", ",
              psf.device(), ", ", nsr.device());
  TORCH_CHECK(psf.size(0) == 1 || psf.size(0) == y.size(0), "wiener_bank: psf batch size ",
              psf.size(0), " must be 1 or that of y (", y.size(0), ")");
  TORCH_CHECK(psf.size(1) == 1 || psf.size(1) == y.size(1), "wiener_bank: psf channels ",
              psf.size(1), " must be 1 or those of y (", y.size(1), ")");
  TORCH_CHECK(psf.size(2) <= y.size(2) && psf.size(3) <= y.size(3), "wiener_bank: psf (",
              psf.size(2), "x", psf.size(3), ") is larger than the image (", y.size(2), "x",
              y.size(3), ")");
  TORCH_CHECK(psf.size(2) > 0 && psf.size(3) > 0, "wiener_bank: psf is empty");
}

at::Tensor psf_to_otf(const at::Tensor& psf, int64_t H, int64_t W) {
  const int64_t kh = psf.size(2), kw = psf.size(3);
  at::Tensor padded = at::zeros({psf.size(0), psf.size(1), H, W}, psf.options());
  padded.narrow(2, 0, kh).narrow(3, 0, kw).copy_(psf);
  padded = at::roll(padded, {-(kh / 2), -(kw / 2)}, {2, 3});
  return at::fft_rfft2(padded).contiguous();
}

at::Tensor psf_grad_from_spectrum(const at::Tensor& dk_spectrum, const at::Tensor& psf, int64_t W) {
  at::Tensor summed = dk_spectrum;
  if (psf.size(0) == 1 && summed.size(0) != 1) summed = summed.sum(0, /*keepdim=*/true);
  if (psf.size(1) == 1 && summed.size(1) != 1) summed = summed.sum(1, /*keepdim=*/true);
  const int64_t H = dk_spectrum.size(2), kh = psf.size(2), kw = psf.size(3);
  at::Tensor dk = at::fft_irfft2(summed, at::IntArrayRef{H, W});
  // psf element (i, j) sits at ((i - kh / 2) mod H, (j - kw / 2) mod W) of k.
  return at::roll(dk, {kh / 2, kw / 2}, {2, 3}).narrow(2, 0, kh).narrow(3, 0, kw).contiguous();
}

namespace {

using wiener::Complex;

// Planes per task of at::parallel_for: small problems run inline, without a parallel region.
int64_t planes_per_task(int64_t plane, int64_t S) {
  return std::max<int64_t>(1, (int64_t{1} << 16) / (plane * (S + 1)));
}

template <typename T>
const Complex<T>* as_complex(const at::Tensor& t) {
  return reinterpret_cast<const Complex<T>*>(t.const_data_ptr<c10::complex<T>>());
}

template <typename T>
Complex<T>* as_complex_mut(at::Tensor& t) {
  return reinterpret_cast<Complex<T>*>(t.mutable_data_ptr<c10::complex<T>>());
}

// Index of the OTF plane [Pb, Pc] used by image plane (b, c).
int64_t otf_plane(const at::Tensor& otf, int64_t b, int64_t c) {
  return (otf.size(0) == 1 ? 0 : b) * otf.size(1) + (otf.size(1) == 1 ? 0 : c);
}

at::Tensor wiener_bank_cpu(const at::Tensor& y_in, const at::Tensor& psf,
                           const at::Tensor& nsr_in) {
  check_wiener_inputs(y_in, psf, nsr_in);
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t Wh = W / 2 + 1, plane = H * Wh;
  const at::Tensor otf = psf_to_otf(psf, H, W);
  at::Tensor out = at::empty({B, S, C, H, W}, y.options());
  advise_huge_pages(out);

  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_cpu", [&] {
    using T = scalar_t;
    const Complex<T>* otf_data = as_complex<T>(otf);
    const T* nsr_data = nsr.const_data_ptr<T>();
    // ATen calls on the worker threads need the caller's thread-local state (inference mode).
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, B * C, planes_per_task(plane, S), [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard state_guard(caller_state);
      at::Tensor spectrum = at::empty({H, Wh}, otf.options());
      Complex<T>* X = as_complex_mut<T>(spectrum);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t b = p / C, c = p % C;
        const at::Tensor Y_t = at::fft_rfft2(y[b][c]).contiguous();
        const Complex<T>* Y = as_complex<T>(Y_t);
        const Complex<T>* K = otf_data + otf_plane(otf, b, c) * plane;
        // One filter at a time: a one-plane spectrum and its inverse stay in L2 cache; all S
        // spectra of a plane at once (S x 256 KiB) would not.
        for (int64_t s = 0; s < S; ++s) {
          const T nsr_s = nsr_data[s];  // a local: the stores to X cannot alias it (vectorises)
          for (int64_t i = 0; i < plane; ++i) {
            wiener::forward_frequency<T>(Y[i], K[i], &nsr_s, 1, X + i, 0);
          }
          at::Tensor x = out[b][s][c];
          at::fft_irfft2_out(x, spectrum, at::IntArrayRef{H, W});
        }
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> wiener_bank_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& y_in, const at::Tensor& psf,
    const at::Tensor& nsr_in, std::array<bool, 3> output_mask) {
  check_wiener_inputs(y_in, psf, nsr_in);
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous(), grad = grad_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef({B, S, C, H, W}),
              "wiener_bank_backward: grad must be [B, S, C, H, W], got ", grad.sizes());
  const int64_t Wh = W / 2 + 1, plane = H * Wh;
  const auto [need_y, need_psf, need_nsr] = output_mask;
  const at::Tensor otf = psf_to_otf(psf, H, W);
  const auto complex_options = otf.options();

  at::Tensor dy = need_y ? at::empty_like(y) : at::empty({0}, y.options());
  advise_huge_pages(dy);
  at::Tensor dk_spec =
      need_psf ? at::empty({B, C, H, Wh}, complex_options) : at::empty({0}, complex_options);
  at::Tensor dnsr_planes = at::zeros({B * C, S}, y.options().dtype(at::kDouble));

  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_backward_cpu", [&] {
    using T = scalar_t;
    const Complex<T>* otf_data = as_complex<T>(otf);
    const T* nsr_data = nsr.const_data_ptr<T>();
    const T inv_hw = T(1) / static_cast<T>(H * W);
    double* dnsr_data = dnsr_planes.mutable_data_ptr<double>();
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, B * C, planes_per_task(plane, S), [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard state_guard(caller_state);
      at::Tensor dy_spectrum = at::empty({H, Wh}, complex_options);
      at::Tensor dk_scratch = at::empty({H, Wh}, complex_options);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t b = p / C, c = p % C;
        const at::Tensor Y_t = at::fft_rfft2(y[b][c]).contiguous();
        const Complex<T>* Y = as_complex<T>(Y_t);
        const Complex<T>* K = otf_data + otf_plane(otf, b, c) * plane;
        Complex<T>* dY = as_complex_mut<T>(dy_spectrum);
        Complex<T>* dK =
            need_psf ? as_complex_mut<T>(dk_spec) + p * plane : as_complex_mut<T>(dk_scratch);
        std::fill_n(dY, plane, Complex<T>{0, 0});
        std::fill_n(dK, plane, Complex<T>{0, 0});
        double* dnsr = dnsr_data + p * S;
        for (int64_t s = 0; s < S; ++s) {
          const at::Tensor G_t = at::fft_rfft2(grad[b][s][c]).contiguous();
          const Complex<T>* G = as_complex<T>(G_t);
          T dnsr_s = 0;  // one plane's sum: the precision of T suffices, planes add up in double
          for (int64_t i = 0; i < plane; ++i) {
            const T weight = wiener::half_spectrum_weight<T>(i % Wh, W, inv_hw);
            const auto t = wiener::backward_frequency<T>(Y[i], K[i], G[i], nsr_data[s], weight);
            dY[i].re += t.dy.re;
            dY[i].im += t.dy.im;
            dK[i].re += t.dk.re;
            dK[i].im += t.dk.im;
            dnsr_s += t.dnsr;
          }
          dnsr[s] = dnsr_s;
        }
        if (need_y) {
          at::Tensor dy_plane = dy[b][c];
          at::fft_irfft2_out(dy_plane, dy_spectrum, at::IntArrayRef{H, W});
        }
      }
    });
  });

  at::Tensor dnsr = need_nsr ? dnsr_planes.sum(0).to(y.scalar_type()) : at::empty({0}, y.options());
  at::Tensor dpsf =
      need_psf ? psf_grad_from_spectrum(dk_spec, psf, W) : at::empty({0}, y.options());
  return {dy, dpsf, dnsr};
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CPU, m) {
  m.impl("wiener_bank", &wiener_bank_cpu);
  m.impl("wiener_bank_backward", &wiener_bank_backward_cpu);
}

}  // namespace pydeblur
