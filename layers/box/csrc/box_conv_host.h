// Host-side operators shared by the CPU and CUDA extensions: argument checks, output
// allocation and the Python bindings, templated on the backend that runs the kernels.
#pragma once

#include <torch/extension.h>

#include <vector>

#include "box_conv_backends.h"

namespace farconv {
namespace box {

inline void check_tensor(const at::Tensor& tensor, const char* name, int64_t dim, const at::Tensor& like) {
  TORCH_CHECK(tensor.dim() == dim, "box_conv2d extension: ", name, " must have ", dim, " dimensions, got ", tensor.sizes());
  TORCH_CHECK(tensor.is_contiguous(), "box_conv2d extension: ", name, " must be contiguous");
  TORCH_CHECK(tensor.scalar_type() == like.scalar_type(), "box_conv2d extension: ", name, " is ", tensor.scalar_type(),
              ", expected ", like.scalar_type());
  TORCH_CHECK(tensor.device() == like.device(), "box_conv2d extension: ", name, " is on ", tensor.device(),
              ", expected ", like.device());
}

// The four box edges (r_lo, r_hi, c_lo, c_hi), each (C, F) for C = `channels`.
inline void check_edges(const std::vector<at::Tensor>& edges, const at::Tensor& like, int64_t channels) {
  TORCH_CHECK(edges.size() == 4, "box_conv2d extension: expected 4 edge tensors, got ", edges.size());
  const char* names[] = {"r_lo", "r_hi", "c_lo", "c_hi"};
  for (size_t k = 0; k < 4; ++k) {
    check_tensor(edges[k], names[k], 2, like);
    TORCH_CHECK(edges[k].sizes() == edges[0].sizes(), "box_conv2d extension: ", names[k], " has shape ",
                edges[k].sizes(), ", r_lo ", edges[0].sizes());
  }
  TORCH_CHECK(edges[0].size(0) == channels, "box_conv2d extension: boxes are for ", edges[0].size(0),
              " channels, the input has ", channels);
}

// The per-box output scale (1 / area when normalising), shaped like the edges.
inline void check_scale(const at::Tensor& scale, const std::vector<at::Tensor>& edges) {
  check_tensor(scale, "scale", 2, edges[0]);
  TORCH_CHECK(scale.sizes() == edges[0].sizes(), "box_conv2d extension: scale has shape ", scale.sizes(), ", boxes ",
              edges[0].sizes());
}

// input (..., H, W) of any floating dtype -> (..., H+1, W+1) integral images, float32
// (float64 for float64 input): entry [k, l] is the sum of input[..., :k, :l].
template <class Backend>
at::Tensor integral_image(const at::Tensor& input) {
  TORCH_CHECK(input.dim() >= 2 && input.is_floating_point(), "box_conv2d extension: integral_image needs a floating ",
              "tensor (..., H, W), got ", input.scalar_type(), " ", input.sizes());
  auto sizes = input.sizes().vec();
  sizes[sizes.size() - 2] += 1;
  sizes[sizes.size() - 1] += 1;
  const auto dtype = input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  auto out = at::empty(sizes, input.options().dtype(dtype));
  Backend::integral(input.contiguous(), out);
  return out;
}

// integral (B, C, H+1, W+1) -> (B, C*F, out_h, out_w): scale[c, f] * box sum of box (c, f).
template <class Backend>
at::Tensor box_sums(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                    int64_t stride_h, int64_t stride_w, int64_t out_h, int64_t out_w, bool exact) {
  check_tensor(integral, "integral", 4, integral);
  check_edges(edges, integral, integral.size(1));
  check_scale(scale, edges);
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1, "box_conv2d extension: strides must be >= 1");
  auto out = at::empty({integral.size(0), integral.size(1) * scale.size(1), out_h, out_w}, integral.options());
  if (out.numel() > 0) Backend::sums(integral, edges, scale, out, stride_h, stride_w, exact);
  return out;
}

// grad (B, C*F, H_out, W_out) -> (B, C, H, W): the adjoint of `box_sums` when `edges` are
// the mirrored boxes; this is the input gradient.
template <class Backend>
at::Tensor box_sums_transposed(const at::Tensor& grad, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                               int64_t stride_h, int64_t stride_w, int64_t height, int64_t width, bool exact) {
  TORCH_CHECK(grad.dim() == 4 && grad.is_contiguous(), "box_conv2d extension: grad must be a contiguous (B, C*F, H, W) tensor");
  check_scale(scale, edges);
  const int64_t channels = edges[0].size(0), filters = edges[0].size(1);
  check_edges(edges, grad, channels);
  TORCH_CHECK(grad.size(1) == channels * filters, "box_conv2d extension: grad has ", grad.size(1), " channels, boxes ",
              channels * filters);
  TORCH_CHECK(grad.size(2) == (height + stride_h - 1) / stride_h && grad.size(3) == (width + stride_w - 1) / stride_w,
              "box_conv2d extension: grad ", grad.sizes(), " is not the output of a ", height, " x ", width, " input");
  auto out = at::empty({grad.size(0), channels, height, width}, grad.options());
  if (out.numel() > 0) Backend::transposed_sums(grad, edges, scale, out, stride_h, stride_w, exact);
  return out;
}

// integral (B, C, H+1, W+1), grad (B, C*F, H_out, W_out) -> (5, C, F): the sums over (b, i, j)
// of grad * scale times d box_sum / d (x_min, x_max, y_min, y_max), and times box_sum.
template <class Backend>
at::Tensor box_slopes(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& grad,
                      const at::Tensor& scale, int64_t stride_h, int64_t stride_w, bool exact) {
  check_tensor(integral, "integral", 4, integral);
  check_tensor(grad, "grad", 4, integral);
  check_edges(edges, integral, integral.size(1));
  check_scale(scale, edges);
  const int64_t boxes = edges[0].numel();
  TORCH_CHECK(grad.size(0) == integral.size(0) && grad.size(1) == boxes, "box_conv2d extension: grad ", grad.sizes(),
              " does not match ", integral.size(0), " x ", boxes, " boxes");
  auto out = at::zeros({5, edges[0].size(0), edges[0].size(1)}, integral.options());
  if (grad.numel() > 0) Backend::slopes(integral, edges, grad, scale, out, stride_h, stride_w, exact);
  return out;
}

// The same three kernels writing into `out` (allocated by the caller, of the shape and dtype
// the allocating versions return): the roofline benchmark times the kernels alone with
// them, as it times a copy into an existing buffer.
template <class Backend>
void integral_image_out(const at::Tensor& input, at::Tensor out) {
  check_tensor(out, "out", input.dim(), out);
  TORCH_CHECK(out.size(-2) == input.size(-2) + 1 && out.size(-1) == input.size(-1) + 1, "box_conv2d extension: out ", out.sizes(),
              " is not the integral image of ", input.sizes());
  Backend::integral(input.contiguous(), out);
}

template <class Backend>
void box_sums_out(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale, int64_t stride_h,
                   int64_t stride_w, bool exact, at::Tensor out) {
  check_tensor(integral, "integral", 4, integral);
  check_tensor(out, "out", 4, integral);
  check_edges(edges, integral, integral.size(1));
  check_scale(scale, edges);
  TORCH_CHECK(out.size(0) == integral.size(0) && out.size(1) == integral.size(1) * scale.size(1) &&
                  out.size(2) == (integral.size(2) - 1 + stride_h - 1) / stride_h &&
                  out.size(3) == (integral.size(3) - 1 + stride_w - 1) / stride_w,
              "box_conv2d extension: out ", out.sizes(), " does not match the box sums of ", integral.sizes());
  if (out.numel() > 0) Backend::sums(integral, edges, scale, out, stride_h, stride_w, exact);
}

template <class Backend>
void box_sums_transposed_out(const at::Tensor& grad, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                              int64_t stride_h, int64_t stride_w, bool exact, at::Tensor out) {
  check_tensor(out, "out", 4, grad);
  const int64_t channels = edges[0].size(0), filters = edges[0].size(1);
  check_edges(edges, grad, channels);
  check_scale(scale, edges);
  TORCH_CHECK(grad.dim() == 4 && grad.is_contiguous() && grad.size(1) == channels * filters && out.size(0) == grad.size(0) &&
                  out.size(1) == channels && grad.size(2) == (out.size(2) + stride_h - 1) / stride_h &&
                  grad.size(3) == (out.size(3) + stride_w - 1) / stride_w,
              "box_conv2d extension: grad ", grad.sizes(), " and out ", out.sizes(), " do not match");
  if (out.numel() > 0) Backend::transposed_sums(grad, edges, scale, out, stride_h, stride_w, exact);
}

template <class Backend>
void bind(pybind11::module& m) {
  m.def("integral_image", &integral_image<Backend>, "zero-padded integral images, float32 or float64");
  m.def("box_sums", &box_sums<Backend>, "scaled box sums of every (batch, channel, filter) plane");
  m.def("box_sums_transposed", &box_sums_transposed<Backend>, "the adjoint of box_sums (the input gradient)");
  m.def("integral_image_out", &integral_image_out<Backend>, "integral_image written into out");
  m.def("box_sums_out", &box_sums_out<Backend>, "box_sums written into out");
  m.def("box_sums_transposed_out", &box_sums_transposed_out<Backend>, "box_sums_transposed written into out");
  m.def("box_slopes", &box_slopes<Backend>, "weighted edge derivatives and sums of the box sums, per box");
}

}  // namespace box
}  // namespace farconv
