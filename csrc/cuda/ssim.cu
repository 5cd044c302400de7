// CUDA kernels of pydeblur::ssim_forward and pydeblur::_ssim_backward (math: pydeblur/ssim_math.h,
// checks: pydeblur/ssim_host.h).
//
// One block computes a kTileH x kTileW tile of one plane. It stages the tile and its halo in shared
// memory (zeros beyond the image), filters it horizontally into shared memory, and each thread
// filters vertically for its output pixels, so every input is read from global memory once per
// tile. The forward pass writes one partial sum of the SSIM map per block (reduced by ATen on the
// same stream: deterministic, no atomics) and, for backward, the four partial derivative maps. The
// backward pass stages those maps with their halo and applies the same (symmetric, hence
// self-adjoint) window. Everything runs on the current stream and nothing synchronises the host.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>

#include "pydeblur/ssim_host.h"
#include "pydeblur/ssim_math.h"

namespace pydeblur {
namespace {

using ssim::Geometry;
using ssim::kMaxWindow;
using ssim::kNumPartials;

constexpr int kTileW = 32;  // one warp per tile row
constexpr int kTileH = 16;
constexpr int kThreadsY = 8;
constexpr int kThreads = kTileW * kThreadsY;
constexpr int kMaxGridZ = 65535;

template <typename T>
struct Taps {
  T w[kMaxWindow];
};

template <typename T>
__device__ inline T warp_sum(T v) {
  for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The sum of v over the block, valid in thread 0.
template <typename T>
__device__ inline T block_sum(T v, T* scratch) {
  const int tid = threadIdx.y * blockDim.x + threadIdx.x;
  v = warp_sum(v);
  if (tid % 32 == 0) scratch[tid / 32] = v;
  __syncthreads();
  if (tid < 32) {
    v = tid < kThreads / 32 ? scratch[tid] : T(0);
    v = warp_sum(v);
  }
  return v;
}

template <typename T>
size_t forward_shared_bytes(int radius) {
  const int rows = kTileH + 2 * radius, cols = kTileW + 2 * radius;
  return sizeof(T) * (2 * rows * cols + 5 * rows * kTileW);
}

template <typename T>
size_t backward_shared_bytes(int radius) {
  const int rows = kTileH + 2 * radius, cols = kTileW + 2 * radius;
  return sizeof(T) * (kNumPartials * rows * cols + kNumPartials * rows * kTileW);
}

// Grid: (output tiles along x, output tiles along y, planes up to kMaxGridZ). block_sums: [planes,
// tiles], partials: [planes, 4, out_height, out_width] when kSavePartials.
template <typename T, bool kSavePartials>
__global__ void __launch_bounds__(kThreads)
    ssim_forward_kernel(const T* __restrict__ x, const T* __restrict__ y, Geometry g, Taps<T> taps,
                        T c1, T c2, int64_t planes, T* __restrict__ block_sums,
                        T* __restrict__ partials) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __shared__ T scratch[kThreads / 32];
  __shared__ T w[kMaxWindow];
  const int radius = g.radius, window = 2 * radius + 1;
  const int rows = kTileH + 2 * radius, cols = kTileW + 2 * radius;
  T* xs = reinterpret_cast<T*>(shared_raw);  // [rows][cols]
  T* ys = xs + rows * cols;                  // [rows][cols]
  T* hs = ys + rows * cols;                  // [5][rows][kTileW]: x, y, x^2, y^2, xy
  const int hs_stride = rows * kTileW;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  // Taps in shared memory: indexing the by-value parameter at run time would copy it to local
  // memory. The first __syncthreads of the plane loop publishes them.
  if (tid < window) w[tid] = taps.w[tid];
  const int ox0 = blockIdx.x * kTileW, oy0 = blockIdx.y * kTileH;
  const int64_t in_plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t out_plane = static_cast<int64_t>(g.out_height) * g.out_width;
  const int64_t tiles = static_cast<int64_t>(gridDim.x) * gridDim.y;
  const int64_t tile = static_cast<int64_t>(blockIdx.y) * gridDim.x + blockIdx.x;

  for (int64_t n = blockIdx.z; n < planes; n += gridDim.z) {
    const T* xp = x + n * in_plane;
    const T* yp = y + n * in_plane;
    for (int idx = tid; idx < rows * cols; idx += kThreads) {
      const int a = oy0 + idx / cols - g.pad, b = ox0 + idx % cols - g.pad;
      const bool inside = a >= 0 && a < g.height && b >= 0 && b < g.width;
      const int64_t at = static_cast<int64_t>(a) * g.width + b;
      xs[idx] = inside ? xp[at] : T(0);
      ys[idx] = inside ? yp[at] : T(0);
    }
    __syncthreads();
    for (int idx = tid; idx < rows * kTileW; idx += kThreads) {
      const int i = idx / kTileW, j = idx % kTileW;
      const T* xr = xs + i * cols + j;
      const T* yr = ys + i * cols + j;
      T sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int k = 0; k < window; ++k) {
        const T wk = w[k], xv = xr[k], yv = yr[k];
        const T wx = wk * xv, wy = wk * yv;
        sx += wx;
        sy += wy;
        sxx += wx * xv;
        syy += wy * yv;
        sxy += wx * yv;
      }
      hs[idx] = sx;
      hs[hs_stride + idx] = sy;
      hs[2 * hs_stride + idx] = sxx;
      hs[3 * hs_stride + idx] = syy;
      hs[4 * hs_stride + idx] = sxy;
    }
    __syncthreads();
    T local = 0;
    for (int row = threadIdx.y; row < kTileH; row += kThreadsY) {
      const int p = oy0 + row, q = ox0 + threadIdx.x;
      if (p >= g.out_height || q >= g.out_width) continue;
      T m[5] = {0, 0, 0, 0, 0};
      for (int k = 0; k < window; ++k) {
        const T wk = w[k];
        const T* h = hs + (row + k) * kTileW + threadIdx.x;
#pragma unroll
        for (int c = 0; c < 5; ++c) m[c] += wk * h[c * hs_stride];
      }
      if (kSavePartials) {
        const auto r = ssim::ssim_value_and_partials(m[0], m[1], m[2], m[3], m[4], c1, c2);
        T* out =
            partials + n * kNumPartials * out_plane + static_cast<int64_t>(p) * g.out_width + q;
        out[ssim::kMx * out_plane] = r.d_mx;
        out[ssim::kMy * out_plane] = r.d_my;
        out[ssim::kSecond * out_plane] = r.d_second;
        out[ssim::kExy * out_plane] = r.d_exy;
        local += r.value;
      } else {
        local += ssim::ssim_value(m[0], m[1], m[2], m[3], m[4], c1, c2);
      }
    }
    local = block_sum(local, scratch);
    if (tid == 0) block_sums[n * tiles + tile] = local;
    __syncthreads();  // the next plane reuses the shared memory
  }
}

// Grid: (image tiles along x, image tiles along y, planes up to kMaxGridZ). For image pixel (a, b)
// the adjoint window covers output rows a + pad - 2 radius .. a + pad (zero outside the output
// grid).
template <typename T>
__global__ void __launch_bounds__(kThreads)
    ssim_backward_kernel(const T* __restrict__ grad_means, const T* __restrict__ x,
                         const T* __restrict__ y, const T* __restrict__ partials, Geometry g,
                         Taps<T> taps, int64_t planes, T* __restrict__ dx, T* __restrict__ dy) {
  extern __shared__ __align__(16) unsigned char shared_raw[];
  __shared__ T w[kMaxWindow];
  const int radius = g.radius, window = 2 * radius + 1;
  const int rows = kTileH + 2 * radius, cols = kTileW + 2 * radius;
  T* gs = reinterpret_cast<T*>(shared_raw);  // [4][rows][cols]
  T* hs = gs + kNumPartials * rows * cols;   // [4][rows][kTileW]
  const int gs_stride = rows * cols, hs_stride = rows * kTileW;
  const int tid = threadIdx.y * kTileW + threadIdx.x;
  // Taps in shared memory: indexing the by-value parameter at run time would copy it to local
  // memory. The first __syncthreads of the plane loop publishes them.
  if (tid < window) w[tid] = taps.w[tid];
  const int b0 = blockIdx.x * kTileW, a0 = blockIdx.y * kTileH;
  const int64_t in_plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t out_plane = static_cast<int64_t>(g.out_height) * g.out_width;

  for (int64_t n = blockIdx.z; n < planes; n += gridDim.z) {
    const T* pp = partials + n * kNumPartials * out_plane;
    for (int idx = tid; idx < rows * cols; idx += kThreads) {
      const int p = a0 + g.pad - 2 * radius + idx / cols;
      const int q = b0 + g.pad - 2 * radius + idx % cols;
      const bool inside = p >= 0 && p < g.out_height && q >= 0 && q < g.out_width;
      const int64_t at = static_cast<int64_t>(p) * g.out_width + q;
#pragma unroll
      for (int c = 0; c < kNumPartials; ++c)
        gs[c * gs_stride + idx] = inside ? pp[c * out_plane + at] : T(0);
    }
    __syncthreads();
    for (int idx = tid; idx < rows * kTileW; idx += kThreads) {
      const int i = idx / kTileW, j = idx % kTileW;
      T s[kNumPartials] = {0, 0, 0, 0};
      for (int k = 0; k < window; ++k) {
        const T wk = w[k];
        const T* gr = gs + i * cols + j + k;
#pragma unroll
        for (int c = 0; c < kNumPartials; ++c) s[c] += wk * gr[c * gs_stride];
      }
#pragma unroll
      for (int c = 0; c < kNumPartials; ++c) hs[c * hs_stride + idx] = s[c];
    }
    __syncthreads();
    const T scale = grad_means[n] / static_cast<T>(out_plane);
    for (int row = threadIdx.y; row < kTileH; row += kThreadsY) {
      const int a = a0 + row, b = b0 + threadIdx.x;
      if (a >= g.height || b >= g.width) continue;
      T f[kNumPartials] = {0, 0, 0, 0};
      for (int k = 0; k < window; ++k) {
        const T wk = w[k];
        const T* h = hs + (row + k) * kTileW + threadIdx.x;
#pragma unroll
        for (int c = 0; c < kNumPartials; ++c) f[c] += wk * h[c * hs_stride];
      }
      const int64_t at = n * in_plane + static_cast<int64_t>(a) * g.width + b;
      ssim::ssim_input_gradients(x[at], y[at], scale * f[ssim::kMx], scale * f[ssim::kMy],
                                 scale * f[ssim::kSecond], scale * f[ssim::kExy], &dx[at], &dy[at]);
    }
    __syncthreads();
  }
}

template <typename T>
Taps<T> make_taps(int64_t window_size, double sigma) {
  Taps<T> taps;
  gaussian_taps(static_cast<int>(window_size), sigma, taps.w);
  return taps;
}

// Allows `bytes` of dynamic shared memory for `kernel`, with a clear error where the GPU has less.
template <typename Kernel>
void reserve_shared_memory(Kernel kernel, size_t bytes, const char* what) {
  const size_t limit = at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin;
  TORCH_CHECK_VALUE(bytes <= limit, what, ": this window_size and dtype need ", bytes,
                    " bytes of shared memory per block; this GPU allows ", limit,
                    ". Use a smaller window_size or float32.");
  if (bytes > 48 * 1024) {
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                        static_cast<int>(bytes)));
  }
}

dim3 tile_grid(int height, int width, int64_t planes) {
  return dim3(static_cast<unsigned>((width + kTileW - 1) / kTileW),
              static_cast<unsigned>((height + kTileH - 1) / kTileH),
              static_cast<unsigned>(std::min<int64_t>(planes, kMaxGridZ)));
}

std::tuple<at::Tensor, at::Tensor> ssim_forward_cuda(const at::Tensor& x_in, const at::Tensor& y_in,
                                                     int64_t window_size, double sigma,
                                                     double data_range, bool valid,
                                                     bool save_partials) {
  const Geometry g = ssim::check_inputs(x_in, y_in, window_size, valid);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1);
  const dim3 grid = tile_grid(g.out_height, g.out_width, planes);
  const dim3 block(kTileW, kThreadsY);
  at::Tensor block_sums = at::empty({planes, static_cast<int64_t>(grid.x) * grid.y}, x.options());
  at::Tensor partials = ssim::empty_partials(x, g, save_partials);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_forward_cuda", [&] {
    const Taps<scalar_t> taps = make_taps<scalar_t>(window_size, sigma);
    const auto c1 = static_cast<scalar_t>((0.01 * data_range) * (0.01 * data_range));
    const auto c2 = static_cast<scalar_t>((0.03 * data_range) * (0.03 * data_range));
    const auto kernel =
        save_partials ? ssim_forward_kernel<scalar_t, true> : ssim_forward_kernel<scalar_t, false>;
    const size_t shared = forward_shared_bytes<scalar_t>(g.radius);
    reserve_shared_memory(kernel, shared, "ssim");
    kernel<<<grid, block, shared, stream>>>(
        x.const_data_ptr<scalar_t>(), y.const_data_ptr<scalar_t>(), g, taps, c1, c2, planes,
        block_sums.mutable_data_ptr<scalar_t>(),
        save_partials ? partials.mutable_data_ptr<scalar_t>() : nullptr);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  const double out_plane = static_cast<double>(g.out_height) * g.out_width;
  at::Tensor means = block_sums.sum(1, /*keepdim=*/false, at::kDouble)
                         .div_(out_plane)
                         .to(x.scalar_type())
                         .view({x.size(0), x.size(1)});
  return {means, partials};
}

std::tuple<at::Tensor, at::Tensor> ssim_backward_cuda(
    const at::Tensor& grad_means_in, const at::Tensor& x_in, const at::Tensor& y_in,
    const at::Tensor& partials_in, int64_t window_size, double sigma, bool valid) {
  const Geometry g = ssim::check_inputs(x_in, y_in, window_size, valid);
  ssim::check_backward_inputs(grad_means_in, x_in, partials_in, g);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor grad_means = grad_means_in.contiguous(), partials = partials_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1);
  at::Tensor dx = at::empty_like(x), dy = at::empty_like(y);
  const dim3 grid = tile_grid(g.height, g.width, planes);
  const dim3 block(kTileW, kThreadsY);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_backward_cuda", [&] {
    const Taps<scalar_t> taps = make_taps<scalar_t>(window_size, sigma);
    const auto kernel = ssim_backward_kernel<scalar_t>;
    const size_t shared = backward_shared_bytes<scalar_t>(g.radius);
    reserve_shared_memory(kernel, shared, "_ssim_backward");
    kernel<<<grid, block, shared, stream>>>(
        grad_means.const_data_ptr<scalar_t>(), x.const_data_ptr<scalar_t>(),
        y.const_data_ptr<scalar_t>(), partials.const_data_ptr<scalar_t>(), g, taps, planes,
        dx.mutable_data_ptr<scalar_t>(), dy.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {dx, dy};
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CUDA, m) {
  m.impl("ssim_forward", &ssim_forward_cuda);
  m.impl("_ssim_backward", &ssim_backward_cuda);
}

}  // namespace pydeblur
