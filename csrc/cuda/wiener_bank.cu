// CUDA kernels of pydeblur::wiener_bank and pydeblur::_wiener_bank_backward.
//
// Forward, per call (docs/wiener_bank.md, "CUDA: the work per call, the bytes, the floor"): one
// kernel pads and centres the PSFs, ATen's cuFFT R2C transforms them and y, one thread per
// frequency of every (b, c) plane reads Y and K once and writes the S filtered spectra, already
// scaled by 1 / (H W), into a scratch buffer laid out as cuFFT reads it ([B, S, C, H, W / 2 + 1]),
// and one batched cuFFT C2R plan over all B S C planes, called directly, transforms that buffer
// into the output. ATen's irfft2 would first copy the spectra (a C2R transform may overwrite its
// input) and then scale its output in a second pass: two extra passes over ~95 MB each at B = 8, S
// = 15, 3x256x256. The backward accumulates the S gradient terms per frequency and inverts dL/dy
// the same way. Everything runs on the current stream without host synchronisation or
// stream-unsafe allocation (CUDA-graph capturable once a first call has made the cuFFT plans). The
// per-frequency arithmetic is in pydeblur/wiener_math.h, the checks and the PSF gradient in
// pydeblur/wiener_host.h, both shared with the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/util/accumulate.h>
#include <c10/util/complex.h>
#include <cufft.h>
#include <cufftXt.h>
#include <dlfcn.h>
#include <torch/library.h>

#include <array>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "pydeblur/wiener_host.h"
#include "pydeblur/wiener_math.h"

#define PYDEBLUR_STRINGIFY_(x) #x
#define PYDEBLUR_STRINGIFY(x) PYDEBLUR_STRINGIFY_(x)

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

// One thread per element of padded [P, H, W]: psf [P, kh, kw] zero-padded to H x W and rolled by
// (-(kh / 2), -(kw / 2)) in one pass, as zeros + copy + at::roll in wiener::psf_to_otf: element
// (i, j) is psf[(i + kh / 2) mod H, (j + kw / 2) mod W] where that lies inside the PSF, else 0.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    pad_psf_kernel(const T* __restrict__ psf, T* __restrict__ padded, int64_t kh, int64_t kw,
                   int64_t H, int64_t W, int64_t total) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t j = idx % W, i = (idx / W) % H, p = idx / (H * W);
  // kh <= H and kw <= W (check_inputs), so one wrap suffices.
  int64_t r = i + kh / 2, q = j + kw / 2;
  if (r >= H) r -= H;
  if (q >= W) q -= W;
  padded[idx] = (r < kh && q < kw) ? psf[(p * kh + r) * kw + q] : T(0);
}

// One thread per frequency of Y [B, C, plane]; writes scale * X into out [B, S, C, plane], the
// layout of the batched C2R. scale = 1 / (H W), the normalisation of the inverse transform, applied
// to Y before the filters (x_s = F^-1[conj(K) Y / D_s] is linear in Y).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const Complex<T>* __restrict__ Y, const Complex<T>* __restrict__ K,
                   const T* __restrict__ nsr, Complex<T>* __restrict__ out, int64_t C,
                   int64_t plane, int S, int64_t Pb, int64_t Pc, int64_t total, T scale) {
  const int64_t idx = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (idx >= total) return;
  const int64_t i = idx % plane, bc = idx / plane, c = bc % C, b = bc / C;
  Complex<T> y = Y[idx];
  y.re *= scale;
  y.im *= scale;
  wiener::forward_frequency<T>(y, K[otf_index(b, c, i, Pb, Pc, plane)], nsr, S,
                               out + (b * S * C + c) * plane + i, C * plane);
}

// One thread per frequency of Y [B, C, plane]; G is [B, S, C, plane]. Writes dY (scaled by 1 / (H
// W), the normalisation of its inverse transform) and dK [B, C, plane] (either may be null) and
// this block's partial sums of dL/dnsr [gridDim.x, S]. Deterministic: each warp writes its own
// shared slot per filter and one thread sums the slots in a fixed order (an atomicAdd per warp made
// the sum depend on the warps' timing, so two backward passes on the same input differed in the
// last bits and gradcheck failed on a GPU).
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
    if (dY) dY[idx] = Complex<T>{dy_acc.re * inv_hw, dy_acc.im * inv_hw};
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

// wiener::psf_to_otf with the padding and centring in one kernel (instead of a fill, a copy and a
// roll, each with its own buffer): the OTF [Pb, Pc, H, W / 2 + 1] of psf [Pb, Pc, kh, kw]. The same
// values reach the same R2C transform, so the OTF is the same.
at::Tensor psf_to_otf_cuda(const at::Tensor& psf_in, int64_t H, int64_t W) {
  const at::Tensor psf = psf_in.contiguous();
  at::Tensor padded = at::empty({psf.size(0), psf.size(1), H, W}, psf.options());
  const int64_t total = padded.numel();
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(psf.scalar_type(), "wiener_bank_psf_to_otf_cuda", [&] {
      pad_psf_kernel<scalar_t>
          <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              psf.const_data_ptr<scalar_t>(), padded.mutable_data_ptr<scalar_t>(), psf.size(2),
              psf.size(3), H, W, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return at::fft_rfft2(padded).contiguous();
}

// ---- The inverse transform: one batched cuFFT C2R plan, called directly ----
//
// The extension is linked against torch's libraries only (setup.py), not libcufft, so cuFFT's entry
// points are looked up at run time in the libcufft that libtorch_cuda has loaded. Where that fails,
// or past kMaxPlans shapes, ATen's unnormalised C2R (at::_fft_c2r, which copies its input first)
// makes the same transform.

struct CufftApi {
  decltype(&cufftCreate) create = nullptr;
  decltype(&cufftDestroy) destroy = nullptr;
  decltype(&cufftSetAutoAllocation) set_auto_allocation = nullptr;
  decltype(&cufftXtMakePlanMany) make_plan_many = nullptr;
  decltype(&cufftSetStream) set_stream = nullptr;
  decltype(&cufftSetWorkArea) set_work_area = nullptr;
  decltype(&cufftXtExec) exec = nullptr;
  bool loaded = false;
};

template <typename F>
void load_symbol(void* library, const char* name, F& fn) {
  fn = reinterpret_cast<F>(dlsym(library, name));
}

const CufftApi& cufft_api() {
  static const CufftApi api = [] {
    CufftApi a;
    // The soname of the cuFFT the headers describe (libcufft.so.12 for CUDA 13), as libtorch_cuda
    // names it among its dependencies; RTLD_NOLOAD finds that copy without loading another.
    const char* soname = "libcufft.so." PYDEBLUR_STRINGIFY(CUFFT_VER_MAJOR);
    void* library = dlopen(soname, RTLD_NOW | RTLD_NOLOAD);
    if (library == nullptr) library = dlopen(soname, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return a;
    load_symbol(library, "cufftCreate", a.create);
    load_symbol(library, "cufftDestroy", a.destroy);
    load_symbol(library, "cufftSetAutoAllocation", a.set_auto_allocation);
    load_symbol(library, "cufftXtMakePlanMany", a.make_plan_many);
    load_symbol(library, "cufftSetStream", a.set_stream);
    load_symbol(library, "cufftSetWorkArea", a.set_work_area);
    load_symbol(library, "cufftXtExec", a.exec);
    a.loaded = a.create && a.destroy && a.set_auto_allocation && a.make_plan_many && a.set_stream &&
               a.set_work_area && a.exec;
    return a;
  }();
  return api;
}

void cufft_check(cufftResult result, const char* call) {
  TORCH_CHECK(result == CUFFT_SUCCESS, "wiener_bank: ", call, " failed (cufftResult ",
              static_cast<int>(result), ")");
}

struct C2rPlan {
  cufftHandle handle;
  size_t workspace_bytes;
};

// (device, H, W, batch, float64)
using PlanKey = std::tuple<int64_t, int64_t, int64_t, int64_t, bool>;
constexpr size_t kMaxPlans = 256;

std::mutex& plan_mutex() {
  static std::mutex mutex;
  return mutex;
}

// The C2R plan of `key`, made on the current device at its first use and kept for the life of the
// process: a captured CUDA graph replays the plan's kernels, which read the plan's own device data,
// so a plan is never destroyed. nullptr once kMaxPlans plans exist. Call with plan_mutex() held.
const C2rPlan* c2r_plan(const CufftApi& api, const PlanKey& key) {
  static std::map<PlanKey, C2rPlan> plans;
  const auto found = plans.find(key);
  if (found != plans.end()) return &found->second;
  if (plans.size() >= kMaxPlans) return nullptr;
  const auto [device, H, W, batch, is_double] = key;
  cufftHandle handle;
  cufft_check(api.create(&handle), "cufftCreate");
  // The plan ATen makes for irfft2 over the last two dimensions of a contiguous tensor (the
  // simple layout: no embedding, unit strides), with the work area from PyTorch's allocator.
  long long n[2] = {H, W};
  size_t workspace_bytes = 0;
  const cudaDataType complex_type = is_double ? CUDA_C_64F : CUDA_C_32F;
  const cudaDataType real_type = is_double ? CUDA_R_64F : CUDA_R_32F;
  cufftResult result = api.set_auto_allocation(handle, 0);
  if (result == CUFFT_SUCCESS) {
    result = api.make_plan_many(handle, 2, n, nullptr, 1, 1, complex_type, nullptr, 1, 1, real_type,
                                batch, &workspace_bytes, complex_type);
  }
  if (result != CUFFT_SUCCESS) {
    api.destroy(handle);
    cufft_check(result, "cufftXtMakePlanMany");
  }
  return &plans.emplace(key, C2rPlan{handle, workspace_bytes}).first->second;
}

// The unnormalised inverse of rfft2 over the last two dimensions: spectra [..., H, W / 2 + 1]
// (contiguous, complex; its contents are destroyed) -> [..., H, W] real, one batched C2R over all
// planes, straight from the spectra into the result.
at::Tensor irfft2_unnormalised(at::Tensor& spectra, int64_t W) {
  const int64_t dims = spectra.dim(), H = spectra.size(dims - 2);
  std::vector<int64_t> sizes(spectra.sizes().begin(), spectra.sizes().end());
  sizes.back() = W;
  const at::TensorOptions real_options =
      spectra.options().dtype(c10::toRealValueType(spectra.scalar_type()));
  if (c10::multiply_integers(sizes) == 0) return at::empty(sizes, real_options);
  const CufftApi& api = cufft_api();
  if (api.loaded) {
    const int64_t batch = c10::multiply_integers(sizes) / (H * W);
    const PlanKey key{spectra.get_device(), H, W, batch,
                      spectra.scalar_type() == at::kComplexDouble};
    // One lock for the plan's stream, work area and launch: plans are shared between threads.
    const std::lock_guard<std::mutex> lock(plan_mutex());
    if (const C2rPlan* plan = c2r_plan(api, key)) {
      at::Tensor out = at::empty(sizes, real_options);
      at::Tensor workspace = at::empty({static_cast<int64_t>(plan->workspace_bytes)},
                                       spectra.options().dtype(at::kByte));
      cufft_check(api.set_stream(plan->handle, at::cuda::getCurrentCUDAStream()), "cufftSetStream");
      cufft_check(api.set_work_area(plan->handle, workspace.mutable_data_ptr()),
                  "cufftSetWorkArea");
      cufft_check(
          api.exec(plan->handle, spectra.mutable_data_ptr(), out.mutable_data_ptr(), CUFFT_INVERSE),
          "cufftXtExec");
      return out;
    }
  }
  return at::_fft_c2r(spectra, {dims - 2, dims - 1}, /*normalization: none*/ 0, W);
}

at::Tensor wiener_bank_cuda(const at::Tensor& y_in, const at::Tensor& psf,
                            const at::Tensor& nsr_in) {
  wiener::check_inputs(y_in, psf, nsr_in);
  const c10::cuda::CUDAGuard guard(y_in.device());
  const at::Tensor y = y_in.contiguous(), nsr = nsr_in.contiguous();
  const int64_t B = y.size(0), C = y.size(1), H = y.size(2), W = y.size(3), S = nsr.size(0);
  const int64_t plane = H * (W / 2 + 1), total = B * C * plane;
  const at::Tensor otf = psf_to_otf_cuda(psf, H, W);
  const at::Tensor Y = at::fft_rfft2(y).contiguous();
  at::Tensor spectra = at::empty({B, S, C, H, W / 2 + 1}, Y.options());
  if (total > 0) {
    AT_DISPATCH_FLOATING_TYPES(y.scalar_type(), "wiener_bank_cuda", [&] {
      forward_kernel<scalar_t>
          <<<blocks_for(total), kThreads, 0, at::cuda::getCurrentCUDAStream()>>>(
              as_complex<scalar_t>(Y), as_complex<scalar_t>(otf), nsr.const_data_ptr<scalar_t>(),
              as_complex_mut<scalar_t>(spectra), C, plane, static_cast<int>(S), otf.size(0),
              otf.size(1), total, scalar_t(1) / static_cast<scalar_t>(H * W));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return irfft2_unnormalised(spectra, W);
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
  const at::Tensor otf = psf_to_otf_cuda(psf, H, W);
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
  at::Tensor dy = need_y ? irfft2_unnormalised(dy_spec, W) : at::empty({0}, y.options());
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
