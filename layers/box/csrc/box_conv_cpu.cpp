// CPU kernels of the box convolution (multi-threaded with at::parallel_for).
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <vector>

#include "box_conv.h"
#include "box_conv_host.h"

namespace farconv {
namespace box {
namespace {

// Raw pointers to the (C, F) box edges and scales (scale is null where unused).
struct Boxes {
  const void* r_lo;
  const void* r_hi;
  const void* c_lo;
  const void* c_hi;
  const void* scale;
};

Boxes boxes_of(const std::vector<at::Tensor>& edges, const at::Tensor* scale = nullptr) {
  return {edges[0].data_ptr(), edges[1].data_ptr(), edges[2].data_ptr(), edges[3].data_ptr(),
          scale ? scale->data_ptr() : nullptr};
}

template <typename acc_t, bool EXACT>
void box_sums_kernel(const acc_t* integral, Boxes boxes, acc_t* out, int64_t B, int64_t C, int64_t F, int H, int W,
                     int stride_h, int stride_w, int out_h, int out_w) {
  const auto* r_lo = static_cast<const acc_t*>(boxes.r_lo);
  const auto* r_hi = static_cast<const acc_t*>(boxes.r_hi);
  const auto* c_lo = static_cast<const acc_t*>(boxes.c_lo);
  const auto* c_hi = static_cast<const acc_t*>(boxes.c_hi);
  const auto* scale = static_cast<const acc_t*>(boxes.scale);
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  at::parallel_for(0, B * C * F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      const int64_t box = plane % (C * F);  // c * F + f
      const acc_t* S = integral + (plane / F) * plane_size;
      acc_t* o = out + plane * out_h * out_w;
      for (int i = 0; i < out_h; ++i) {
        const acc_t row_lo = acc_t(i * stride_h) + r_lo[box], row_hi = acc_t(i * stride_h) + r_hi[box];
        for (int j = 0; j < out_w; ++j) {
          const acc_t column = acc_t(j * stride_w);
          o[i * out_w + j] =
              scale[box] * box_sum<acc_t, EXACT>(S, H, W, row_lo, row_hi, column + c_lo[box], column + c_hi[box]);
        }
      }
    }
  });
}

template <typename acc_t, bool EXACT>
void box_sums_reduced_kernel(const acc_t* integral, Boxes boxes, acc_t* out, int64_t B, int64_t C, int64_t F, int H,
                             int W) {
  const auto* r_lo = static_cast<const acc_t*>(boxes.r_lo);
  const auto* r_hi = static_cast<const acc_t*>(boxes.r_hi);
  const auto* c_lo = static_cast<const acc_t*>(boxes.c_lo);
  const auto* c_hi = static_cast<const acc_t*>(boxes.c_hi);
  const auto* scale = static_cast<const acc_t*>(boxes.scale);
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
            o[i * W + j] += scale[box] * box_sum<acc_t, EXACT>(S, H, W, acc_t(i) + r_lo[box], acc_t(i) + r_hi[box],
                                                               acc_t(j) + c_lo[box], acc_t(j) + c_hi[box]);
          }
        }
      }
    }
  });
}

template <typename acc_t, bool EXACT>
void box_slopes_kernel(const acc_t* integral, Boxes boxes, const acc_t* weights, acc_t* out, int64_t B, int64_t C,
                       int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const auto* r_lo = static_cast<const acc_t*>(boxes.r_lo);
  const auto* r_hi = static_cast<const acc_t*>(boxes.r_hi);
  const auto* c_lo = static_cast<const acc_t*>(boxes.c_lo);
  const auto* c_hi = static_cast<const acc_t*>(boxes.c_hi);
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  const int64_t boxes_count = C * F;
  at::parallel_for(0, boxes_count, 1, [&](int64_t begin, int64_t end) {
    for (int64_t box = begin; box < end; ++box) {
      double totals[4] = {0, 0, 0, 0};
      for (int64_t b = 0; b < B; ++b) {
        const acc_t* S = integral + (b * C + box / F) * plane_size;
        const acc_t* w = weights + (b * boxes_count + box) * out_h * out_w;
        for (int i = 0; i < out_h; ++i) {
          acc_t row[4] = {0, 0, 0, 0};
          const acc_t row_lo = acc_t(i * stride_h) + r_lo[box], row_hi = acc_t(i * stride_h) + r_hi[box];
          for (int j = 0; j < out_w; ++j) {
            const acc_t column = acc_t(j * stride_w);
            accumulate_edge_slopes<acc_t, EXACT>(S, H, W, row_lo, row_hi, column + c_lo[box], column + c_hi[box],
                                                 w[i * out_w + j], row);
          }
          for (int k = 0; k < 4; ++k) totals[k] += row[k];
        }
      }
      for (int k = 0; k < 4; ++k) out[k * boxes_count + box] = static_cast<acc_t>(totals[k]);
    }
  });
}

}  // namespace

// integral (B, C, H+1, W+1) -> (B, C*F, out_h, out_w): scale[c, f] * box sum of box (c, f).
at::Tensor box_sums(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                    int64_t stride_h, int64_t stride_w, int64_t out_h, int64_t out_w, bool exact) {
  check_tensor(integral, "integral", 4, integral);
  check_edges(edges, integral, integral.size(1));
  check_scale(scale, edges);
  const int64_t B = integral.size(0), C = integral.size(1), F = scale.size(1);
  const int H = integral.size(2) - 1, W = integral.size(3) - 1;
  auto out = at::empty({B, C * F, out_h, out_w}, integral.options());
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums", [&] {
    auto run = exact ? box_sums_kernel<scalar_t, true> : box_sums_kernel<scalar_t, false>;
    run(integral.data_ptr<scalar_t>(), boxes_of(edges, &scale), out.data_ptr<scalar_t>(), B, C, F, H, W, stride_h,
        stride_w, out_h, out_w);
  });
  return out;
}

// integral (B, C, F, H+1, W+1) -> (B, C, H, W): sum over f of scale[c, f] * box sum of plane (b, c, f).
at::Tensor box_sums_reduced(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                            bool exact) {
  check_tensor(integral, "integral", 5, integral);
  check_edges(edges, integral, integral.size(1));
  check_scale(scale, edges);
  const int64_t B = integral.size(0), C = integral.size(1), F = integral.size(2);
  const int H = integral.size(3) - 1, W = integral.size(4) - 1;
  auto out = at::empty({B, C, H, W}, integral.options());
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_reduced", [&] {
    auto run = exact ? box_sums_reduced_kernel<scalar_t, true> : box_sums_reduced_kernel<scalar_t, false>;
    run(integral.data_ptr<scalar_t>(), boxes_of(edges, &scale), out.data_ptr<scalar_t>(), B, C, F, H, W);
  });
  return out;
}

// integral (B, C, H+1, W+1), weights (B, C*F, out_h, out_w) -> (4, C, F): sum over (b, i, j) of
// weights * d box_sum / d (x_min, x_max, y_min, y_max).
at::Tensor box_slopes(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& weights,
                      int64_t stride_h, int64_t stride_w, bool exact) {
  check_tensor(integral, "integral", 4, integral);
  check_tensor(weights, "weights", 4, integral);
  check_edges(edges, integral, integral.size(1));
  const int64_t B = integral.size(0), C = integral.size(1), F = edges[0].size(1);
  const int H = integral.size(2) - 1, W = integral.size(3) - 1;
  TORCH_CHECK(weights.size(0) == B && weights.size(1) == C * F, "box_slopes: weights ", weights.sizes(),
              " do not match ", B, " x ", C * F, " boxes");
  auto out = at::empty({4, C, F}, integral.options());
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_slopes", [&] {
    auto run = exact ? box_slopes_kernel<scalar_t, true> : box_slopes_kernel<scalar_t, false>;
    run(integral.data_ptr<scalar_t>(), boxes_of(edges), weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), B, C, F,
        H, W, stride_h, stride_w, weights.size(2), weights.size(3));
  });
  return out;
}

}  // namespace box
}  // namespace farconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "farconv box convolution, CPU kernels";
  m.def("box_sums", &farconv::box::box_sums, "scaled box sums of every (batch, channel, filter) plane");
  m.def("box_sums_reduced", &farconv::box::box_sums_reduced, "box sums summed over filters");
  m.def("box_slopes", &farconv::box::box_slopes, "weighted edge derivatives of the box sums, per box");
}
