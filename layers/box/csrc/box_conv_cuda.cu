// CUDA kernels of the box convolution. One thread per output value for the box sums; for
// the box gradients, one block row per box, a block reduction, then one atomic add per
// block and edge. Integral images are fp32 (fp64 for fp64 inputs).
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "box_conv.h"
#include "box_conv_backends.h"

namespace farconv {
namespace box {
namespace {

constexpr int kThreads = 256;
constexpr int64_t kMaxBlocks = 65535;

// Typed views of the (C, F) box edges: row range [r_lo, r_hi), column range [c_lo, c_hi).
template <typename acc_t>
struct Edges {
  const acc_t* __restrict__ r_lo;
  const acc_t* __restrict__ r_hi;
  const acc_t* __restrict__ c_lo;
  const acc_t* __restrict__ c_hi;
};

template <typename acc_t>
Edges<acc_t> edges_of(const std::vector<at::Tensor>& edges) {
  return {edges[0].data_ptr<acc_t>(), edges[1].data_ptr<acc_t>(), edges[2].data_ptr<acc_t>(),
          edges[3].data_ptr<acc_t>()};
}

// ATen's scans are fast on the GPU: accumulate in out's dtype, then pad with zeros.
void integral_image_into(const at::Tensor& input, at::Tensor& out) {
  const int64_t H = input.size(-2), W = input.size(-1);
  out.select(-2, 0).zero_();
  out.select(-1, 0).zero_();
  out.narrow(-2, 1, H).narrow(-1, 1, W).copy_(input.to(out.scalar_type()).cumsum(-1).cumsum(-2));
}

int blocks_for(int64_t work) { return static_cast<int>(std::min<int64_t>((work + kThreads - 1) / kThreads, kMaxBlocks)); }

template <typename acc_t, bool EXACT>
__global__ void sums_kernel(const acc_t* __restrict__ integral, Edges<acc_t> e, const acc_t* __restrict__ scale,
                            acc_t* __restrict__ out, int64_t total, int64_t C, int64_t F, int H, int W, int stride_h,
                            int stride_w, int out_h, int out_w) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(index % out_w);
    const int i = static_cast<int>((index / out_w) % out_h);
    const int64_t plane = index / (static_cast<int64_t>(out_w) * out_h);  // (b * C + c) * F + f
    const int64_t box = plane % (C * F);
    const acc_t* S = integral + (plane / F) * plane_size;
    const acc_t row = acc_t(i * stride_h), column = acc_t(j * stride_w);
    out[index] = scale[box] * box_sum<acc_t, EXACT>(S, H, W, row + e.r_lo[box], row + e.r_hi[box],
                                                    column + e.c_lo[box], column + e.c_hi[box]);
  }
}

// The adjoint of sums_kernel over the integral images of the spread gradient planes.
template <typename acc_t, bool EXACT>
__global__ void transposed_sums_kernel(const acc_t* __restrict__ integral, Edges<acc_t> e,
                                    const acc_t* __restrict__ scale, acc_t* __restrict__ out, int64_t total, int64_t C,
                                    int64_t F, int H, int W) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < total;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int j = static_cast<int>(index % W);
    const int i = static_cast<int>((index / W) % H);
    const int64_t plane = index / (static_cast<int64_t>(W) * H);  // b * C + c
    acc_t value = 0;
    for (int64_t f = 0; f < F; ++f) {
      const int64_t box = (plane % C) * F + f;
      const acc_t* S = integral + (plane * F + f) * plane_size;
      value += scale[box] * box_sum<acc_t, EXACT>(S, H, W, acc_t(i) + e.r_lo[box], acc_t(i) + e.r_hi[box],
                                                  acc_t(j) + e.c_lo[box], acc_t(j) + e.c_hi[box]);
    }
    out[index] = value;
  }
}

// grid: (boxes, chunks); each block sums its chunk of (b, i, j) for one box.
template <typename acc_t, bool EXACT>
__global__ void slopes_kernel(const acc_t* __restrict__ integral, Edges<acc_t> e, const acc_t* __restrict__ grad,
                              const acc_t* __restrict__ scale, acc_t* __restrict__ out, int64_t B, int64_t C, int64_t F,
                              int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  constexpr int kTotals = 5;  // four edge derivatives and the box sum itself
  __shared__ acc_t partial[kTotals][kThreads];
  const int64_t box = blockIdx.x;
  const int64_t boxes = C * F;
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  const int64_t pixels = static_cast<int64_t>(out_h) * out_w;
  acc_t totals[kTotals] = {0, 0, 0, 0, 0};
  for (int64_t index = blockIdx.y * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < B * pixels;
       index += static_cast<int64_t>(gridDim.y) * blockDim.x) {
    const int64_t b = index / pixels;
    const int i = static_cast<int>((index % pixels) / out_w), j = static_cast<int>(index % out_w);
    const acc_t* S = integral + (b * C + box / F) * plane_size;
    const acc_t weight = grad[(b * boxes + box) * pixels + index % pixels] * scale[box];
    const acc_t row = acc_t(i * stride_h), column = acc_t(j * stride_w);
    const acc_t r_lo = row + e.r_lo[box], r_hi = row + e.r_hi[box];
    const acc_t c_lo = column + e.c_lo[box], c_hi = column + e.c_hi[box];
    accumulate_edge_slopes<acc_t, EXACT>(S, H, W, r_lo, r_hi, c_lo, c_hi, weight, totals);
    totals[4] += weight * box_sum<acc_t, EXACT>(S, H, W, r_lo, r_hi, c_lo, c_hi);
  }
  for (int k = 0; k < kTotals; ++k) partial[k][threadIdx.x] = totals[k];
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {
    if (threadIdx.x < half) {
      for (int k = 0; k < kTotals; ++k) partial[k][threadIdx.x] += partial[k][threadIdx.x + half];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    for (int k = 0; k < kTotals; ++k) atomicAdd(out + k * boxes + box, partial[k][0]);
  }
}

// The integral images of input's (B, C, H, W) planes, (B, C, H + 1, W + 1) in the dtype of `like`.
at::Tensor integral_image(const at::Tensor& input, const at::Tensor& like) {
  auto integral = at::empty({input.size(0), input.size(1), input.size(2) + 1, input.size(3) + 1}, like.options());
  integral_image_into(input, integral);
  return integral;
}

// grad_input = the adjoint of the box sums: the box sums of each spread gradient plane over
// its mirrored box, summed over the filters.
void transposed_sums(const at::Tensor& grad, const std::vector<at::Tensor>& mirrored, const at::Tensor& scale,
                     at::Tensor& grad_input, int stride_h, int stride_w, bool exact) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t B = grad_input.size(0), C = grad_input.size(1), F = scale.size(1), H = grad_input.size(2),
                W = grad_input.size(3);
  // Spread each gradient plane onto the H x W grid, then integrate (ATen's scans are fast here).
  auto spread = at::zeros({B, C, F, H, W}, grad.options());
  spread.slice(3, 0, H, stride_h).slice(4, 0, W, stride_w).copy_(grad.view({B, C, F, grad.size(2), grad.size(3)}));
  auto integral = at::empty({B, C, F, H + 1, W + 1}, grad.options());
  integral_image_into(spread, integral);
  const int64_t total = grad_input.numel();
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_transposed_cuda", [&] {
    auto kernel = exact ? transposed_sums_kernel<scalar_t, true> : transposed_sums_kernel<scalar_t, false>;
    kernel<<<blocks_for(total), kThreads, 0, stream>>>(
        integral.data_ptr<scalar_t>(), edges_of<scalar_t>(mirrored), scale.data_ptr<scalar_t>(),
        grad_input.data_ptr<scalar_t>(), total, integral.size(1), integral.size(2), integral.size(3) - 1,
        integral.size(4) - 1);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// totals += the box gradients' sums (see CudaBackend::backward).
void slopes(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& grad,
            const at::Tensor& scale, at::Tensor& totals, int stride_h, int stride_w, bool exact) {
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor integral = integral_image(input, scale);
  const int64_t boxes = edges[0].numel();
  const int64_t work = grad.size(0) * grad.size(2) * grad.size(3);
  // Enough blocks per box to fill the GPU, few enough to keep the atomics rare.
  const int chunks = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(blocks_for(work), 1024 / std::max<int64_t>(1, boxes / 64))));
  const dim3 grid(static_cast<unsigned>(boxes), static_cast<unsigned>(chunks));
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_slopes_cuda", [&] {
    auto kernel = exact ? slopes_kernel<scalar_t, true> : slopes_kernel<scalar_t, false>;
    kernel<<<grid, kThreads, 0, stream>>>(integral.data_ptr<scalar_t>(), edges_of<scalar_t>(edges),
                                          grad.data_ptr<scalar_t>(), scale.data_ptr<scalar_t>(),
                                          totals.data_ptr<scalar_t>(), integral.size(0), integral.size(1),
                                          edges[0].size(1), integral.size(2) - 1, integral.size(3) - 1, stride_h,
                                          stride_w, grad.size(2), grad.size(3));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace

void CudaBackend::sums(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                       at::Tensor& out, int stride_h, int stride_w, bool exact) {
  const c10::cuda::CUDAGuard guard(input.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor integral = integral_image(input, scale);
  const int64_t total = out.numel();
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_cuda", [&] {
    auto kernel = exact ? sums_kernel<scalar_t, true> : sums_kernel<scalar_t, false>;
    kernel<<<blocks_for(total), kThreads, 0, stream>>>(
        integral.data_ptr<scalar_t>(), edges_of<scalar_t>(edges), scale.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        total, integral.size(1), scale.size(1), integral.size(2) - 1, integral.size(3) - 1, stride_h, stride_w,
        out.size(2), out.size(3));
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void CudaBackend::backward(const at::Tensor& input, const at::Tensor& grad, const std::vector<at::Tensor>& edges,
                           const std::vector<at::Tensor>& mirrored, const at::Tensor& scale, at::Tensor& grad_input,
                           at::Tensor& totals, int stride_h, int stride_w, bool exact) {
  const c10::cuda::CUDAGuard guard(input.device());
  if (grad_input.defined()) transposed_sums(grad, mirrored, scale, grad_input, stride_h, stride_w, exact);
  if (totals.defined()) slopes(input, edges, grad, scale, totals, stride_h, stride_w, exact);
}

}  // namespace box
}  // namespace farconv
