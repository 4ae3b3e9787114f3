// Host-side operators shared by the CPU and CUDA extensions: argument checks, output
// allocation and the Python bindings, templated on the backend that runs the kernels.
#pragma once

#include <torch/extension.h>

#include <optional>
#include <string>
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

// The four box edges (r_lo, r_hi, c_lo, c_hi), each (C, F) for C = `channels`; `kind` names
// them in errors ("boxes", "mirrored boxes").
inline void check_edges(const std::vector<at::Tensor>& edges, const at::Tensor& like, int64_t channels,
                        const std::string& kind = "boxes") {
  TORCH_CHECK(edges.size() == 4, "box_conv2d extension: expected 4 edge tensors of the ", kind, ", got ", edges.size());
  const char* names[] = {"r_lo", "r_hi", "c_lo", "c_hi"};
  for (size_t k = 0; k < 4; ++k) {
    check_tensor(edges[k], (kind + " " + names[k]).c_str(), 2, like);
    TORCH_CHECK(edges[k].sizes() == edges[0].sizes(), "box_conv2d extension: ", kind, " ", names[k], " has shape ",
                edges[k].sizes(), ", r_lo ", edges[0].sizes());
  }
  TORCH_CHECK(edges[0].size(0) == channels, "box_conv2d extension: ", kind, " are for ", edges[0].size(0),
              " channels, the input has ", channels);
}

// The per-box output scale (1 / area when normalising), shaped like the edges.
inline void check_scale(const at::Tensor& scale, const std::vector<at::Tensor>& edges) {
  check_tensor(scale, "scale", 2, edges[0]);
  TORCH_CHECK(scale.sizes() == edges[0].sizes(), "box_conv2d extension: scale has shape ", scale.sizes(), ", boxes ",
              edges[0].sizes());
}

// The dtype the kernels accumulate in, and in which they take the boxes and write their
// outputs: float64 for float64 input, float32 for any other floating dtype.
inline at::ScalarType accumulation_dtype(const at::Tensor& input) {
  return input.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Checks the forward's arguments: input (B, C, H, W) of any floating dtype on the backend's
// device, its boxes and scale (C, F) in its accumulation dtype; returns the output's shape,
// (B, C*F, H_out, W_out).
template <class Backend>
std::vector<int64_t> output_shape(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                                  int64_t stride_h, int64_t stride_w) {
  TORCH_CHECK(input.dim() == 4 && input.is_floating_point(), "box_conv2d extension: input must be a floating (B, C, H, W) ",
              "tensor, got ", input.scalar_type(), " ", input.sizes());
  TORCH_CHECK(input.device().type() == Backend::kDevice, "box_conv2d extension: input is on ", input.device(),
              ", these kernels run on ", c10::DeviceTypeName(Backend::kDevice, /*lower_case=*/true));
  TORCH_CHECK(stride_h >= 1 && stride_w >= 1, "box_conv2d extension: strides must be >= 1, got ", stride_h, ", ", stride_w);
  check_edges(edges, edges.empty() ? input : edges[0], input.size(1));
  check_scale(scale, edges);
  TORCH_CHECK(edges[0].scalar_type() == accumulation_dtype(input) && edges[0].device() == input.device(),
              "box_conv2d extension: boxes are ", edges[0].scalar_type(), " on ", edges[0].device(), ", expected ",
              accumulation_dtype(input), " on ", input.device(), " for ", input.scalar_type(), " input");
  return {input.size(0), input.size(1) * scale.size(1), (input.size(2) + stride_h - 1) / stride_h,
          (input.size(3) + stride_w - 1) / stride_w};
}

// box_sums written into `out` (allocated by the caller, of the shape and dtype box_sums returns):
// the roofline benchmark times the kernels alone with it, as it times a copy into an existing buffer.
template <class Backend>
void box_sums_out(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                  int64_t stride_h, int64_t stride_w, bool exact, at::Tensor out) {
  const auto shape = output_shape<Backend>(input, edges, scale, stride_h, stride_w);
  check_tensor(out, "out", 4, edges[0]);
  TORCH_CHECK(out.sizes() == at::IntArrayRef(shape), "box_conv2d extension: out is ", out.sizes(), ", the box sums of ",
              input.sizes(), " are ", at::IntArrayRef(shape));
  if (out.numel() > 0) Backend::sums(input.contiguous(), edges, scale, out, stride_h, stride_w, exact);
}

// input (B, C, H, W) -> (B, C*F, H_out, W_out): scale[c, f] * box sum of box (c, f) over
// input plane (b, c), in the accumulation dtype.
template <class Backend>
at::Tensor box_sums(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                    int64_t stride_h, int64_t stride_w, bool exact) {
  auto out = at::empty(output_shape<Backend>(input, edges, scale, stride_h, stride_w), scale.options());
  box_sums_out<Backend>(input, edges, scale, stride_h, stride_w, exact, out);
  return out;
}

// The backward of box_sums into grad_input and totals where they are given (of the shapes and
// dtypes box_backward returns); totals is zeroed first.
template <class Backend>
void box_backward_out(const at::Tensor& input, const at::Tensor& grad, const std::vector<at::Tensor>& edges,
                      const std::vector<at::Tensor>& mirrored, const at::Tensor& scale, int64_t stride_h,
                      int64_t stride_w, bool exact, const std::optional<at::Tensor>& grad_input_out,
                      const std::optional<at::Tensor>& totals_out) {
  at::Tensor grad_input = grad_input_out.value_or(at::Tensor()), totals = totals_out.value_or(at::Tensor());
  const auto shape = output_shape<Backend>(input, edges, scale, stride_h, stride_w);
  check_edges(mirrored, edges[0], input.size(1), "mirrored boxes");
  TORCH_CHECK(mirrored[0].sizes() == edges[0].sizes(), "box_conv2d extension: mirrored boxes are ", mirrored[0].sizes(),
              ", boxes ", edges[0].sizes());
  check_tensor(grad, "grad", 4, edges[0]);
  TORCH_CHECK(grad.sizes() == at::IntArrayRef(shape), "box_conv2d extension: grad is ", grad.sizes(),
              ", the output of the box sums of ", input.sizes(), " is ", at::IntArrayRef(shape));
  if (grad_input.defined()) {
    check_tensor(grad_input, "grad_input", 4, edges[0]);
    TORCH_CHECK(grad_input.sizes() == input.sizes(), "box_conv2d extension: grad_input is ", grad_input.sizes(),
                ", input ", input.sizes());
  }
  if (totals.defined()) {
    check_tensor(totals, "totals", 3, edges[0]);
    TORCH_CHECK(totals.size(0) == 5 && totals.sizes().slice(1) == edges[0].sizes(), "box_conv2d extension: totals is ",
                totals.sizes(), ", expected (5, C, F) for boxes ", edges[0].sizes());
    totals.zero_();
  }
  if (grad.numel() == 0) {  // no input pixels, or no boxes (F = 0): the input gradient is zero
    if (grad_input.defined()) grad_input.zero_();
    return;
  }
  Backend::backward(input.contiguous(), grad, edges, mirrored, scale, grad_input, totals, stride_h, stride_w, exact);
}

// input (B, C, H, W) and grad (B, C*F, H_out, W_out), the gradient of box_sums' output ->
// [grad_input (B, C, H, W) if input_grad, totals (5, C, F) if box_grad] (None otherwise), in
// the accumulation dtype: the input gradient (the adjoint of box_sums, through the mirrored
// boxes) and, per box, the sums over (b, i, j) of grad * scale times d box_sum / d
// (x_min, x_max, y_min, y_max), and times box_sum.
template <class Backend>
std::vector<at::Tensor> box_backward(const at::Tensor& input, const at::Tensor& grad, const std::vector<at::Tensor>& edges,
                                     const std::vector<at::Tensor>& mirrored, const at::Tensor& scale, int64_t stride_h,
                                     int64_t stride_w, bool exact, bool input_grad, bool box_grad) {
  output_shape<Backend>(input, edges, scale, stride_h, stride_w);
  at::Tensor grad_input = input_grad ? at::empty(input.sizes(), scale.options()) : at::Tensor();
  at::Tensor totals = box_grad ? at::empty({5, edges[0].size(0), edges[0].size(1)}, scale.options()) : at::Tensor();
  box_backward_out<Backend>(input, grad, edges, mirrored, scale, stride_h, stride_w, exact, grad_input, totals);
  return {grad_input, totals};
}

template <class Backend>
void bind(pybind11::module& m) {
  m.def("box_sums", &box_sums<Backend>, "scaled box sums of every (batch, channel, filter) plane");
  m.def("box_sums_out", &box_sums_out<Backend>, "box_sums written into out");
  m.def("box_backward", &box_backward<Backend>, "input gradient and per-box edge-derivative totals of box_sums");
  m.def("box_backward_out", &box_backward_out<Backend>, "box_backward written into grad_input and totals");
}

}  // namespace box
}  // namespace farconv
