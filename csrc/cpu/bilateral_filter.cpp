// CPU kernels of pydeblur::bilateral_filter and pydeblur::_bilateral_filter_backward (math:
// pydeblur/bilateral_math.h, checks: pydeblur/bilateral_host.h).
//
// Both kernels read a reflect-padded copy of the image and work row by row: for each of the k*k
// taps, one loop over the row's pixels, contiguous in memory, which g++ vectorises (the range
// weight's exp is branch-free). The float loops are compiled for AVX-512, AVX2+FMA and baseline
// x86-64, and the CPU picks one at load time (target_clones).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "pydeblur/bilateral_host.h"
#include "pydeblur/bilateral_math.h"
#include "pydeblur/huge_pages.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define PYDEBLUR_VECTOR_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PYDEBLUR_VECTOR_CLONES
#endif
#define PYDEBLUR_ALWAYS_INLINE inline __attribute__((always_inline))

namespace pydeblur::bilateral {
namespace {

// Sizes of one image and of its reflect-padded copy.
struct Geometry {
  int64_t channels, height, width, radius, kernel_size;
  int64_t padded_width, padded_plane;  // row and channel strides of the padded copy
  int64_t plane;                       // channel stride of x, out, grad_out
};

Geometry geometry_of(const at::Tensor& x, int64_t kernel_size) {
  const int64_t radius = kernel_size / 2;
  const int64_t padded_width = x.size(3) + 2 * radius;
  return {x.size(1),
          x.size(2),
          x.size(3),
          radius,
          kernel_size,
          padded_width,
          padded_width * (x.size(2) + 2 * radius),
          x.size(2) * x.size(3)};
}

// Pairs (A, A + o) whose ends are both real and on different rows, for n consecutive A_x, in one
// pass: the weight stays in a register and each end's colours are loaded once, for the distance and
// for the other end's sum. xa, num_a, den_a point at the first A; xb, num_b, den_b at its partner.
// The two rows differ, so the stores of one iteration never meet another's (omp simd is safe).
template <typename T, int kC>
PYDEBLUR_ALWAYS_INLINE void fused_pairs(int64_t C, int64_t pp, int64_t plane, const T* xa,
                                        const T* xb, T spatial, T scale, T* num_a, T* den_a,
                                        T* num_b, T* den_b, int64_t n) {
  if constexpr (kC > 0) C = kC;
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    T distance = 0;
    for (int64_t c = 0; c < C; ++c) distance += std::abs(xb[c * pp + i] - xa[c * pp + i]);
    const T w = pair_weight(spatial, distance, scale);
    den_a[i] += w;
    den_b[i] += w;
    for (int64_t c = 0; c < C; ++c) {
      num_a[c * plane + i] += w * xb[c * pp + i];
      num_b[c * plane + i] += w * xa[c * pp + i];
    }
  }
}

// Forward by unordered pairs: w(p, q) = w(q, p), so each pair's weight is computed once and added
// to both ends. Pairs are (A, A + o) with A on rows [a_begin, a_end) of the padded image (rows
// -r..H-1 in image coordinates) and o in the half window (dy > 0, or dy == 0 and dx > 0); an end
// on the padding receives nothing, but its pair still counts for the other end, whose kornia window
// reads that padding value. Sums go into out (numerators) and norm (denominators), which hold the
// centre tap beforehand. Rows a and a + r are written, so callers must not run overlapping row
// ranges at the same time. kC > 0 fixes the channel count at compile time, so the channel loops
// unroll and the pixel loops vectorise; kC == 0 reads it from geo.
template <typename T, int kC>
PYDEBLUR_ALWAYS_INLINE void forward_pairs(const Geometry& geo, const T* padded, const T* g, T scale,
                                          T* out, T* norm, int64_t a_begin, int64_t a_end,
                                          T* scratch) {
  const int64_t C = kC > 0 ? kC : geo.channels;
  const int64_t H = geo.height, W = geo.width, r = geo.radius;
  const int64_t pw = geo.padded_width, pp = geo.padded_plane, plane = geo.plane;
  for (int64_t a = a_begin; a < a_end; ++a) {
    for (int64_t dy = 0; dy <= r; ++dy) {
      const int64_t b = a + dy;
      const bool a_real = a >= 0 && a < H, b_real = b >= 0 && b < H;
      if (!a_real && !b_real) continue;
      for (int64_t dx = dy == 0 ? 1 : -r; dx <= r; ++dx) {
        const T spatial = g[r + dy] * g[r + dx];
        if (a_real && b_real && dy > 0) {
          // The columns where both ends are real in one fused pass; the few at the sides, where one
          // end is a padding column, pair by pair.
          const int64_t x0 = std::max<int64_t>(0, -dx), x1 = std::min<int64_t>(W, W - dx);
          fused_pairs<T, kC>(C, pp, plane, padded + (a + r) * pw + r + x0,
                             padded + (b + r) * pw + r + x0 + dx, spatial, scale, out + a * W + x0,
                             norm + a * W + x0, out + b * W + x0 + dx, norm + b * W + x0 + dx,
                             x1 - x0);
          const auto side_pairs = [&](int64_t ax_begin, int64_t ax_end) {
            for (int64_t ax = ax_begin; ax < ax_end; ++ax) {
              const T* pa = padded + (a + r) * pw + r + ax;
              const T* pb = pa + dy * pw + dx;
              T distance = 0;
              for (int64_t c = 0; c < C; ++c) distance += std::abs(pb[c * pp] - pa[c * pp]);
              const T w = pair_weight(spatial, distance, scale);
              if (ax >= 0 && ax < W) {
                norm[a * W + ax] += w;
                for (int64_t c = 0; c < C; ++c) out[c * plane + a * W + ax] += w * pb[c * pp];
              }
              if (ax + dx >= 0 && ax + dx < W) {
                norm[b * W + ax + dx] += w;
                for (int64_t c = 0; c < C; ++c) out[c * plane + b * W + ax + dx] += w * pa[c * pp];
              }
            }
          };
          side_pairs(std::min<int64_t>(0, -dx), x0);
          side_pairs(x1, std::max<int64_t>(W, W - dx));
          continue;
        }
        // Weights for A_x in [lo, hi), the columns of A whose pair has a real end.
        const int64_t lo = std::min<int64_t>(a_real ? 0 : -dx, b_real ? -dx : 0);
        const int64_t hi = std::max<int64_t>(a_real ? W : W - dx, b_real ? W - dx : W);
        const T* xa = padded + (a + r) * pw + r + lo;       // x(A), A_x = lo + i
        const T* xb = padded + (b + r) * pw + r + lo + dx;  // x(A + o)
        T* w = scratch;
#pragma omp simd
        for (int64_t i = 0; i < hi - lo; ++i) {
          T distance = 0;
          for (int64_t c = 0; c < C; ++c) distance += std::abs(xb[c * pp + i] - xa[c * pp + i]);
          w[i] = pair_weight(spatial, distance, scale);
        }
        if (a_real) {
          const T* wa = w - lo;  // indexed by A_x
          const T* xq = padded + (b + r) * pw + r + dx;
          T* num = out + a * W;
          T* den = norm + a * W;
#pragma omp simd
          for (int64_t x = 0; x < W; ++x) {
            den[x] += wa[x];
            for (int64_t c = 0; c < C; ++c) num[c * plane + x] += wa[x] * xq[c * pp + x];
          }
        }
        if (b_real) {
          const T* wb = w - lo - dx;  // indexed by B_x = A_x + dx
          const T* xq = padded + (a + r) * pw + r - dx;
          T* num = out + b * W;
          T* den = norm + b * W;
#pragma omp simd
          for (int64_t x = 0; x < W; ++x) {
            den[x] += wb[x];
            for (int64_t c = 0; c < C; ++c) num[c * plane + x] += wb[x] * xq[c * pp + x];
          }
        }
      }
    }
  }
}

// Rows [y_begin, y_end) of one image, as centres p: adds every pair's gradient to the padded
// gradient grad_padded (at q, and at p itself). Rows y and y + k - 1 of grad_padded are written, so
// callers must not run overlapping row ranges at the same time.
template <typename T, int kC>
PYDEBLUR_ALWAYS_INLINE void backward_rows(const Geometry& geo, const T* padded, const T* g, T scale,
                                          const T* grad_out, const T* out, const T* norm,
                                          T* grad_padded, int64_t y_begin, int64_t y_end,
                                          T* scratch) {
  const int64_t C = kC > 0 ? kC : geo.channels;
  const int64_t W = geo.width, pw = geo.padded_width, pp = geo.padded_plane, plane = geo.plane;
  T* gw = scratch;                    // [C][W]: dL/dout / W
  T* dot = scratch + C * W;           // [W]: sum_c gw_c out_c
  T* centre = scratch + (C + 1) * W;  // [C][W]: gradient at the centres
  for (int64_t y = y_begin; y < y_end; ++y) {
    std::fill(dot, dot + W, T(0));
    std::fill(centre, centre + C * W, T(0));
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t x = 0; x < W; ++x) {
        gw[c * W + x] = grad_out[c * plane + y * W + x] / norm[y * W + x];
        dot[x] += gw[c * W + x] * out[c * plane + y * W + x];
      }
    }
    const T* p = padded + (y + geo.radius) * pw + geo.radius;
    for (int64_t dy = 0; dy < geo.kernel_size; ++dy) {
      for (int64_t dx = 0; dx < geo.kernel_size; ++dx) {
        const T spatial = g[dy] * g[dx];
        const T* q = padded + (y + dy) * pw + dx;
        T* grad_q = grad_padded + (y + dy) * pw + dx;
#pragma omp simd
        for (int64_t x = 0; x < W; ++x) {
          T distance = 0, weight_gradient = -dot[x];
          for (int64_t c = 0; c < C; ++c) {
            distance += std::abs(q[c * pp + x] - p[c * pp + x]);
            weight_gradient += gw[c * W + x] * q[c * pp + x];
          }
          const T w = pair_weight(spatial, distance, scale);
          const T b = distance_gradient(weight_gradient, w, distance, scale);
          for (int64_t c = 0; c < C; ++c) {
            const T t = signed_gradient(b, q[c * pp + x] - p[c * pp + x]);
            grad_q[c * pp + x] += gw[c * W + x] * w + t;
            centre[c * W + x] -= t;
          }
        }
      }
    }
    T* grad_p = grad_padded + (y + geo.radius) * pw + geo.radius;
    for (int64_t c = 0; c < C; ++c)
      for (int64_t x = 0; x < W; ++x) grad_p[c * pp + x] += centre[c * W + x];
  }
}

// The channel-count dispatch, compiled per instruction set for float.
#define PYDEBLUR_DISPATCH_CHANNELS(function, T, geo, ...) \
  switch (geo.channels) {                                 \
    case 1:                                               \
      function<T, 1>(geo, __VA_ARGS__);                   \
      break;                                              \
    case 2:                                               \
      function<T, 2>(geo, __VA_ARGS__);                   \
      break;                                              \
    case 3:                                               \
      function<T, 3>(geo, __VA_ARGS__);                   \
      break;                                              \
    case 4:                                               \
      function<T, 4>(geo, __VA_ARGS__);                   \
      break;                                              \
    default:                                              \
      function<T, 0>(geo, __VA_ARGS__);                   \
  }

PYDEBLUR_VECTOR_CLONES void forward_pairs_float(const Geometry& geo, const float* padded,
                                                const float* g, float scale, float* out,
                                                float* norm, int64_t y_begin, int64_t y_end,
                                                float* scratch) {
  PYDEBLUR_DISPATCH_CHANNELS(forward_pairs, float, geo, padded, g, scale, out, norm, y_begin, y_end,
                             scratch)
}

void forward_pairs_double(const Geometry& geo, const double* padded, const double* g, double scale,
                          double* out, double* norm, int64_t y_begin, int64_t y_end,
                          double* scratch){PYDEBLUR_DISPATCH_CHANNELS(forward_pairs, double, geo,
                                                                      padded, g, scale, out, norm,
                                                                      y_begin, y_end, scratch)}

PYDEBLUR_VECTOR_CLONES
    void backward_rows_float(const Geometry& geo, const float* padded, const float* g, float scale,
                             const float* grad_out, const float* out, const float* norm,
                             float* grad_padded, int64_t y_begin, int64_t y_end, float* scratch) {
  PYDEBLUR_DISPATCH_CHANNELS(backward_rows, float, geo, padded, g, scale, grad_out, out, norm,
                             grad_padded, y_begin, y_end, scratch)
}

void backward_rows_double(const Geometry& geo, const double* padded, const double* g, double scale,
                          const double* grad_out, const double* out, const double* norm,
                          double* grad_padded, int64_t y_begin, int64_t y_end, double* scratch) {
  PYDEBLUR_DISPATCH_CHANNELS(backward_rows, double, geo, padded, g, scale, grad_out, out, norm,
                             grad_padded, y_begin, y_end, scratch)
}

void forward_pairs_of(const Geometry& geo, const float* padded, const float* g, float scale,
                      float* out, float* norm, int64_t y0, int64_t y1, float* scratch) {
  forward_pairs_float(geo, padded, g, scale, out, norm, y0, y1, scratch);
}
void forward_pairs_of(const Geometry& geo, const double* padded, const double* g, double scale,
                      double* out, double* norm, int64_t y0, int64_t y1, double* scratch) {
  forward_pairs_double(geo, padded, g, scale, out, norm, y0, y1, scratch);
}
void backward_rows_of(const Geometry& geo, const float* padded, const float* g, float scale,
                      const float* grad_out, const float* out, const float* norm,
                      float* grad_padded, int64_t y0, int64_t y1, float* scratch) {
  backward_rows_float(geo, padded, g, scale, grad_out, out, norm, grad_padded, y0, y1, scratch);
}
void backward_rows_of(const Geometry& geo, const double* padded, const double* g, double scale,
                      const double* grad_out, const double* out, const double* norm,
                      double* grad_padded, int64_t y0, int64_t y1, double* scratch) {
  backward_rows_double(geo, padded, g, scale, grad_out, out, norm, grad_padded, y0, y1, scratch);
}

at::Tensor reflect_padded(const at::Tensor& x, int64_t radius) {
  at::Tensor padded = at::empty(
      {x.size(0), x.size(1), x.size(2) + 2 * radius, x.size(3) + 2 * radius}, x.options());
  advise_huge_pages(padded);
  return at::reflection_pad2d_out(padded, x, {radius, radius, radius, radius});
}

std::tuple<at::Tensor, at::Tensor> bilateral_filter_cpu(const at::Tensor& x_in, int64_t kernel_size,
                                                        double sigma_color, double sigma_space) {
  check_inputs(x_in, kernel_size);
  const at::Tensor x = x_in.contiguous();
  const Geometry geo = geometry_of(x, kernel_size);
  const int64_t batch = x.size(0), H = geo.height, W = geo.width, C = geo.channels;
  if (x.numel() == 0) return {at::empty_like(x), at::empty({batch, 1, H, W}, x.options())};
  const at::Tensor padded = reflect_padded(x, geo.radius);
  at::Tensor out, norm;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_filter_cpu", [&] {
    const auto g = spatial_kernel<scalar_t>(static_cast<int>(kernel_size), sigma_space);
    const scalar_t scale = range_scale<scalar_t>(sigma_color);
    // The centre tap: weight s(0) (its colour distance is 0).
    const scalar_t centre = g.g[geo.radius] * g.g[geo.radius];
    out = at::empty_like(x);
    advise_huge_pages(out);
    at::mul_out(out, x, at::scalar_tensor(centre, x.options()));
    norm = at::empty({batch, 1, H, W}, x.options());
    advise_huge_pages(norm);
    norm.fill_(centre);
    const scalar_t* padded_data = padded.data_ptr<scalar_t>();
    scalar_t* out_data = out.data_ptr<scalar_t>();
    scalar_t* norm_data = norm.data_ptr<scalar_t>();
    // Tasks are (image, block of first rows A, from -r to H - 1). A block writes its rows and the r
    // below, so blocks of >= r rows overlap only their neighbours: even blocks run together, then
    // odd.
    const int64_t rows = std::max<int64_t>(geo.radius, 8);
    const int64_t blocks = (H + geo.radius + rows - 1) / rows;
    const int64_t half = (blocks + 1) / 2;
    for (int64_t parity = 0; parity < 2; ++parity) {
      at::parallel_for(0, batch * half, 1, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> scratch(W + 2 * geo.radius);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t b = task / half, block = 2 * (task % half) + parity;
          if (block >= blocks) continue;
          const int64_t a0 = block * rows - geo.radius;
          forward_pairs_of(geo, padded_data + b * C * geo.padded_plane, g.g, scale,
                           out_data + b * C * geo.plane, norm_data + b * geo.plane, a0,
                           std::min(a0 + rows, H), scratch.data());
        }
      });
    }
  });
  out.div_(norm);
  return {out, norm};
}

at::Tensor bilateral_filter_backward_cpu(const at::Tensor& grad_out_in, const at::Tensor& x_in,
                                         const at::Tensor& out_in, const at::Tensor& norm_in,
                                         int64_t kernel_size, double sigma_color,
                                         double sigma_space) {
  check_backward_inputs(grad_out_in, x_in, out_in, norm_in, kernel_size);
  const at::Tensor x = x_in.contiguous();
  const at::Tensor grad_out = grad_out_in.to(x.scalar_type()).contiguous();
  const at::Tensor out = out_in.to(x.scalar_type()).contiguous();
  const at::Tensor norm = norm_in.to(x.scalar_type()).contiguous();
  const Geometry geo = geometry_of(x, kernel_size);
  const int64_t batch = x.size(0), H = geo.height, W = geo.width, C = geo.channels;
  if (x.numel() == 0) return at::zeros_like(x);
  const at::Tensor padded = reflect_padded(x, geo.radius);
  at::Tensor grad_padded = at::empty_like(padded);
  advise_huge_pages(grad_padded);
  grad_padded.zero_();
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "bilateral_filter_backward_cpu", [&] {
    const auto g = spatial_kernel<scalar_t>(static_cast<int>(kernel_size), sigma_space);
    const scalar_t scale = range_scale<scalar_t>(sigma_color);
    const scalar_t* padded_data = padded.data_ptr<scalar_t>();
    const scalar_t* grad_out_data = grad_out.data_ptr<scalar_t>();
    const scalar_t* out_data = out.data_ptr<scalar_t>();
    const scalar_t* norm_data = norm.data_ptr<scalar_t>();
    scalar_t* grad_padded_data = grad_padded.data_ptr<scalar_t>();
    // A block of centre rows writes padded rows [y0, y1 + 2r). Blocks of at least 2r rows overlap
    // only their neighbours, so the even blocks run together, then the odd ones: no atomics, no
    // copies.
    const int64_t rows = std::min<int64_t>(H, std::max<int64_t>(2 * geo.radius, 8));
    const int64_t blocks = (H + rows - 1) / rows;
    const int64_t half = (blocks + 1) / 2;
    for (int64_t parity = 0; parity < 2; ++parity) {
      at::parallel_for(0, batch * half, 1, [&](int64_t begin, int64_t end) {
        std::vector<scalar_t> scratch((2 * C + 1) * W);
        for (int64_t task = begin; task < end; ++task) {
          const int64_t b = task / half, block = 2 * (task % half) + parity;
          if (block >= blocks) continue;
          const int64_t y0 = block * rows;
          backward_rows_of(geo, padded_data + b * C * geo.padded_plane, g.g, scale,
                           grad_out_data + b * C * geo.plane, out_data + b * C * geo.plane,
                           norm_data + b * geo.plane, grad_padded_data + b * C * geo.padded_plane,
                           y0, std::min(y0 + rows, H), scratch.data());
        }
      });
    }
  });
  // The adjoint of the reflect padding folds the border gradient back onto the pixels it copied.
  return at::reflection_pad2d_backward(grad_padded, x,
                                       {geo.radius, geo.radius, geo.radius, geo.radius});
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CPU, m) {
  m.impl("bilateral_filter", &bilateral_filter_cpu);
  m.impl("_bilateral_filter_backward", &bilateral_filter_backward_cpu);
}

}  // namespace pydeblur::bilateral
