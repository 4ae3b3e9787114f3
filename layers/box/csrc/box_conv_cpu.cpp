// CPU kernels of the box convolution (multi-threaded with at::parallel_for).
#include <ATen/Parallel.h>

#include <algorithm>

#include "box_conv.h"
#include "box_conv_host.h"

namespace farconv {
namespace box {
namespace {

// Typed views of the (C, F) box edges: row range [r_lo, r_hi), column range [c_lo, c_hi).
template <typename acc_t>
struct Edges {
  const acc_t* r_lo;
  const acc_t* r_hi;
  const acc_t* c_lo;
  const acc_t* c_hi;

  explicit Edges(const std::vector<at::Tensor>& edges)
      : r_lo(edges[0].data_ptr<acc_t>()),
        r_hi(edges[1].data_ptr<acc_t>()),
        c_lo(edges[2].data_ptr<acc_t>()),
        c_hi(edges[3].data_ptr<acc_t>()) {}
};

template <typename acc_t, bool EXACT>
void sums_kernel(const acc_t* integral, Edges<acc_t> e, const acc_t* scale, acc_t* out, int64_t B, int64_t C,
                 int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  at::parallel_for(0, B * C * F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {  // (b * C + c) * F + f
      const int64_t box = plane % (C * F);
      const acc_t* S = integral + (plane / F) * plane_size;
      acc_t* o = out + plane * out_h * out_w;
      for (int i = 0; i < out_h; ++i) {
        const acc_t row = acc_t(i * stride_h);
        for (int j = 0; j < out_w; ++j) {
          const acc_t column = acc_t(j * stride_w);
          o[i * out_w + j] = scale[box] * box_sum<acc_t, EXACT>(S, H, W, row + e.r_lo[box], row + e.r_hi[box],
                                                                column + e.c_lo[box], column + e.c_hi[box]);
        }
      }
    }
  });
}

template <typename acc_t, bool EXACT>
void sums_reduced_kernel(const acc_t* integral, Edges<acc_t> e, const acc_t* scale, acc_t* out, int64_t B, int64_t C,
                         int64_t F, int H, int W) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {  // b * C + c
      acc_t* o = out + plane * H * W;
      std::fill(o, o + static_cast<int64_t>(H) * W, acc_t(0));
      for (int64_t f = 0; f < F; ++f) {
        const int64_t box = (plane % C) * F + f;
        const acc_t* S = integral + (plane * F + f) * plane_size;
        for (int i = 0; i < H; ++i) {
          for (int j = 0; j < W; ++j) {
            o[i * W + j] += scale[box] * box_sum<acc_t, EXACT>(S, H, W, acc_t(i) + e.r_lo[box], acc_t(i) + e.r_hi[box],
                                                               acc_t(j) + e.c_lo[box], acc_t(j) + e.c_hi[box]);
          }
        }
      }
    }
  });
}

template <typename acc_t, bool EXACT>
void slopes_kernel(const acc_t* integral, Edges<acc_t> e, const acc_t* weights, acc_t* out, int64_t B, int64_t C,
                   int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  const int64_t boxes = C * F;
  at::parallel_for(0, boxes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t box = begin; box < end; ++box) {
      double totals[4] = {0, 0, 0, 0};  // one (c, f) per task: no races, double for long sums
      for (int64_t b = 0; b < B; ++b) {
        const acc_t* S = integral + (b * C + box / F) * plane_size;
        const acc_t* w = weights + (b * boxes + box) * out_h * out_w;
        for (int i = 0; i < out_h; ++i) {
          acc_t row_totals[4] = {0, 0, 0, 0};
          const acc_t row = acc_t(i * stride_h);
          for (int j = 0; j < out_w; ++j) {
            const acc_t column = acc_t(j * stride_w);
            accumulate_edge_slopes<acc_t, EXACT>(S, H, W, row + e.r_lo[box], row + e.r_hi[box], column + e.c_lo[box],
                                                 column + e.c_hi[box], w[i * out_w + j], row_totals);
          }
          for (int k = 0; k < 4; ++k) totals[k] += row_totals[k];
        }
      }
      for (int k = 0; k < 4; ++k) out[k * boxes + box] = static_cast<acc_t>(totals[k]);
    }
  });
}

}  // namespace

void CpuBackend::sums(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                      at::Tensor& out, int stride_h, int stride_w, bool exact) {
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_cpu", [&] {
    auto kernel = exact ? sums_kernel<scalar_t, true> : sums_kernel<scalar_t, false>;
    kernel(integral.data_ptr<scalar_t>(), Edges<scalar_t>(edges), scale.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
           integral.size(0), integral.size(1), scale.size(1), integral.size(2) - 1, integral.size(3) - 1, stride_h,
           stride_w, out.size(2), out.size(3));
  });
}

void CpuBackend::sums_reduced(const at::Tensor& integral, const std::vector<at::Tensor>& edges,
                              const at::Tensor& scale, at::Tensor& out, bool exact) {
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_reduced_cpu", [&] {
    auto kernel = exact ? sums_reduced_kernel<scalar_t, true> : sums_reduced_kernel<scalar_t, false>;
    kernel(integral.data_ptr<scalar_t>(), Edges<scalar_t>(edges), scale.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
           integral.size(0), integral.size(1), integral.size(2), integral.size(3) - 1, integral.size(4) - 1);
  });
}

void CpuBackend::slopes(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& weights,
                        at::Tensor& out, int stride_h, int stride_w, bool exact) {
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_slopes_cpu", [&] {
    auto kernel = exact ? slopes_kernel<scalar_t, true> : slopes_kernel<scalar_t, false>;
    kernel(integral.data_ptr<scalar_t>(), Edges<scalar_t>(edges), weights.data_ptr<scalar_t>(),
           out.data_ptr<scalar_t>(), integral.size(0), integral.size(1), edges[0].size(1), integral.size(2) - 1,
           integral.size(3) - 1, stride_h, stride_w, weights.size(2), weights.size(3));
  });
}

}  // namespace box
}  // namespace farconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "farconv box convolution, CPU kernels";
  farconv::box::bind<farconv::box::CpuBackend>(m);
}
