// The kernel entry points each backend implements: CpuBackend in box_conv_cpu.cpp,
// CudaBackend in box_conv_cuda.cu. Arguments are checked and outputs allocated by the
// shared host code (box_conv_host.h); `edges` are the (C, F) tensors r_lo, r_hi, c_lo, c_hi,
// `scale` the (C, F) output scale, both in the accumulation dtype (float32; float64 for float64 input).
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace farconv {
namespace box {

#define FARCONV_DECLARE_BOX_BACKEND(Name, Device)                                                                    \
  struct Name {                                                                                                      \
    static constexpr c10::DeviceType kDevice = Device;                                                               \
    /* out (B, C*F, H_out, W_out), in the accumulation dtype = scale * box sums of input (B, C, H, W), over the      \
       zero-padded 2-D prefix sums (integral images) of its planes */                                                \
    static void sums(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,         \
                     at::Tensor& out, int stride_h, int stride_w, bool exact);                                       \
    /* grad (B, C*F, H_out, W_out) of the output of `sums`. Where defined, grad_input (B, C, H, W) = the sum over f  \
       of scale * box sums over the `mirrored` boxes of grad plane (b, c*F+f) spread onto the H x W grid (entry      \
       (i, j) at (i * stride_h, j * stride_w)), the adjoint of `sums`; and totals (5, C, F), zero-initialised by     \
       the caller, = sums over (b, i, j) of w = grad * scale times d box_sum / d (x_min, x_max, y_min, y_max), and   \
       of w * box_sum. The host code calls it only with a non-empty grad (F >= 1) */                                 \
    static void backward(const at::Tensor& input, const at::Tensor& grad, const std::vector<at::Tensor>& edges,      \
                         const std::vector<at::Tensor>& mirrored, const at::Tensor& scale, at::Tensor& grad_input,   \
                         at::Tensor& totals, int stride_h, int stride_w, bool exact);                                \
  };

FARCONV_DECLARE_BOX_BACKEND(CpuBackend, c10::DeviceType::CPU)
FARCONV_DECLARE_BOX_BACKEND(CudaBackend, c10::DeviceType::CUDA)

#undef FARCONV_DECLARE_BOX_BACKEND

}  // namespace box
}  // namespace farconv
