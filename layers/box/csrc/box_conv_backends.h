// The kernel entry points each backend implements: CpuBackend in box_conv_cpu.cpp,
// CudaBackend in box_conv_cuda.cu. Arguments are checked and outputs allocated by the
// shared host code (box_conv_host.h); `edges` are the (C, F) tensors r_lo, r_hi, c_lo, c_hi.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace farconv {
namespace box {

#define FARCONV_DECLARE_BOX_BACKEND(Name)                                                                          \
  struct Name {                                                                                                    \
    /* out (..., H+1, W+1) = zero-padded 2-D prefix sums of input (..., H, W), in out's (accumulation) dtype */     \
    static void integral(const at::Tensor& input, at::Tensor& out);                                               \
    /* out (B, C*F, H_out, W_out) = scale * box sums of integral (B, C, H+1, W+1) */                               \
    static void sums(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,    \
                     at::Tensor& out, int stride_h, int stride_w, bool exact);                                      \
    /* out (B, C, H, W) = sum over f of scale * box sums of grad plane (b, c*F+f) spread onto the H x W grid      \
       (entry (i, j) at (i * stride_h, j * stride_w)): the adjoint of `sums` when `edges` are the mirrored boxes */ \
    static void transposed_sums(const at::Tensor& grad, const std::vector<at::Tensor>& edges,                      \
                                const at::Tensor& scale, at::Tensor& out, int stride_h, int stride_w, bool exact);  \
    /* out (5, C, F), zero-initialised by the caller: sums over (b, i, j) of w = grad * scale times                \
       d box_sum / d (x_min, x_max, y_min, y_max), and of w * box_sum */                                          \
    static void slopes(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& grad,    \
                       const at::Tensor& scale, at::Tensor& out, int stride_h, int stride_w, bool exact);            \
  };

FARCONV_DECLARE_BOX_BACKEND(CpuBackend)
FARCONV_DECLARE_BOX_BACKEND(CudaBackend)

#undef FARCONV_DECLARE_BOX_BACKEND

}  // namespace box
}  // namespace farconv
