// Host-side argument checks shared by the CPU and CUDA bindings.
#pragma once

#include <torch/extension.h>

#include <vector>

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

}  // namespace box
}  // namespace farconv
