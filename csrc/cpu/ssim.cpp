// CPU kernels of pydeblur::ssim_forward and pydeblur::_ssim_backward (math: pydeblur/ssim_math.h,
// checks: pydeblur/ssim_host.h).
//
// Each (image, channel) plane is one task of at::parallel_for. A plane is swept row by row: a row
// of the padded image is filtered horizontally (five products x, y, x^2, y^2, xy) into a ring
// buffer of window_size rows, and each output row is the vertical filter of the ring, so the
// working set is a few rows (tens of KB) and stays in cache. The backward pass sweeps the saved
// partial maps the same way with the adjoint filter.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "pydeblur/huge_pages.h"
#include "pydeblur/ssim_host.h"
#include "pydeblur/ssim_math.h"

// The sweeps are auto-vectorised; on x86-64 with GCC they are also compiled for AVX2+FMA and picked
// at run time, since the build targets the baseline ISA.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PYDEBLUR_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define PYDEBLUR_MULTIVERSION
#endif

namespace pydeblur {
namespace {

using ssim::Geometry;
using ssim::kMaxWindow;
using ssim::kNumPartials;

constexpr int kForwardQuantities = 5;  // x, y, x^2, y^2, xy

// A 32-byte SIMD vector (GCC/Clang vector extension: AVX in the x86-64-v3 clone, pairs of SSE
// registers otherwise). The auto-vectoriser left the filter loops scalar, so they are written out.
// (-Wpsabi: these helpers are always inlined, no AVX vector crosses a call boundary.)
#pragma GCC diagnostic ignored "-Wpsabi"
template <typename T>
using Vec __attribute__((vector_size(32))) = T;

template <typename T>
inline __attribute__((always_inline)) Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename V>
inline __attribute__((always_inline)) void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(v));
}

// out[q] = sum_k w[k] rows[k][q] for q < n. A horizontal filter passes rows[k] = in + k. Blocks of
// four vectors accumulate in registers over all taps.
template <typename T>
inline __attribute__((always_inline)) void weighted_sum(const T* const* rows, const T* w, int taps,
                                                        int n, T* __restrict__ out) {
  constexpr int L = sizeof(Vec<T>) / sizeof(T);
  int q = 0;
  for (; q + 4 * L <= n; q += 4 * L) {
    Vec<T> a0 = w[0] * load(rows[0] + q), a1 = w[0] * load(rows[0] + q + L);
    Vec<T> a2 = w[0] * load(rows[0] + q + 2 * L), a3 = w[0] * load(rows[0] + q + 3 * L);
    for (int k = 1; k < taps; ++k) {
      const T* row = rows[k] + q;
      a0 += w[k] * load(row);
      a1 += w[k] * load(row + L);
      a2 += w[k] * load(row + 2 * L);
      a3 += w[k] * load(row + 3 * L);
    }
    store(out + q, a0);
    store(out + q + L, a1);
    store(out + q + 2 * L, a2);
    store(out + q + 3 * L, a3);
  }
  for (; q + L <= n; q += L) {
    Vec<T> a = w[0] * load(rows[0] + q);
    for (int k = 1; k < taps; ++k) a += w[k] * load(rows[k] + q);
    store(out + q, a);
  }
  for (; q < n; ++q) {
    T a = w[0] * rows[0][q];
    for (int k = 1; k < taps; ++k) a += w[k] * rows[k][q];
    out[q] = a;
  }
}

// out[q] = sum_k w[k] in[q + k] for q < n.
template <typename T>
inline __attribute__((always_inline)) void correlate_row(const T* in, const T* w, int taps, int n,
                                                         T* __restrict__ out) {
  const T* rows[kMaxWindow];
  for (int k = 0; k < taps; ++k) rows[k] = in + k;
  weighted_sum(rows, w, taps, n, out);
}

template <typename T>
struct Window {
  T taps[kMaxWindow];
  int size;
};

// One plane of the forward pass: returns the sum of the SSIM map and writes the partial maps
// (kNumPartials x out_height x out_width) when `partials` is not null.
template <typename T>
inline __attribute__((always_inline)) double forward_plane_impl(const T* x, const T* y,
                                                                const Geometry& g,
                                                                const Window<T>& win, T c1, T c2,
                                                                T* partials) {
  const int taps = win.size, radius = g.radius;
  const int padded_width = g.width + 2 * g.pad, ow = g.out_width;
  const int64_t out_plane = static_cast<int64_t>(g.out_height) * ow;
  // One padded row of the five products (zero borders stay zero), the ring of horizontally filtered
  // rows, and the five moments of one output row.
  std::vector<T> products(kForwardQuantities * padded_width, T(0));
  std::vector<T> ring(static_cast<size_t>(taps) * kForwardQuantities * ow);
  std::vector<T> moments(kForwardQuantities * ow);
  double total = 0.0;
  for (int i = 0; i < g.height + 2 * g.pad; ++i) {
    T* slot = ring.data() + static_cast<size_t>(i % taps) * kForwardQuantities * ow;
    const int a = i - g.pad;
    if (a < 0 || a >= g.height) {
      std::fill(slot, slot + kForwardQuantities * ow, T(0));
    } else {
      const T* xr = x + static_cast<int64_t>(a) * g.width;
      const T* yr = y + static_cast<int64_t>(a) * g.width;
      T* px = products.data() + g.pad;
      T* py = px + padded_width;
      T* pxx = py + padded_width;
      T* pyy = pxx + padded_width;
      T* pxy = pyy + padded_width;
#pragma omp simd
      for (int b = 0; b < g.width; ++b) {
        const T xv = xr[b], yv = yr[b];
        px[b] = xv;
        py[b] = yv;
        pxx[b] = xv * xv;
        pyy[b] = yv * yv;
        pxy[b] = xv * yv;
      }
      for (int m = 0; m < kForwardQuantities; ++m)
        correlate_row(products.data() + m * padded_width, win.taps, taps, ow, slot + m * ow);
    }
    if (i < 2 * radius) continue;
    const int p = i - 2 * radius;  // the output row whose window ends at padded row i
    const T* rows[kMaxWindow];
    for (int m = 0; m < kForwardQuantities; ++m) {
      for (int k = 0; k < taps; ++k)
        rows[k] =
            ring.data() + static_cast<size_t>((p + k) % taps) * kForwardQuantities * ow + m * ow;
      weighted_sum(rows, win.taps, taps, ow, moments.data() + m * ow);
    }
    const T* mx = moments.data();
    const T* my = mx + ow;
    const T* exx = my + ow;
    const T* eyy = exx + ow;
    const T* exy = eyy + ow;
    T row_sum = 0;
    if (partials != nullptr) {
      T* d_mx = partials + static_cast<int64_t>(p) * ow;
      T* d_my = d_mx + out_plane;
      T* d_second = d_my + out_plane;
      T* d_exy = d_second + out_plane;
#pragma omp simd reduction(+ : row_sum)
      for (int q = 0; q < ow; ++q) {
        const auto r = ssim::ssim_value_and_partials(mx[q], my[q], exx[q], eyy[q], exy[q], c1, c2);
        d_mx[q] = r.d_mx;
        d_my[q] = r.d_my;
        d_second[q] = r.d_second;
        d_exy[q] = r.d_exy;
        row_sum += r.value;
      }
    } else {
#pragma omp simd reduction(+ : row_sum)
      for (int q = 0; q < ow; ++q)
        row_sum += ssim::ssim_value(mx[q], my[q], exx[q], eyy[q], exy[q], c1, c2);
    }
    total += row_sum;
  }
  return total;
}

// One plane of the backward pass. The forward map is M = W X restricted to the output rows and
// columns; its adjoint spreads a map G on the output grid back over the image with the same
// symmetric window: F[ii] = sum_t w[t] Gext[ii + t], where Gext is G with 2 radius zeros on each
// side and image row a sits at ii = a + pad (likewise for columns). `scale` is the upstream
// gradient of the plane's mean divided by the number of output pixels.
template <typename T>
inline __attribute__((always_inline)) void backward_plane_impl(const T* x, const T* y,
                                                               const T* partials, T scale,
                                                               const Geometry& g,
                                                               const Window<T>& win, T* dx, T* dy) {
  const int taps = win.size, radius = g.radius;
  const int W = g.width, ow = g.out_width, oh = g.out_height;
  const int ext_width = ow + 4 * radius;
  const int64_t out_plane = static_cast<int64_t>(oh) * ow;
  std::vector<T> extended(kNumPartials * ext_width, T(0));
  std::vector<T> ring(static_cast<size_t>(taps) * kNumPartials * W);
  std::vector<T> filtered(kNumPartials * W);
  const int first = g.pad, last = g.pad + g.height - 1 + 2 * radius;  // extended rows needed
  for (int i = first; i <= last; ++i) {
    T* slot = ring.data() + static_cast<size_t>(i % taps) * kNumPartials * W;
    const int p = i - 2 * radius;
    if (p < 0 || p >= oh) {
      std::fill(slot, slot + kNumPartials * W, T(0));
    } else {
      for (int m = 0; m < kNumPartials; ++m) {
        T* ext = extended.data() + m * ext_width;
        const T* src = partials + m * out_plane + static_cast<int64_t>(p) * ow;
        std::copy(src, src + ow, ext + 2 * radius);
        correlate_row(ext + g.pad, win.taps, taps, W, slot + m * W);
      }
    }
    if (i < first + 2 * radius) continue;
    const int a = i - 2 * radius - g.pad;  // the image row whose adjoint window ends at row i
    const T* rows[kMaxWindow];
    for (int m = 0; m < kNumPartials; ++m) {
      for (int k = 0; k < taps; ++k)
        rows[k] =
            ring.data() + static_cast<size_t>((a + g.pad + k) % taps) * kNumPartials * W + m * W;
      weighted_sum(rows, win.taps, taps, W, filtered.data() + m * W);
    }
    const T* f_mx = filtered.data();
    const T* f_my = f_mx + W;
    const T* f_second = f_my + W;
    const T* f_exy = f_second + W;
    const T* xr = x + static_cast<int64_t>(a) * W;
    const T* yr = y + static_cast<int64_t>(a) * W;
    T* dxr = dx + static_cast<int64_t>(a) * W;
    T* dyr = dy + static_cast<int64_t>(a) * W;
#pragma omp simd
    for (int b = 0; b < W; ++b) {
      ssim::ssim_input_gradients(xr[b], yr[b], scale * f_mx[b], scale * f_my[b],
                                 scale * f_second[b], scale * f_exy[b], &dxr[b], &dyr[b]);
    }
  }
}

// The run-time-dispatched entry points (target_clones needs plain functions, not templates).
PYDEBLUR_MULTIVERSION double forward_plane(const float* x, const float* y, const Geometry& g,
                                           const Window<float>& win, float c1, float c2,
                                           float* partials) {
  return forward_plane_impl(x, y, g, win, c1, c2, partials);
}
PYDEBLUR_MULTIVERSION double forward_plane(const double* x, const double* y, const Geometry& g,
                                           const Window<double>& win, double c1, double c2,
                                           double* partials) {
  return forward_plane_impl(x, y, g, win, c1, c2, partials);
}
PYDEBLUR_MULTIVERSION void backward_plane(const float* x, const float* y, const float* partials,
                                          float scale, const Geometry& g, const Window<float>& win,
                                          float* dx, float* dy) {
  backward_plane_impl(x, y, partials, scale, g, win, dx, dy);
}
PYDEBLUR_MULTIVERSION void backward_plane(const double* x, const double* y, const double* partials,
                                          double scale, const Geometry& g,
                                          const Window<double>& win, double* dx, double* dy) {
  backward_plane_impl(x, y, partials, scale, g, win, dx, dy);
}

template <typename T>
Window<T> make_window(int64_t window_size, double sigma) {
  Window<T> win;
  win.size = static_cast<int>(window_size);
  gaussian_taps(win.size, sigma, win.taps);
  return win;
}

std::tuple<at::Tensor, at::Tensor> ssim_forward_cpu(const at::Tensor& x_in, const at::Tensor& y_in,
                                                    int64_t window_size, double sigma,
                                                    double data_range, bool valid,
                                                    bool save_partials) {
  const Geometry g = ssim::check_inputs(x_in, y_in, window_size, valid);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t in_plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t out_plane = static_cast<int64_t>(g.out_height) * g.out_width;
  at::Tensor means = at::empty({x.size(0), x.size(1)}, x.options());
  at::Tensor partials = ssim::empty_partials(x, g, save_partials);
  advise_huge_pages(partials);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_forward_cpu", [&] {
    const Window<scalar_t> win = make_window<scalar_t>(window_size, sigma);
    const scalar_t c1 = static_cast<scalar_t>((0.01 * data_range) * (0.01 * data_range));
    const scalar_t c2 = static_cast<scalar_t>((0.03 * data_range) * (0.03 * data_range));
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    scalar_t* mp = means.mutable_data_ptr<scalar_t>();
    scalar_t* pp = save_partials ? partials.mutable_data_ptr<scalar_t>() : nullptr;
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        scalar_t* plane_partials = pp ? pp + n * kNumPartials * out_plane : nullptr;
        const double total =
            forward_plane(xp + n * in_plane, yp + n * in_plane, g, win, c1, c2, plane_partials);
        mp[n] = static_cast<scalar_t>(total / static_cast<double>(out_plane));
      }
    });
  });
  return {means, partials};
}

std::tuple<at::Tensor, at::Tensor> ssim_backward_cpu(const at::Tensor& grad_means_in,
                                                     const at::Tensor& x_in, const at::Tensor& y_in,
                                                     const at::Tensor& partials_in,
                                                     int64_t window_size, double sigma,
                                                     bool valid) {
  const Geometry g = ssim::check_inputs(x_in, y_in, window_size, valid);
  ssim::check_backward_inputs(grad_means_in, x_in, partials_in, g);
  const at::Tensor x = x_in.contiguous(), y = y_in.contiguous();
  const at::Tensor grad_means = grad_means_in.contiguous(), partials = partials_in.contiguous();
  const int64_t planes = x.size(0) * x.size(1);
  const int64_t in_plane = static_cast<int64_t>(g.height) * g.width;
  const int64_t out_plane = static_cast<int64_t>(g.out_height) * g.out_width;
  at::Tensor dx = at::empty_like(x), dy = at::empty_like(y);
  advise_huge_pages(dx);
  advise_huge_pages(dy);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "ssim_backward_cpu", [&] {
    const Window<scalar_t> win = make_window<scalar_t>(window_size, sigma);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    const scalar_t* yp = y.const_data_ptr<scalar_t>();
    const scalar_t* gp = grad_means.const_data_ptr<scalar_t>();
    const scalar_t* pp = partials.const_data_ptr<scalar_t>();
    scalar_t* dxp = dx.mutable_data_ptr<scalar_t>();
    scalar_t* dyp = dy.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
      for (int64_t n = begin; n < end; ++n) {
        const scalar_t scale = gp[n] / static_cast<scalar_t>(out_plane);
        backward_plane(xp + n * in_plane, yp + n * in_plane, pp + n * kNumPartials * out_plane,
                       scale, g, win, dxp + n * in_plane, dyp + n * in_plane);
      }
    });
  });
  return {dx, dy};
}

}  // namespace

TORCH_LIBRARY_IMPL(pydeblur, CPU, m) {
  m.impl("ssim_forward", &ssim_forward_cpu);
  m.impl("_ssim_backward", &ssim_backward_cpu);
}

}  // namespace pydeblur
