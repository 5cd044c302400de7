// CUDA kernels of pydeblur::bilateral_filter and pydeblur::_bilateral_filter_backward (math:
// pydeblur/bilateral_math.h, checks: pydeblur/bilateral_host.h).
//
// Forward: one thread per output pixel; a block stages its 32x8 tile plus a halo of kernel_size / 2
// pixels (reflect-padded) in shared memory, and the spatial weights travel as a kernel parameter
// (constant memory: no copy, no host synchronisation).
//
// Backward, as a gather without atomics: one thread per position q of the reflect-padded image sums
// what every pair (p, q) sends to q (p over the window around q), and, where q is an image pixel,
// what its own pairs (q, q + o) send to it as a centre. The per-pixel factors of the centres,
// G_c = dL/dout_c / W and dot = sum_c G_c out_c, are formed while the tile is loaded. This computes
// each pair's weight twice (once for each end), which costs less on a GPU than the atomics of a
// scatter (C atomic adds per pair, contended by the k*k threads that hit each pixel) and is
// deterministic. ATen's reflection_pad2d_backward then folds the padded gradient onto the image.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "pydeblur/bilateral_host.h"
#include "pydeblur/bilateral_math.h"

namespace pydeblur::bilateral {
namespace {

constexpr int kTileW = 32;
constexpr int kTileH = 8;
constexpr int kThreads = kTileW * kTileH;
// The grid's z dimension is the image: at most this many per call.
constexpr int64_t kMaxGridZ = 65535;
// Above this much shared memory per block, the kernels read global memory instead.
constexpr size_t kMaxSharedBytes = 48 * 1024;

__device__ __forceinline__ int clamped_reflect(int i, int n) {
  i = reflect_index(i, n);
  return i < 0 ? 0 : (i >= n ? n - 1 : i);
}

// The image around a block, addressed in tile coordinates (ly, lx); tile (0, 0) is image pixel
// (row0, col0), and positions outside the image read the reflect padding.
template <typename T, bool kShared>
struct ImageWindow {
  const T* tile;  // [C][tile_h][tile_w] when kShared
  int tile_h, tile_w;
  const T* x;  // [C][H][W]
  int64_t plane;
  int H, W, row0, col0;

  __device__ __forceinline__ T value(int c, int ly, int lx) const {
    if constexpr (kShared) {
      return tile[(c * tile_h + ly) * tile_w + lx];
    } else {
      return x[c * plane + static_cast<int64_t>(clamped_reflect(row0 + ly, H)) * W +
               clamped_reflect(col0 + lx, W)];
    }
  }
};

// The centre factors of the backward around a block: G_c and dot, zero off the image (so that a
// padding position, which is never a centre, contributes nothing).
template <typename T, bool kShared>
struct CentreFactors {
  const T* gw;   // [C][tile_h][tile_w] when kShared
  const T* dot;  // [tile_h][tile_w] when kShared
  int tile_h, tile_w;
  const T *grad_out, *out, *norm;  // [C][H][W], [C][H][W], [H][W]
  int64_t plane;
  int C, H, W, row0, col0;

  __device__ __forceinline__ bool inside(int ly, int lx) const {
    const int i = row0 + ly, j = col0 + lx;
    return i >= 0 && i < H && j >= 0 && j < W;
  }
  __device__ __forceinline__ T g(int c, int ly, int lx) const {
    if constexpr (kShared) {
      return gw[(c * tile_h + ly) * tile_w + lx];
    } else {
      if (!inside(ly, lx)) return T(0);
      const int64_t at = static_cast<int64_t>(row0 + ly) * W + col0 + lx;
      return grad_out[c * plane + at] / norm[at];
    }
  }
  __device__ __forceinline__ T d(int ly, int lx) const {
    if constexpr (kShared) {
      return dot[ly * tile_w + lx];
    } else {
      if (!inside(ly, lx)) return T(0);
      const int64_t at = static_cast<int64_t>(row0 + ly) * W + col0 + lx;
      T sum = 0;
      for (int c = 0; c < C; ++c) sum += grad_out[c * plane + at] / norm[at] * out[c * plane + at];
      return sum;
    }
  }
};

template <typename T>
__device__ void load_values(T* tile, const T* x, int C, int H, int W, int64_t plane, int row0,
                            int col0, int tile_h, int tile_w) {
  const int area = tile_h * tile_w;
  for (int i = threadIdx.y * kTileW + threadIdx.x; i < C * area; i += kThreads) {
    const int c = i / area, ty = (i % area) / tile_w, tx = i % tile_w;
    tile[i] = x[c * plane + static_cast<int64_t>(clamped_reflect(row0 + ty, H)) * W +
                clamped_reflect(col0 + tx, W)];
  }
}

template <typename T>
__device__ void load_centre_factors(T* gw, T* dot, const T* grad_out, const T* out, const T* norm,
                                    int C, int H, int W, int64_t plane, int row0, int col0,
                                    int tile_h, int tile_w) {
  const int area = tile_h * tile_w;
  for (int i = threadIdx.y * kTileW + threadIdx.x; i < area; i += kThreads) {
    const int r = row0 + i / tile_w, s = col0 + i % tile_w;
    const bool inside = r >= 0 && r < H && s >= 0 && s < W;
    const int64_t at = inside ? static_cast<int64_t>(r) * W + s : 0;
    const T inverse = inside ? T(1) / norm[at] : T(0);
    T sum = 0;
    for (int c = 0; c < C; ++c) {
      const T g = inside ? grad_out[c * plane + at] * inverse : T(0);
      gw[c * area + i] = g;
      sum += inside ? g * out[c * plane + at] : T(0);
    }
    dot[i] = sum;
  }
}

// kC > 0: the channel count, known at compile time (all channels in registers at once); kC == 0:
// any count, one output channel at a time (the weights are recomputed per channel).
template <typename T, int kC, bool kShared>
__global__ void __launch_bounds__(kThreads)
    bilateral_forward_kernel(const T* __restrict__ x, T* __restrict__ out, T* __restrict__ norm,
                             int C, int H, int W, int radius, SpatialKernel<T> g, T scale) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int tile_h = kTileH + 2 * radius, tile_w = kTileW + 2 * radius;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const T* xb = x + blockIdx.z * C * plane;
  const int row0 = blockIdx.y * kTileH - radius, col0 = blockIdx.x * kTileW - radius;
  T* tile = reinterpret_cast<T*>(shared_bytes);
  if constexpr (kShared) {
    load_values(tile, xb, C, H, W, plane, row0, col0, tile_h, tile_w);
    __syncthreads();
  }
  const ImageWindow<T, kShared> image{tile, tile_h, tile_w, xb, plane, H, W, row0, col0};
  const int py = blockIdx.y * kTileH + threadIdx.y, px = blockIdx.x * kTileW + threadIdx.x;
  if (py >= H || px >= W) return;
  const int ly = threadIdx.y + radius, lx = threadIdx.x + radius;
  constexpr int kGroup = kC > 0 ? kC : 1;
  const int channels = kC > 0 ? kC : C;
  const int groups = kC > 0 ? 1 : C;
  for (int group = 0; group < groups; ++group) {
    T sum[kGroup] = {};
    T den = 0;
    for (int dy = -radius; dy <= radius; ++dy) {
      for (int dx = -radius; dx <= radius; ++dx) {
        T distance = 0;
        for (int c = 0; c < channels; ++c)
          distance += fabs(image.value(c, ly + dy, lx + dx) - image.value(c, ly, lx));
        const T w = pair_weight(g.g[dy + radius] * g.g[dx + radius], distance, scale);
        den += w;
#pragma unroll
        for (int j = 0; j < kGroup; ++j)
          sum[j] += w * image.value(group * kGroup + j, ly + dy, lx + dx);
      }
    }
    const int64_t at = static_cast<int64_t>(py) * W + px;
#pragma unroll
    for (int j = 0; j < kGroup; ++j)
      out[(blockIdx.z * C + group * kGroup + j) * plane + at] = sum[j] / den;
    if (group == 0) norm[blockIdx.z * plane + at] = den;
  }
}

// One thread per position of the padded gradient [B, C, H + 2r, W + 2r].
template <typename T, int kC, bool kShared>
__global__ void __launch_bounds__(kThreads)
    bilateral_backward_kernel(const T* __restrict__ x, const T* __restrict__ grad_out,
                              const T* __restrict__ out, const T* __restrict__ norm,
                              T* __restrict__ grad_padded, int C, int H, int W, int radius,
                              SpatialKernel<T> g, T scale) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  const int tile_h = kTileH + 2 * radius, tile_w = kTileW + 2 * radius;
  const int padded_h = H + 2 * radius, padded_w = W + 2 * radius;
  const int64_t plane = static_cast<int64_t>(H) * W;
  const int64_t b = blockIdx.z;
  const T* xb = x + b * C * plane;
  const T* gb = grad_out + b * C * plane;
  const T* ob = out + b * C * plane;
  const T* nb = norm + b * plane;
  // Tile coordinates (ly, lx) are padded coordinates shifted by the halo; padded coordinates are
  // image coordinates shifted by the radius.
  const int row0 = blockIdx.y * kTileH - 2 * radius, col0 = blockIdx.x * kTileW - 2 * radius;
  const int area = tile_h * tile_w;
  T* values = reinterpret_cast<T*>(shared_bytes);
  T* gw = values + C * area;
  T* dot = gw + C * area;
  if constexpr (kShared) {
    load_values(values, xb, C, H, W, plane, row0, col0, tile_h, tile_w);
    load_centre_factors(gw, dot, gb, ob, nb, C, H, W, plane, row0, col0, tile_h, tile_w);
    __syncthreads();
  }
  const ImageWindow<T, kShared> image{values, tile_h, tile_w, xb, plane, H, W, row0, col0};
  const CentreFactors<T, kShared> centre{gw,    dot, tile_h, tile_w, gb,   ob,  nb,
                                         plane, C,   H,      W,      row0, col0};
  const int qy = blockIdx.y * kTileH + threadIdx.y, qx = blockIdx.x * kTileW + threadIdx.x;
  if (qy >= padded_h || qx >= padded_w) return;
  const int ly = threadIdx.y + radius, lx = threadIdx.x + radius;
  const bool q_is_pixel = centre.inside(ly, lx);
  constexpr int kGroup = kC > 0 ? kC : 1;
  const int channels = kC > 0 ? kC : C;
  const int groups = kC > 0 ? 1 : C;
  const int64_t padded_plane = static_cast<int64_t>(padded_h) * padded_w;
  for (int group = 0; group < groups; ++group) {
    T acc[kGroup] = {};
    for (int oy = -radius; oy <= radius; ++oy) {
      for (int ox = -radius; ox <= radius; ++ox) {
        const T spatial = g.g[oy + radius] * g.g[ox + radius];
        {
          // q as the neighbour of the centre p = q - o.
          const int py = ly - oy, px = lx - ox;
          T distance = 0, weight_gradient = -centre.d(py, px);
          for (int c = 0; c < channels; ++c) {
            const T vq = image.value(c, ly, lx);
            distance += fabs(vq - image.value(c, py, px));
            weight_gradient += centre.g(c, py, px) * vq;
          }
          const T w = pair_weight(spatial, distance, scale);
          const T bd = distance_gradient(weight_gradient, w, distance, scale);
#pragma unroll
          for (int j = 0; j < kGroup; ++j) {
            const int c = group * kGroup + j;
            acc[j] += centre.g(c, py, px) * w +
                      signed_gradient(bd, image.value(c, ly, lx) - image.value(c, py, px));
          }
        }
        if (q_is_pixel) {
          // q as the centre of the pair (q, q + o).
          const int ny = ly + oy, nx = lx + ox;
          T distance = 0, weight_gradient = -centre.d(ly, lx);
          for (int c = 0; c < channels; ++c) {
            const T vn = image.value(c, ny, nx);
            distance += fabs(vn - image.value(c, ly, lx));
            weight_gradient += centre.g(c, ly, lx) * vn;
          }
          const T w = pair_weight(spatial, distance, scale);
          const T bd = distance_gradient(weight_gradient, w, distance, scale);
#pragma unroll
          for (int j = 0; j < kGroup; ++j) {
            const int c = group * kGroup + j;
            acc[j] -= signed_gradient(bd, image.value(c, ny, nx) - image.value(c, ly, lx));
          }
        }
      }
    }
#pragma unroll
    for (int j = 0; j < kGroup; ++j)
      grad_padded[(b * C + group * kGroup + j) * padded_plane +
                  static_cast<int64_t>(qy) * padded_w + qx] = acc[j];
  }
}

// Calls body<kC, kShared>() for the channel count and the shared-memory decision.
template <typename Body>
void dispatch_channels(int64_t channels, bool shared, const Body& body) {
  auto with_shared = [&](auto kC) {
    if (shared) {
      body(kC, std::true_type{});
    } else {
      body(kC, std::false_type{});
    }
  };
  switch (channels) {
    case 1:
      with_shared(std::integral_constant<int, 1>{});
      break;
    case 2:
      with_shared(std::integral_constant<int, 2>{});
      break;
    case 3:
      with_shared(std::integral_constant<int, 3>{});
      break;
    case 4:
      with_shared(std::integral_constant<int, 4>{});
      break;
    default:
      with_shared(std::integral_constant<int, 0>{});
  }
}

std::tuple<at::Tensor, at::Tensor> bilateral_filter_cuda(const at::Tensor& x_in,
                                                         int64_t kernel_size, double sigma_color,
                                                         double sigma_space) {
  check_inputs(x_in, kernel_size);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const int64_t batch = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(batch <= kMaxGridZ, "bilateral_filter: at most ", kMaxGridZ,
                    " images per call on CUDA, got ", batch);
  at::Tensor out = at::empty_like(x);
  at::Tensor norm = at::empty({batch, 1, H, W}, x.options());
  if (x.numel() == 0) return {out, norm};
  const int radius = static_cast<int>(kernel_size / 2);
  const dim3 block(kTileW, kTileH);
  const dim3 grid((W + kTileW - 1) / kTileW, (H + kTileH - 1) / kTileH, batch);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_filter_cuda", [&] {
    const auto g = spatial_kernel<scalar_t>(static_cast<int>(kernel_size), sigma_space);
    const scalar_t scale = range_scale<scalar_t>(sigma_color);
    const size_t bytes = C * (kTileH + 2 * radius) * (kTileW + 2 * radius) * sizeof(scalar_t);
    const bool shared = bytes <= kMaxSharedBytes;
    dispatch_channels(C, shared, [&](auto kC, auto kShared) {
      bilateral_forward_kernel<scalar_t, decltype(kC)::value, decltype(kShared)::value>
          <<<grid, block, kShared ? bytes : 0, stream>>>(
              x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), norm.data_ptr<scalar_t>(), C, H, W,
              radius, g, scale);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return {out, norm};
}

at::Tensor bilateral_filter_backward_cuda(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                          const at::Tensor& out_in, const at::Tensor& norm_in,
                                          int64_t kernel_size, double sigma_color,
                                          double sigma_space) {
  check_backward_inputs(grad_out_in, x_in, out_in, norm_in, kernel_size);
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.to(x.scalar_type()).contiguous();
  const at::Tensor out = out_in.to(x.scalar_type()).contiguous();
  const at::Tensor norm = norm_in.to(x.scalar_type()).contiguous();
  const int64_t batch = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  TORCH_CHECK_VALUE(batch <= kMaxGridZ, "bilateral_filter: at most ", kMaxGridZ,
                    " images per call on CUDA, got ", batch);
  if (x.numel() == 0) return at::zeros_like(x);
  const int radius = static_cast<int>(kernel_size / 2);
  at::Tensor grad_padded = at::empty({batch, C, H + 2 * radius, W + 2 * radius}, x.options());
  const dim3 block(kTileW, kTileH);
  const dim3 grid((W + 2 * radius + kTileW - 1) / kTileW, (H + 2 * radius + kTileH - 1) / kTileH,
                  batch);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_filter_backward_cuda", [&] {
    const auto g = spatial_kernel<scalar_t>(static_cast<int>(kernel_size), sigma_space);
    const scalar_t scale = range_scale<scalar_t>(sigma_color);
    const size_t bytes =
        (2 * C + 1) * (kTileH + 2 * radius) * (kTileW + 2 * radius) * sizeof(scalar_t);
    const bool shared = bytes <= kMaxSharedBytes;
    dispatch_channels(C, shared, [&](auto kC, auto kShared) {
      bilateral_backward_kernel<scalar_t, decltype(kC)::value, decltype(kShared)::value>
          <<<grid, block, kShared ? bytes : 0, stream>>>(
              x.data_ptr<scalar_t>(), grad_out.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
              norm.data_ptr<scalar_t>(), grad_padded.data_ptr<scalar_t>(), C, H, W, radius, g,
              scale);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return at::reflection_pad2d_backward(grad_padded, x, {radius, radius, radius, radius});
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CUDA, m) {
  m.impl("bilateral_filter", &bilateral_filter_cuda);
  m.impl("_bilateral_filter_backward", &bilateral_filter_backward_cuda);
}

}  // namespace pydeblur::bilateral
