// CUDA kernels of pydeblur::wiener_bank and pydeblur::_wiener_bank_backward.
//
// Batched: cuFFT (through ATen) transforms all planes at once; one thread per frequency of every
// (b, c) plane reads Y and K once and writes the S filtered spectra (forward) or accumulates the S
// gradient terms (backward). Everything runs on the current stream without host synchronisation.
// The per-frequency arithmetic is in pydeblur/wiener_math.h, the checks and psf2otf in
// pydeblur/wiener_host.h, both shared with the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/complex.h>
#include <torch/library.h>

#include <array>

#include "pydeblur/wiener_host.h"
#include "pydeblur/wiener_math.h"

namespace pydeblur {
namespace {

using wiener::Complex;

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

// Index of the OTF frequency used by frequency i of image plane (b, c); OTF planes are [Pb, Pc].
__device__ __forceinline__ int64_t otf_index(int64_t b, int64_t c, int64_t i, int64_t Pb,
                                             int64_t Pc, int64_t plane) {
  return ((Pb == 1 ? 0 : b) * Pc + (Pc == 1 ? 0 : c)) * plane + i;
}

// One thread per frequency of Y [B, C, plane]; writes out [B, S, C, plane].
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const Complex<T>* __restrict__ Y, const Complex<T>* __restrict__ K,
                   const T* __restrict__ nsr, Complex<T>* __restrict__ out, int64_t C,
                   int64_t plane, int S, int64_t Pb, int64_t Pc, int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t i = idx % plane, bc = idx / plane, c = bc % C, b = bc / C;
  wiener::forward_frequency<T>(Y[idx], K[otf_index(b, c, i, Pb, Pc, plane)], nsr, S,
                               out + (b * S * C + c) * plane + i, C * plane);
}

// One thread per frequency of Y [B, C, plane]; G is [B, S, C, plane]. Writes dY and dK [B, C,
// plane] (either may be null) and this block's partial sums of dL/dnsr [gridDim.x, S].
// Deterministic: each warp writes its own shared slot per filter and one thread sums the slots in a
// fixed order (an atomicAdd per warp made the sum depend on the warps' timing, so two backward
// passes on the same input differed in the last bits and gradcheck failed on a GPU).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const Complex<T>* __restrict__ Y, const Complex<T>* __restrict__ K,
                    const Complex<T>* __restrict__ G, const T* __restrict__ nsr,
                    Complex<T>* __restrict__ dY, Complex<T>* __restrict__ dK,
                    T* __restrict__ dnsr_partial, int64_t C, int64_t plane, int64_t Wh, int64_t W,
                    int S, int64_t Pb, int64_t Pc, int64_t total, T inv_hw) {
  extern __shared__ unsigned char shared_bytes[];
  T* warp_dnsr = reinterpret_cast<T*>(shared_bytes);  // [kWarps, S]
  const int warp = threadIdx.x / 32;

  // Threads past the end take part in the reductions with zero terms (g = 0, weight = 0).
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const bool active = idx < total;
  const int64_t i = idx % plane, bc = idx / plane, c = bc % C, b = bc / C;
  const Complex<T> y = active ? Y[idx] : Complex<T>{T(0), T(0)};
  const Complex<T> k = active ? K[otf_index(b, c, i, Pb, Pc, plane)] : Complex<T>{T(0), T(0)};
  const T weight = active ? wiener::half_spectrum_weight<T>(i % Wh, W, inv_hw) : T(0);
  const Complex<T>* g_ptr = G + (b * S * C + c) * plane + i;

  Complex<T> dy_acc{T(0), T(0)}, dk_acc{T(0), T(0)};
  for (int s = 0; s < S; ++s) {
    const Complex<T> g = active ? g_ptr[s * C * plane] : Complex<T>{T(0), T(0)};
    const auto t = wiener::backward_frequency<T>(y, k, g, nsr[s], weight);
    dy_acc.re += t.dy.re;
    dy_acc.im += t.dy.im;
    dk_acc.re += t.dk.re;
    dk_acc.im += t.dk.im;
    T v = t.dnsr;
    for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
    if ((threadIdx.x & 31) == 0) warp_dnsr[warp * S + s] = v;
  }
  if (active) {
    if (dY) dY[idx] = dy_acc;
    if (dK) dK[idx] = dk_acc;
  }
  __syncthreads();
  for (int s = threadIdx.x; s < S; s += blockDim.x) {
    T sum = T(0);
    for (int w = 0; w < kWarps; ++w) sum += warp_dnsr[w * S + s];
    dnsr_partial[blockIdx.x * S + s] = sum;
  }
}

template <typename T>
const Complex<T>* as_complex(const at::Tensor& t) {
  return reinterpret_cast<const Complex<T>*>(t.const_data_ptr<c10::complex<T>>());
}

template <typename T>
Complex<T>* as_complex_mut(at::Tensor& t) {
  return t.defined() ? reinterpret_cast<Complex<T>*>(t.mutable_data_ptr<c10::complex<T>>())
                     : nullptr;
}

int64_t blocks_for(int64_t total) { return (total + kThreads - 1) / kThreads; }

at::Tensor wiener_bank_cuda(const at::Tensor& y_in, const at::Tensor& psf,
                            const at::Tensor& nsr_in) {
  wiener::check_inputs(y_in, psf, nsr_in);
  const c10::cuda::CUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t plane = H * (W / 2 + 1), total = B * C * plane;
  const at::Tensor otf = wiener::psf_to_otf(psf, H, W);
  const at::Tensor Y = at::fft_rfft2(y).contiguous();
  at::Tensor spectra = at::empty({B, S, C, H, W / 2 + 1}, Y.options());
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_cuda", [&] {
      forward_kernel<scalar_t>
          <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              as_complex<scalar_t>(Y), as_complex<scalar_t>(otf), nsr.const_data_ptr<scalar_t>(),
              as_complex_mut<scalar_t>(spectra), C, plane, static_cast<int>(S), otf.size(0),
              otf.size(1), total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return at::fft_irfft2(spectra, at::IntArrayRef{H, W});
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> wiener_bank_backward_cuda(
    const at::Tensor& grad_in, const at::Tensor& y_in, const at::Tensor& psf,
    const at::Tensor& nsr_in, std::array<bool, 3> output_mask) {
  wiener::check_backward_inputs(grad_in, y_in, psf, nsr_in);
  const c10::cuda::CUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t Wh = W / 2 + 1, plane = H * Wh, total = B * C * plane;
  const auto [need_y, need_psf, need_nsr] = output_mask;
  const at::Tensor otf = wiener::psf_to_otf(psf, H, W);
  const at::Tensor Y = at::fft_rfft2(y).contiguous();
  const at::Tensor G = at::fft_rfft2(grad_in.contiguous()).contiguous();
  at::Tensor dy_spec = need_y ? at::empty({B, C, H, Wh}, Y.options()) : at::Tensor();
  at::Tensor dk_spec = need_psf ? at::empty({B, C, H, Wh}, Y.options()) : at::Tensor();
  const int64_t blocks = blocks_for(total);
  at::Tensor dnsr_partial = at::empty({blocks, S}, y.options());

  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_backward_cuda", [&] {
      using T = scalar_t;
      const size_t shared_bytes = static_cast<size_t>(kWarps) * S * sizeof(T);
      TORCH_CHECK_VALUE(shared_bytes <= 48 * 1024, "_wiener_bank_backward: at most ",
                        48 * 1024 / (kWarps * sizeof(T)),
                        " filters per call on CUDA for this dtype, got ", S);
      backward_kernel<T><<<blocks, kThreads, shared_bytes, at::cuda::getCurrentCUDAStream()>>>(
          as_complex<T>(Y), as_complex<T>(otf), as_complex<T>(G), nsr.const_data_ptr<T>(),
          as_complex_mut<T>(dy_spec), as_complex_mut<T>(dk_spec),
          dnsr_partial.mutable_data_ptr<T>(), C, plane, Wh, W, static_cast<int>(S), otf.size(0),
          otf.size(1), total, T(1) / static_cast<T>(H * W));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  at::Tensor dy =
      need_y ? at::fft_irfft2(dy_spec, at::IntArrayRef{H, W}) : at::empty({0}, y.options());
  at::Tensor dpsf =
      need_psf ? wiener::psf_grad_from_spectrum(dk_spec, psf, W) : at::empty({0}, y.options());
  at::Tensor dnsr = need_nsr ? dnsr_partial.sum(0) : at::empty({0}, y.options());
  return {dy, dpsf, dnsr};
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CUDA, m) {
  m.impl("wiener_bank", &wiener_bank_cuda);
  m.impl("_wiener_bank_backward", &wiener_bank_backward_cuda);
}

}  // namespace pydeblur
