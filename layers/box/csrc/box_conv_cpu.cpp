// CPU kernels of the box convolution, multi-threaded with at::parallel_for.
//
// They work a row at a time. For output row i the two horizontal box edges fall at fixed
// positions of the integral image S, so P(r_hi, .) - P(r_lo, .) is one "virtual row" of
// W + 1 values, a blend of (at most) four rows of S computed in one vectorisable pass;
// every output of the row is then two linear interpolations of it. Along a row, an edge
// at column j * stride + c reads the virtual row at a fixed offset with a fixed fraction
// wherever it lies inside the image, and a constant (its first or last value) where it is
// clamped, so each edge is three runs of straight-line, vectorisable arithmetic.
// Coordinate gradients reduce the same way: a row slope is the difference of two rows of
// S, dotted with the output gradients scattered onto the prefix columns; a column slope is
// a difference of two entries of the virtual row. The input gradient integrates one gradient plane at a
// time into a per-thread buffer. Cost per output: a handful of operations, whatever the
// box size.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <vector>

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

// Where one vertical box edge, at column position j * stride + c of a virtual row of W + 1
// values, falls for the outputs j = 0 .. out_w - 1: clamped to value 0 for j < begin, at
// cell j * stride + offset with `fraction` for begin <= j < end, clamped to value W after
// (the rule of `locate`, which gives the same values at the run boundaries).
template <typename acc_t>
struct EdgeRuns {
  int begin, end, offset;
  acc_t fraction;

  EdgeRuns(acc_t c, int W, int stride, int out_w) {
    const acc_t cell = std::floor(c);
    offset = static_cast<int>(cell);
    fraction = c - cell;
    begin = 0;
    while (begin < out_w && acc_t(begin * stride) + c < acc_t(0)) ++begin;
    end = begin;
    while (end < out_w && acc_t(end * stride) + c < acc_t(W)) ++end;  // floor < W: cell + 1 <= W
  }

  // out[j] += sign * scale * (the virtual row `row` interpolated at this edge), j < out_w.
  void add_to(const acc_t* __restrict row, int W, int stride, int out_w, acc_t weight, acc_t* __restrict out) const {
    const acc_t first = weight * row[0], last = weight * row[W];
    for (int j = 0; j < begin; ++j) out[j] += first;
    const acc_t low = weight * (1 - fraction), high = weight * fraction;
    if (stride == 1) {
      const acc_t* __restrict at = row + offset;
      for (int j = begin; j < end; ++j) out[j] += low * at[j] + high * at[j + 1];
    } else {
      for (int j = begin; j < end; ++j) {
        const int k = j * stride + offset;
        out[j] += low * row[k] + high * row[k + 1];
      }
    }
    for (int j = end; j < out_w; ++j) out[j] += last;
  }

  // The adjoint of the interpolation: scattered[l] += sign * w[j] * (weight of entry l at this edge).
  void scatter(int W, int stride, int out_w, const acc_t* __restrict w, acc_t sign, acc_t* __restrict scattered) const {
    acc_t before = 0, after = 0;
    for (int j = 0; j < begin; ++j) before += w[j];
    for (int j = end; j < out_w; ++j) after += w[j];
    scattered[0] += sign * before;
    scattered[W] += sign * after;
    const acc_t low = sign * (1 - fraction), high = sign * fraction;
    if (stride == 1) {
      acc_t* __restrict at = scattered + offset;
      for (int j = begin; j < end; ++j) at[j] += low * w[j];
      for (int j = begin; j < end; ++j) at[j + 1] += high * w[j];
    } else {
      for (int j = begin; j < end; ++j) {
        const int k = j * stride + offset;
        scattered[k] += low * w[j];
        scattered[k + 1] += high * w[j];
      }
    }
  }
};

// One box, as the per-row work sees it, with buffers reused from row to row.
template <typename acc_t>
struct BoxRows {
  const acc_t* S;  // integral image plane, (H + 1) x (W + 1)
  int H, W, stride_h, out_w;
  acc_t r_lo, r_hi;
  int stride_w;
  std::vector<Taps<acc_t>> left, right;  // where each output column's box edges fall
  EdgeRuns<acc_t> left_runs, right_runs;  // the same, as runs (for the box sums)
  std::vector<acc_t> row;                // the virtual row of the current output row

  BoxRows(const acc_t* plane, int H, int W, acc_t r_lo, acc_t r_hi, acc_t c_lo, acc_t c_hi, int stride_h, int stride_w,
          int out_w)
      : S(plane), H(H), W(W), stride_h(stride_h), out_w(out_w), r_lo(r_lo), r_hi(r_hi), stride_w(stride_w), left(out_w),
        right(out_w), left_runs(c_lo, W, stride_w, out_w), right_runs(c_hi, W, stride_w, out_w), row(W + 1) {
    for (int j = 0; j < out_w; ++j) {
      left[j] = locate(acc_t(j * stride_w) + c_lo, W);
      right[j] = locate(acc_t(j * stride_w) + c_hi, W);
    }
  }

  const acc_t* line(int r) const { return S + static_cast<int64_t>(r) * (W + 1); }

  // row[l] = P(i s + r_hi, l) - P(i s + r_lo, l) for every prefix column l.
  void combine(int i) {
    const Taps<acc_t> top = locate(acc_t(i * stride_h) + r_lo, H);
    const Taps<acc_t> bottom = locate(acc_t(i * stride_h) + r_hi, H);
    const acc_t *__restrict t0 = line(top.cell), *__restrict t1 = line(top.cell + 1);
    const acc_t *__restrict b0 = line(bottom.cell), *__restrict b1 = line(bottom.cell + 1);
    const acc_t ft = top.fraction, fb = bottom.fraction;
    acc_t* __restrict virtual_row = row.data();
    for (int l = 0; l <= W; ++l) {
      virtual_row[l] = (b0[l] + fb * (b1[l] - b0[l])) - (t0[l] + ft * (t1[l] - t0[l]));
    }
  }

  // The box sums of output row i, times `scale`, written to or added onto `out`.
  template <bool ACCUMULATE>
  void sums(int i, acc_t scale, acc_t* out) {
    combine(i);
    if (!ACCUMULATE) std::fill(out, out + out_w, acc_t(0));
    right_runs.add_to(row.data(), W, stride_w, out_w, scale, out);
    left_runs.add_to(row.data(), W, stride_w, out_w, -scale, out);
  }
};

// Independent partial sums of a reduction: one running sum waits on the adder's latency at
// every element; this many can proceed (and vectorise) together.
constexpr int kPartialSums = 8;

template <typename acc_t>
acc_t dot(const acc_t* __restrict a, const acc_t* __restrict b, int n) {
  acc_t partial[kPartialSums] = {};
  int l = 0;
  for (; l + kPartialSums <= n; l += kPartialSums) {
    for (int k = 0; k < kPartialSums; ++k) partial[k] += a[l + k] * b[l + k];
  }
  acc_t total = 0;
  for (; l < n; ++l) total += a[l] * b[l];
  for (int k = 0; k < kPartialSums; ++k) total += partial[k];
  return total;
}

// Rows of a plane whose running sums advance together: one running sum is a chain of
// dependent additions, so a single row waits on the adder's latency at every pixel, while
// this many independent chains keep it busy.
constexpr int kInterleavedRows = 8;

// The zero-padded integral image S ((H + 1) x (W + 1)) of one H x W plane.
template <typename scalar_t, typename acc_t>
void integrate_plane(const scalar_t* x, acc_t* S, int H, int W) {
  std::fill(S, S + W + 1, acc_t(0));
  // Row prefix sums, kInterleavedRows rows at a time, written to rows 1..H of S.
  for (int first = 0; first < H; first += kInterleavedRows) {
    const int rows = std::min(kInterleavedRows, H - first);
    acc_t running[kInterleavedRows] = {};
    for (int k = 0; k < rows; ++k) S[(first + k + 1) * static_cast<int64_t>(W + 1)] = 0;
    for (int c = 0; c < W; ++c) {
      for (int k = 0; k < rows; ++k) {
        running[k] += static_cast<acc_t>(x[(first + k) * static_cast<int64_t>(W) + c]);
        S[(first + k + 1) * static_cast<int64_t>(W + 1) + c + 1] = running[k];
      }
    }
  }
  // Column sums: each row adds the one above it (vectorisable along the row).
  for (int r = 1; r < H; ++r) {
    const acc_t* __restrict above = S + r * static_cast<int64_t>(W + 1);
    acc_t* __restrict current = S + (r + 1) * static_cast<int64_t>(W + 1);
    for (int l = 1; l <= W; ++l) current[l] += above[l];
  }
}

template <typename scalar_t, typename acc_t>
void integral_kernel(const scalar_t* input, acc_t* out, int64_t planes, int H, int W) {
  at::parallel_for(0, planes, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {
      integrate_plane(input + plane * H * W, out + plane * (H + 1) * (W + 1), H, W);
    }
  });
}

template <typename acc_t>
void sums_kernel(const acc_t* integral, Edges<acc_t> e, const acc_t* scale, acc_t* out, int64_t B, int64_t C,
                 int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  at::parallel_for(0, B * C * F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t plane = begin; plane < end; ++plane) {  // (b * C + c) * F + f
      const int64_t box = plane % (C * F);
      BoxRows<acc_t> rows(integral + (plane / F) * plane_size, H, W, e.r_lo[box], e.r_hi[box], e.c_lo[box],
                          e.c_hi[box], stride_h, stride_w, out_w);
      for (int i = 0; i < out_h; ++i) rows.template sums<false>(i, scale[box], out + (plane * out_h + i) * out_w);
    }
  });
}

// Integral image of a gradient plane (out_h x out_w) spread onto the H x W grid, where entry
// (i, j) sits at (i * stride_h, j * stride_w) and every other pixel is zero.
template <typename acc_t>
void integrate_spread(const acc_t* grad, int out_w, int stride_h, int stride_w, int H, int W, acc_t* S) {
  if (stride_h == 1 && stride_w == 1) {  // nothing to spread: the plane itself, rows interleaved
    integrate_plane(grad, S, H, W);
    return;
  }
  std::fill(S, S + W + 1, acc_t(0));
  for (int r = 0; r < H; ++r) {
    const acc_t* above = S + static_cast<int64_t>(r) * (W + 1);
    acc_t* current = S + static_cast<int64_t>(r + 1) * (W + 1);
    const acc_t* source = r % stride_h == 0 ? grad + static_cast<int64_t>(r / stride_h) * out_w : nullptr;
    acc_t running = 0;
    current[0] = 0;
    for (int c = 0; c < W; ++c) {
      if (source != nullptr && c % stride_w == 0) running += source[c / stride_w];
      current[c + 1] = above[c + 1] + running;
    }
  }
}

template <typename acc_t>
void transposed_sums_kernel(const acc_t* grad, Edges<acc_t> e, const acc_t* scale, acc_t* out, int64_t B, int64_t C,
                            int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> integral(static_cast<int64_t>(H + 1) * (W + 1));  // one gradient plane at a time
    for (int64_t plane = begin; plane < end; ++plane) {  // b * C + c
      acc_t* o = out + plane * H * W;
      std::fill(o, o + static_cast<int64_t>(H) * W, acc_t(0));
      for (int64_t f = 0; f < F; ++f) {
        const int64_t box = (plane % C) * F + f;
        integrate_spread(grad + (plane * F + f) * out_h * out_w, out_w, stride_h, stride_w, H, W, integral.data());
        BoxRows<acc_t> rows(integral.data(), H, W, e.r_lo[box], e.r_hi[box], e.c_lo[box], e.c_hi[box], 1, 1, W);
        for (int i = 0; i < H; ++i) rows.template sums<true>(i, scale[box], o + i * W);
      }
    }
  });
}

template <typename acc_t>
void slopes_kernel(const acc_t* integral, Edges<acc_t> e, const acc_t* grad, const acc_t* scale, acc_t* out, int64_t B,
                   int64_t C, int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t plane_size = static_cast<int64_t>(H + 1) * (W + 1);
  const int64_t boxes = C * F;
  at::parallel_for(0, boxes, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scattered(W + 1);  // output gradients spread onto the prefix columns
    std::vector<int> left_slope(out_w), right_slope(out_w);
    std::vector<acc_t> w(out_w);  // grad * scale of one output row
    std::vector<acc_t> sums(out_w);  // the box sums of one output row
    for (int64_t box = begin; box < end; ++box) {
      for (int j = 0; j < out_w; ++j) {
        left_slope[j] = slope_cell(acc_t(j * stride_w) + e.c_lo[box], W, false);
        right_slope[j] = slope_cell(acc_t(j * stride_w) + e.c_hi[box], W, true);
      }
      double totals[5] = {0, 0, 0, 0, 0};  // one box per task: no races; double for long sums
      for (int64_t b = 0; b < B; ++b) {
        BoxRows<acc_t> rows(integral + (b * C + box / F) * plane_size, H, W, e.r_lo[box], e.r_hi[box], e.c_lo[box],
                            e.c_hi[box], stride_h, stride_w, out_w);
        const acc_t* g = grad + (b * boxes + box) * out_h * out_w;
        for (int i = 0; i < out_h; ++i, g += out_w) {
          std::fill(scattered.begin(), scattered.end(), acc_t(0));
          acc_t column_terms[2] = {0, 0};
          rows.combine(i);
          const acc_t* row = rows.row.data();
          for (int j = 0; j < out_w; ++j) w[j] = g[j] * scale[box];
          // the box sums themselves first (as the forward forms them), then weighted: a difference
          // of the two edges' weighted totals would cancel away float32's digits
          std::fill(sums.begin(), sums.end(), acc_t(0));
          rows.right_runs.add_to(row, W, stride_w, out_w, acc_t(1), sums.data());
          rows.left_runs.add_to(row, W, stride_w, out_w, acc_t(-1), sums.data());
          const acc_t weighted_sums = dot(w.data(), sums.data(), out_w);
          rows.right_runs.scatter(W, stride_w, out_w, w.data(), acc_t(1), scattered.data());
          rows.left_runs.scatter(W, stride_w, out_w, w.data(), acc_t(-1), scattered.data());
          for (int j = 0; j < out_w; ++j) {
            if (left_slope[j] >= 0) column_terms[0] += w[j] * (row[left_slope[j] + 1] - row[left_slope[j]]);
            if (right_slope[j] >= 0) column_terms[1] += w[j] * (row[right_slope[j] + 1] - row[right_slope[j]]);
          }
          const int top = slope_cell(acc_t(i * stride_h) + e.r_lo[box], H, false);
          const int bottom = slope_cell(acc_t(i * stride_h) + e.r_hi[box], H, true);
          if (top >= 0) {
            totals[0] -= dot(rows.line(top + 1), scattered.data(), W + 1) - dot(rows.line(top), scattered.data(), W + 1);
          }
          if (bottom >= 0) {
            totals[1] += dot(rows.line(bottom + 1), scattered.data(), W + 1) - dot(rows.line(bottom), scattered.data(), W + 1);
          }
          totals[2] -= column_terms[0];
          totals[3] += column_terms[1];
          totals[4] += weighted_sums;
        }
      }
      for (int k = 0; k < 5; ++k) out[k * boxes + box] = static_cast<acc_t>(totals[k]);
    }
  });
}

}  // namespace

void CpuBackend::integral(const at::Tensor& input, at::Tensor& out) {
  const int H = input.size(-2), W = input.size(-1);
  const int64_t planes = H * W > 0 ? input.numel() / (static_cast<int64_t>(H) * W) : 0;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "integral_image_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    integral_kernel<scalar_t, acc_t>(input.data_ptr<scalar_t>(), out.data_ptr<acc_t>(), planes, H, W);
  });
}

// The rounded boxes of `exact = false` have integer edges, where the interpolation reads
// exactly the rounded values, so the CPU kernels need no separate inexact path.
void CpuBackend::sums(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                      at::Tensor& out, int stride_h, int stride_w, bool /*exact*/) {
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_sums_cpu", [&] {
    sums_kernel<scalar_t>(integral.data_ptr<scalar_t>(), Edges<scalar_t>(edges), scale.data_ptr<scalar_t>(),
                          out.data_ptr<scalar_t>(), integral.size(0), integral.size(1), scale.size(1),
                          integral.size(2) - 1, integral.size(3) - 1, stride_h, stride_w, out.size(2), out.size(3));
  });
}

void CpuBackend::transposed_sums(const at::Tensor& grad, const std::vector<at::Tensor>& edges,
                                 const at::Tensor& scale, at::Tensor& out, int stride_h, int stride_w, bool /*exact*/) {
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "box_sums_transposed_cpu", [&] {
    transposed_sums_kernel<scalar_t>(grad.data_ptr<scalar_t>(), Edges<scalar_t>(edges), scale.data_ptr<scalar_t>(),
                                     out.data_ptr<scalar_t>(), out.size(0), out.size(1), scale.size(1), out.size(2),
                                     out.size(3), stride_h, stride_w, grad.size(2), grad.size(3));
  });
}

void CpuBackend::slopes(const at::Tensor& integral, const std::vector<at::Tensor>& edges, const at::Tensor& grad,
                        const at::Tensor& scale, at::Tensor& out, int stride_h, int stride_w, bool /*exact*/) {
  AT_DISPATCH_FLOATING_TYPES(integral.scalar_type(), "box_slopes_cpu", [&] {
    slopes_kernel<scalar_t>(integral.data_ptr<scalar_t>(), Edges<scalar_t>(edges), grad.data_ptr<scalar_t>(),
                            scale.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), integral.size(0), integral.size(1),
                            edges[0].size(1), integral.size(2) - 1, integral.size(3) - 1, stride_h, stride_w,
                            grad.size(2), grad.size(3));
  });
}

}  // namespace box
}  // namespace farconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "farconv box convolution, CPU kernels";
  farconv::box::bind<farconv::box::CpuBackend>(m);
}
