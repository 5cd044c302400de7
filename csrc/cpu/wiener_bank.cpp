// CPU kernels of pydeblur::wiener_bank and pydeblur::_wiener_bank_backward.
//
// Forward: the B x C image planes are transformed at once, then each of the B x C x S filtered
// planes is filtered and transformed back by one task of at::parallel_for (the FFTs inside a
// parallel region run single-threaded). Backward: plane by plane, each (b, c) plane transformed,
// filtered by all S filters and transformed back while it is in cache. The per-frequency arithmetic
// is in pydeblur/wiener_math.h, the checks and psf2otf in pydeblur/wiener_host.h.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <c10/util/complex.h>
#include <torch/library.h>

#include <algorithm>
#include <array>

#include "pydeblur/huge_pages.h"
#include "pydeblur/wiener_host.h"
#include "pydeblur/wiener_math.h"

namespace pydeblur {
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
  wiener::check_inputs(y_in, psf, nsr_in);
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t Wh = W / 2 + 1, plane = H * Wh;
  const at::Tensor otf = wiener::psf_to_otf(psf, H, W);
  at::Tensor out = at::empty({B, S, C, H, W}, y.options());
  advise_huge_pages(out);

  AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_cpu", [&] {
    using T = scalar_t;
    const Complex<T>* otf_data = as_complex<T>(otf);
    const T* nsr_data = nsr.const_data_ptr<T>();
    // All B x C spectra first (one batched, multi-threaded rfft2), then the B x C x S filtered
    // planes spread over the threads: with few planes (one RGB image: 3) and 2 threads, planes
    // per thread would leave a thread idle for a third of the time; 3 x 15 filter tasks do not.
    const at::Tensor Y_all = at::fft_rfft2(y).contiguous();
    const Complex<T>* Y_data = as_complex<T>(Y_all);
    // ATen calls on the worker threads need the caller's thread-local state (inference mode).
    const at::ThreadLocalState caller_state;
    at::parallel_for(0, B * C * S, planes_per_task(plane, 0), [&](int64_t begin, int64_t end) {
      const at::ThreadLocalStateGuard state_guard(caller_state);
      at::Tensor spectrum = at::empty({H, Wh}, otf.options());
      Complex<T>* X = as_complex_mut<T>(spectrum);
      for (int64_t p = begin; p < end; ++p) {
        const int64_t bc = p / S, s = p % S, b = bc / C, c = bc % C;
        const Complex<T>* Y = Y_data + bc * plane;
        const Complex<T>* K = otf_data + otf_plane(otf, b, c) * plane;
        const T nsr_s = nsr_data[s];  // a local: the stores to X cannot alias it (vectorises)
        for (int64_t i = 0; i < plane; ++i) {
          wiener::forward_frequency<T>(Y[i], K[i], &nsr_s, 1, X + i, 0);
        }
        at::Tensor x = out[b][s][c];
        at::fft_irfft2_out(x, spectrum, at::IntArrayRef{H, W});
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> wiener_bank_backward_cpu(
    const at::Tensor& grad_in, const at::Tensor& y_in, const at::Tensor& psf,
    const at::Tensor& nsr_in, std::array<bool, 3> output_mask) {
  wiener::check_backward_inputs(grad_in, y_in, psf, nsr_in);
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous(), grad = grad_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t Wh = W / 2 + 1, plane = H * Wh;
  const auto [need_y, need_psf, need_nsr] = output_mask;
  const at::Tensor otf = wiener::psf_to_otf(psf, H, W);
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
      need_psf ? wiener::psf_grad_from_spectrum(dk_spec, psf, W) : at::empty({0}, y.options());
  return {dy, dpsf, dnsr};
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CPU, m) {
  m.impl("wiener_bank", &wiener_bank_cpu);
  m.impl("_wiener_bank_backward", &wiener_bank_backward_cpu);
}

}  // namespace pydeblur
