// CPU kernels of the box convolution, multi-threaded with at::parallel_for.
//
// They work a row at a time. For output row i the two horizontal box edges fall at fixed
// positions of the integral image S, so P(r_hi, .) - P(r_lo, .) is one "virtual row" of
// W + 1 values, a blend of (at most) four rows of S computed in one vectorisable pass;
// every output of the row is then the difference of two linear interpolations of it. Along
// a row, an edge at column j * stride + c reads the virtual row at a fixed offset with a
// fixed fraction wherever it lies inside the image, and a constant (its first or last value)
// where it is clamped; the row's outputs are cut into a few segments over which both edges
// keep their state, and each segment is one straight-line, vectorisable loop.
// Coordinate gradients reduce the same way, in one pass per segment: a column slope is a
// difference of two neighbouring entries of the virtual row, a row slope the box's sum
// across one row of the image (a difference of two rows of S, interpolated at the two
// edges like the virtual row). Each thread integrates one input or gradient plane at a time
// into its own buffer, read by the boxes of that plane while it is in cache (at the benchmarked
// shapes; a plane of a few MB spills to memory), and the backward does the box gradients and the
// input gradient of a gradient plane back to back, so it reads each plane from memory once.
// Cost per output: a handful of operations, whatever the box size.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <type_traits>
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

// How a moving edge reads a virtual row: output j interpolates cells j * stride + offset and
// the next one with `fraction`; its one-sided slope cell (the rule of `slope_cell`: right of
// an upper edge, left of a lower one, so for a lower edge on a grid line the cell before it)
// is j * stride + offset + slope_shift.
template <typename acc_t>
struct Run {
  int offset;
  acc_t fraction;
  int slope_shift;

  Run(int offset, acc_t fraction, bool upper_edge)
      : offset(offset), fraction(fraction), slope_shift(upper_edge || fraction > acc_t(0) ? 0 : -1) {}

  // The virtual row `row` read by this run for the output at `column` (= j * stride).
  acc_t at(const acc_t* row, int column) const { return lerp(row, 1, Taps<acc_t>{column + offset, fraction}); }
};

// Where one vertical box edge, at column position p_j = j * stride + c of a virtual row of
// W + 1 values (p_j rounded to acc_t, as the reference computes it), falls for the outputs
// j = 0 .. out_w - 1: clamped to value 0 for j < begin (p_j < 0), moving along the row for
// begin <= j < end, clamped to value W after (p_j >= W), the rule of `locate`, which gives
// the same values at the run boundaries. A moving edge reads the row by `exact`
// (offset floor(c), fraction c - floor(c)) up to `snap` and by `snapped` from there: where
// the spacing of acc_t at p_j exceeds twice the distance from c to a whole number, p_j
// rounds to a whole number, and the reference then takes that cell with fraction 0 (which
// moves a slope cell by one; once it happens it happens for every larger j, the spacing only
// growing). The edge has a slope cell for slope_begin <= j < slope_end: all of its moving
// outputs except a lower edge exactly on column 0, plus a lower edge exactly on column W.
template <typename acc_t>
struct EdgeRuns {
  int begin, end, snap, slope_begin, slope_end;
  Run<acc_t> exact, snapped;

  EdgeRuns(acc_t c, int W, int stride, int out_w, bool upper_edge)
      : exact(static_cast<int>(std::floor(c)), c - std::floor(c), upper_edge),
        snapped(exact.offset + (exact.fraction > acc_t(0.5) ? 1 : 0), acc_t(0), upper_edge) {
    const auto position = [&](int j) { return acc_t(j * stride) + c; };
    begin = 0;
    while (begin < out_w && position(begin) < acc_t(0)) ++begin;
    end = begin;
    while (end < out_w && position(end) < acc_t(W)) ++end;  // floor < W: cell + 1 <= W
    snap = begin;
    if (exact.fraction > acc_t(0)) {
      while (snap < end && position(snap) != std::floor(position(snap))) ++snap;
    } else {
      snap = end;  // whole positions stay whole
    }
    const bool lower_edge = !upper_edge;
    slope_begin = begin + (lower_edge && begin < end && position(begin) == acc_t(0) ? 1 : 0);
    slope_end = end + (lower_edge && end < out_w && position(end) == acc_t(W) ? 1 : 0);
  }

  const Run<acc_t>& run(int j) const { return j < snap ? exact : snapped; }
  bool moves(int j) const { return j >= begin && j < end; }
  bool slopes(int j) const { return j >= slope_begin && j < slope_end; }

  // The slope cell of output j, -1 if it has none.
  int slope_cell_at(int W, int stride, int j) const {
    if (!slopes(j)) return -1;
    return j >= end ? W - 1 : j * stride + run(j).offset + run(j).slope_shift;
  }

  // The virtual row `row` interpolated at this edge for output j.
  acc_t at(const acc_t* row, int W, int stride, int j) const {
    if (j < begin) return row[0];
    if (j >= end) return row[W];
    return run(j).at(row, j * stride);
  }
};

// A stretch of outputs over which each edge either moves along the virtual rows (inside its
// value run, and its slope run where slopes are wanted) or stays fixed at their first or last
// entry (outside both): there every output reads the same blend of entries, at a fixed offset
// from its own column, and one vectorisable loop does them all. Where an edge moves without a
// slope cell or the reverse (one output at most: a lower edge exactly on column 0 or W), the
// segment is not `uniform` and is done output by output; without slopes every segment is.
struct Segment {
  int begin, end;
  bool uniform, left_moves, right_moves;
};

// The outputs 0 .. out_w - 1 cut wherever either edge enters or leaves a value run (and, with
// `with_slopes`, a slope run).
template <typename acc_t>
std::vector<Segment> segments(const EdgeRuns<acc_t>& left, const EdgeRuns<acc_t>& right, int out_w, bool with_slopes) {
  std::vector<int> cuts = {0, out_w, left.begin, left.snap, left.end, right.begin, right.snap, right.end};
  if (with_slopes) cuts.insert(cuts.end(), {left.slope_begin, left.slope_end, right.slope_begin, right.slope_end});
  for (int& cut : cuts) cut = std::min(std::max(cut, 0), out_w);
  std::sort(cuts.begin(), cuts.end());
  cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
  std::vector<Segment> result;
  for (size_t k = 0; k + 1 < cuts.size(); ++k) {
    const int j = cuts[k];
    const bool uniform = !with_slopes || (left.moves(j) == left.slopes(j) && right.moves(j) == right.slopes(j));
    result.push_back({j, cuts[k + 1], uniform, left.moves(j), right.moves(j)});
  }
  return result;
}

// Calls visit(segment, left_moves, right_moves, unit_stride) for every segment, the flags as
// std::integral_constant, so that each combination gets its own compiled loop (a unit stride
// reads contiguous entries, which vectorise).
template <typename Visit>
void visit_segments(const std::vector<Segment>& cuts, int stride, Visit&& visit) {
  const auto with_stride = [&](const Segment& segment, auto left_moves, auto right_moves) {
    if (stride == 1) {
      visit(segment, left_moves, right_moves, std::true_type{});
    } else {
      visit(segment, left_moves, right_moves, std::false_type{});
    }
  };
  for (const Segment& segment : cuts) {
    if (segment.left_moves && segment.right_moves) {
      with_stride(segment, std::true_type{}, std::true_type{});
    } else if (segment.left_moves) {
      with_stride(segment, std::true_type{}, std::false_type{});
    } else if (segment.right_moves) {
      with_stride(segment, std::false_type{}, std::true_type{});
    } else {
      with_stride(segment, std::false_type{}, std::false_type{});
    }
  }
}

// One edge of a uniform segment, as its loop reads a virtual row: the blend of entries
// offset + column and offset + column + 1 when it moves, else the fixed entry.
template <typename acc_t, bool MOVES>
struct SegmentEdge {
  Run<acc_t> reading;
  int fixed;

  SegmentEdge(const EdgeRuns<acc_t>& runs, const Segment& segment, int W)
      : reading(runs.run(segment.begin)), fixed(segment.begin < runs.begin ? 0 : W) {}

  acc_t at(const acc_t* __restrict row, int column) const { return MOVES ? reading.at(row, column) : row[fixed]; }

  // The slope cell's offset from the column (meaningful when the edge moves).
  int slope_offset() const { return reading.offset + reading.slope_shift; }
};

// One box, as the per-row work sees it, with buffers reused from row to row.
template <typename acc_t>
struct BoxRows {
  const acc_t* S;  // integral image plane, (H + 1) x (W + 1)
  int H, W, stride_h, out_w;
  acc_t r_lo, r_hi;
  int stride_w;
  EdgeRuns<acc_t> left_runs, right_runs;  // where each output column's box edges fall
  std::vector<Segment> cuts;              // the box sums' segments of an output row
  std::vector<acc_t> row;                 // the virtual row of the current output row

  BoxRows(const acc_t* plane, int H, int W, acc_t r_lo, acc_t r_hi, acc_t c_lo, acc_t c_hi, int stride_h, int stride_w,
          int out_w)
      : S(plane), H(H), W(W), stride_h(stride_h), out_w(out_w), r_lo(r_lo), r_hi(r_hi), stride_w(stride_w),
        left_runs(c_lo, W, stride_w, out_w, false), right_runs(c_hi, W, stride_w, out_w, true),
        cuts(segments(left_runs, right_runs, out_w, false)), row(W + 1) {}

  const acc_t* line(int r) const { return S + static_cast<int64_t>(r) * (W + 1); }

  // The rows of S that output row i's two row edges interpolate, and their fractions.
  struct RowEdges {
    Taps<acc_t> top, bottom;
    const acc_t *t0, *t1, *b0, *b1;
  };

  RowEdges row_edges(int i) const {
    const Taps<acc_t> top = locate(acc_t(i * stride_h) + r_lo, H);
    const Taps<acc_t> bottom = locate(acc_t(i * stride_h) + r_hi, H);
    return {top, bottom, line(top.cell), line(top.cell + 1), line(bottom.cell), line(bottom.cell + 1)};
  }

  // row[l] = P(i s + r_hi, l) - P(i s + r_lo, l) for every prefix column l.
  void combine(int i) {
    const RowEdges edges = row_edges(i);
    const acc_t *__restrict t0 = edges.t0, *__restrict t1 = edges.t1, *__restrict b0 = edges.b0, *__restrict b1 = edges.b1;
    const acc_t ft = edges.top.fraction, fb = edges.bottom.fraction;
    acc_t* __restrict virtual_row = row.data();
    for (int l = 0; l <= W; ++l) {
      virtual_row[l] = (b0[l] + fb * (b1[l] - b0[l])) - (t0[l] + ft * (t1[l] - t0[l]));
    }
  }

  // combine(i) and, in the same pass, the slope rows S(cell + 1, .) - S(cell, .) at top_cell
  // and bottom_cell, when those are the cells the row edges interpolate (an edge strictly
  // inside the image: the usual case); false, doing nothing, otherwise.
  bool combine_with_slopes(int i, int top_cell, int bottom_cell, acc_t* __restrict top_row, acc_t* __restrict bottom_row) {
    const RowEdges edges = row_edges(i);
    if (edges.top.cell != top_cell || edges.bottom.cell != bottom_cell) return false;
    const acc_t *__restrict t0 = edges.t0, *__restrict t1 = edges.t1, *__restrict b0 = edges.b0, *__restrict b1 = edges.b1;
    const acc_t ft = edges.top.fraction, fb = edges.bottom.fraction;
    acc_t* __restrict virtual_row = row.data();
    for (int l = 0; l <= W; ++l) {
      const acc_t top_slope = t1[l] - t0[l], bottom_slope = b1[l] - b0[l];
      virtual_row[l] = (b0[l] + fb * bottom_slope) - (t0[l] + ft * top_slope);
      top_row[l] = top_slope;
      bottom_row[l] = bottom_slope;
    }
    return true;
  }

  // The box sums of output row i, times `scale`, written to (or with ACCUMULATE added onto)
  // out[0 .. out_w - 1]: one pass per segment, right edge minus left edge.
  template <bool ACCUMULATE>
  void sums(int i, acc_t scale, acc_t* __restrict out) {
    combine(i);
    const acc_t* __restrict virtual_row = row.data();
    visit_segments(cuts, stride_w, [&](const Segment& segment, auto left_moves, auto right_moves, auto unit_stride) {
      const SegmentEdge<acc_t, decltype(left_moves)::value> left(left_runs, segment, W);
      const SegmentEdge<acc_t, decltype(right_moves)::value> right(right_runs, segment, W);
      for (int j = segment.begin; j < segment.end; ++j) {
        const int column = decltype(unit_stride)::value ? j : j * stride_w;
        const acc_t value = scale * (right.at(virtual_row, column) - left.at(virtual_row, column));
        out[j] = ACCUMULATE ? out[j] + value : value;
      }
    });
  }
};

// Rows of a plane whose running sums advance together: one running sum is a chain of
// dependent additions, so a single row waits on the adder's latency at every pixel, while
// this many independent chains keep it busy (16 measured faster than 8, 12 or 4 here).
constexpr int kInterleavedRows = 16;

#if defined(__AVX2__)
// Inclusive prefix sums of 8 floats: two shifted additions within each 128-bit half, then
// the low half's total added to the high half.
inline __m256 prefix_sums8(__m256 x) {
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 4)));
  x = _mm256_add_ps(x, _mm256_castsi256_ps(_mm256_slli_si256(_mm256_castps_si256(x), 8)));
  const __m256 half_totals = _mm256_shuffle_ps(x, x, 0xFF);  // each half's last entry, across its half
  return _mm256_add_ps(x, _mm256_permute2f128_ps(half_totals, half_totals, 0x08));  // (0, low half's total)
}

// The float integral image in one pass, a row at a time: S(r + 1, l + 1) = S(r, l + 1) plus the
// prefix sum of x(r, 0 .. l), 8 entries per step (about 3x the two-pass version below here).
inline void integrate_plane_avx2(const float* x, float* S, int H, int W) {
  const int64_t pitch = W + 1;
  std::fill(S, S + pitch, 0.0f);
  const __m256i last = _mm256_set1_epi32(7);
  for (int r = 0; r < H; ++r) {
    const float* source = x + r * static_cast<int64_t>(W);
    const float* above = S + r * pitch + 1;
    float* current = S + (r + 1) * pitch + 1;
    current[-1] = 0;
    __m256 running = _mm256_setzero_ps();  // the row's sum so far, in every entry
    int l = 0;
    for (; l + 8 <= W; l += 8) {
      const __m256 sums = _mm256_add_ps(prefix_sums8(_mm256_loadu_ps(source + l)), running);
      running = _mm256_permutevar8x32_ps(sums, last);
      _mm256_storeu_ps(current + l, _mm256_add_ps(sums, _mm256_loadu_ps(above + l)));
    }
    for (float tail = _mm256_cvtss_f32(running); l < W; ++l) {
      tail += source[l];
      current[l] = above[l] + tail;
    }
  }
}
#endif

// The zero-padded integral image S ((H + 1) x (W + 1)) of one H x W plane.
template <typename scalar_t, typename acc_t>
void integrate_plane(const scalar_t* x, acc_t* S, int H, int W) {
#if defined(__AVX2__)
  if constexpr (std::is_same_v<scalar_t, float> && std::is_same_v<acc_t, float>) {
    integrate_plane_avx2(x, S, H, W);
    return;
  }
#endif
  const int64_t pitch = W + 1;
  // Column sums first, a row at a time, S(r + 1, l + 1) = S(r, l + 1) + x(r, l): the pass
  // that reads x from memory reads it once, in order, and vectorises.
  std::fill(S, S + pitch, acc_t(0));
  for (int r = 0; r < H; ++r) {
    const scalar_t* __restrict source = x + r * static_cast<int64_t>(W);
    const acc_t* __restrict above = S + r * pitch + 1;
    acc_t* __restrict current = S + (r + 1) * pitch + 1;
    current[-1] = 0;
    for (int l = 0; l < W; ++l) current[l] = above[l] + static_cast<acc_t>(source[l]);
  }
  // Then prefix sums along the rows in place, kInterleavedRows rows at a time, on the plane
  // just written (still in cache).
  for (int first = 1; first <= H; first += kInterleavedRows) {
    const int rows = std::min(kInterleavedRows, H + 1 - first);
    acc_t running[kInterleavedRows] = {};
    acc_t* block = S + first * pitch;
    for (int l = 1; l <= W; ++l) {
      for (int k = 0; k < rows; ++k) {
        running[k] += block[k * pitch + l];
        block[k * pitch + l] = running[k];
      }
    }
  }
}

// The size of one zero-padded integral image plane, (H + 1) x (W + 1).
inline int64_t integral_plane_size(int H, int W) { return static_cast<int64_t>(H + 1) * (W + 1); }

// Every output plane of the F boxes of each input plane: a task integrates its input plane
// into the thread's buffer, where its boxes read it while it is in cache. A task takes all F
// boxes of a plane, or, when there are fewer planes than threads, a single box (its plane is
// then integrated once per box, so that every thread has work).
template <typename scalar_t, typename acc_t>
void sums_kernel(const scalar_t* input, Edges<acc_t> e, const acc_t* scale, acc_t* out, int64_t B, int64_t C,
                 int64_t F, int H, int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t tasks_per_plane = B * C < at::get_num_threads() ? std::max<int64_t>(F, 1) : 1;
  const int64_t filters_per_task = tasks_per_plane == 1 ? F : 1;
  at::parallel_for(0, B * C * tasks_per_plane, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> integral(integral_plane_size(H, W));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t plane = task / tasks_per_plane;  // b * C + c
      const int64_t first_filter = (task % tasks_per_plane) * filters_per_task;
      integrate_plane(input + plane * H * W, integral.data(), H, W);
      for (int64_t f = first_filter; f < std::min(F, first_filter + filters_per_task); ++f) {
        const int64_t box = (plane % C) * F + f;
        BoxRows<acc_t> rows(integral.data(), H, W, e.r_lo[box], e.r_hi[box], e.c_lo[box], e.c_hi[box], stride_h,
                            stride_w, out_w);
        acc_t* o = out + (plane * F + f) * out_h * out_w;
        for (int i = 0; i < out_h; ++i) rows.template sums<false>(i, scale[box], o + i * out_w);
      }
    }
  });
}

// Integral image of a gradient plane (out_h x out_w) spread onto the H x W grid, where entry
// (i, j) sits at (i * stride_h, j * stride_w) and every other pixel is zero.
template <typename acc_t>
void integrate_spread(const acc_t* grad, int out_w, int stride_h, int stride_w, int H, int W, acc_t* S) {
  if (stride_h == 1 && stride_w == 1) {  // nothing to spread: the plane itself
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

// Adds (or, for the first filter, writes) one gradient plane's share of the input gradient,
// scale times its box sums over the mirrored box, to the H x W plane `out`; `integral` is
// the thread's buffer for the gradient plane's integral image.
template <typename acc_t>
void add_transposed_sums(const acc_t* g, acc_t r_lo, acc_t r_hi, acc_t c_lo, acc_t c_hi, acc_t scale, int H, int W,
                         int stride_h, int stride_w, int out_w, bool first_filter, acc_t* integral, acc_t* out) {
  integrate_spread(g, out_w, stride_h, stride_w, H, W, integral);
  BoxRows<acc_t> rows(integral, H, W, r_lo, r_hi, c_lo, c_hi, 1, 1, W);
  for (int i = 0; i < H; ++i) {
    if (first_filter) {
      rows.template sums<false>(i, scale, out + i * W);
    } else {
      rows.template sums<true>(i, scale, out + i * W);
    }
  }
}

// What one output row adds to a box's gradient totals, before the box's scale: the sums over
// its outputs j of g[j] times the box sum (for the area gradient), times the box's row sum
// across the top and the bottom slope rows of S (d / d r_lo, d / d r_hi), and times the column
// slope at the left and the right edge (d / d c_lo, d / d c_hi).
template <typename acc_t>
struct EdgeTerms {
  acc_t sum = 0, top = 0, bottom = 0, left = 0, right = 0;
};

// One output row's virtual rows, as the box gradients read them: `sums` (P(r_hi, .) - P(r_lo, .),
// as `BoxRows::combine` forms it) and the top and bottom slope rows, S(cell + 1, .) - S(cell, .)
// at the slope cells of the row edges (zero where an edge has no slope cell).
template <typename acc_t>
struct VirtualRows {
  const acc_t* sums;
  const acc_t* top;
  const acc_t* bottom;
};

// EdgeTerms of a uniform segment's outputs (see Segment): one vectorisable pass.
template <typename acc_t, bool LEFT_MOVES, bool RIGHT_MOVES, bool UNIT_STRIDE>
void add_segment_terms(VirtualRows<acc_t> rows, const acc_t* __restrict g, const Segment& segment, int W, int stride,
                       const EdgeRuns<acc_t>& left_runs, const EdgeRuns<acc_t>& right_runs, EdgeTerms<acc_t>& terms) {
  const acc_t* __restrict row = rows.sums;
  const acc_t* __restrict top = rows.top;
  const acc_t* __restrict bottom = rows.bottom;
  const SegmentEdge<acc_t, LEFT_MOVES> left(left_runs, segment, W);
  const SegmentEdge<acc_t, RIGHT_MOVES> right(right_runs, segment, W);
  // an upper edge's slope cell is the cell it interpolates (slope_shift 0): written so, its
  // slope reuses the loads of its value
  const int left_slope = left.slope_offset(), right_slope = right.reading.offset;
  acc_t sum = 0, top_sum = 0, bottom_sum = 0, left_sum = 0, right_sum = 0;
#pragma omp simd reduction(+ : sum, top_sum, bottom_sum, left_sum, right_sum)
  for (int j = segment.begin; j < segment.end; ++j) {
    const int column = UNIT_STRIDE ? j : j * stride;
    const acc_t gj = g[j];
    // the box sum first, then weighted: the two edges' weighted totals apart would cancel digits
    sum += gj * (right.at(row, column) - left.at(row, column));
    top_sum += gj * (right.at(top, column) - left.at(top, column));
    bottom_sum += gj * (right.at(bottom, column) - left.at(bottom, column));
    if (LEFT_MOVES) left_sum += gj * (row[column + left_slope + 1] - row[column + left_slope]);
    if (RIGHT_MOVES) right_sum += gj * (row[column + right_slope + 1] - row[column + right_slope]);
  }
  terms.sum += sum;
  terms.top += top_sum;
  terms.bottom += bottom_sum;
  terms.left += left_sum;
  terms.right += right_sum;
}

// EdgeTerms of output j, whatever its edges do (for the one-output segments where an edge
// moves without a slope cell, a lower edge exactly on column 0, or has a slope cell without
// moving, a lower edge exactly on column W).
template <typename acc_t>
void add_terms_at(VirtualRows<acc_t> rows, const acc_t* g, int j, int W, int stride, const EdgeRuns<acc_t>& left,
                  const EdgeRuns<acc_t>& right, EdgeTerms<acc_t>& terms) {
  const acc_t gj = g[j];
  terms.sum += gj * (right.at(rows.sums, W, stride, j) - left.at(rows.sums, W, stride, j));
  terms.top += gj * (right.at(rows.top, W, stride, j) - left.at(rows.top, W, stride, j));
  terms.bottom += gj * (right.at(rows.bottom, W, stride, j) - left.at(rows.bottom, W, stride, j));
  const int left_cell = left.slope_cell_at(W, stride, j), right_cell = right.slope_cell_at(W, stride, j);
  if (left_cell >= 0) terms.left += gj * (rows.sums[left_cell + 1] - rows.sums[left_cell]);
  if (right_cell >= 0) terms.right += gj * (rows.sums[right_cell + 1] - rows.sums[right_cell]);
}

// EdgeTerms of one output row, segment by segment.
template <typename acc_t>
void add_row_terms(VirtualRows<acc_t> rows, const acc_t* g, const std::vector<Segment>& cuts, int W, int stride,
                   const EdgeRuns<acc_t>& left, const EdgeRuns<acc_t>& right, EdgeTerms<acc_t>& terms) {
  visit_segments(cuts, stride, [&](const Segment& segment, auto left_moves, auto right_moves, auto unit_stride) {
    if (segment.uniform) {
      add_segment_terms<acc_t, decltype(left_moves)::value, decltype(right_moves)::value, decltype(unit_stride)::value>(
          rows, g, segment, W, stride, left, right, terms);
    } else {
      for (int j = segment.begin; j < segment.end; ++j) add_terms_at(rows, g, j, W, stride, left, right, terms);
    }
  });
}

// out[l] = S(cell + 1, l) - S(cell, l), or 0 when cell is -1.
template <typename acc_t>
void slope_row(const BoxRows<acc_t>& rows, int cell, acc_t* __restrict out) {
  if (cell < 0) {
    std::fill(out, out + rows.W + 1, acc_t(0));
    return;
  }
  const acc_t *__restrict above = rows.line(cell), *__restrict below = rows.line(cell + 1);
  for (int l = 0; l <= rows.W; ++l) out[l] = below[l] - above[l];
}

// Adds to totals[0..4] one gradient plane's sums over its outputs of g times the derivatives
// of its box sum by (x_min, x_max, y_min, y_max) and times the box sum itself, before the
// box's scale; S is the integral image of the box's input plane, top_row and bottom_row
// buffers of W + 1 values.
template <typename acc_t>
void add_slope_totals(const acc_t* S, const acc_t* g, acc_t r_lo, acc_t r_hi, acc_t c_lo, acc_t c_hi, int H, int W,
                      int stride_h, int stride_w, int out_h, int out_w, acc_t* top_row, acc_t* bottom_row,
                      double* totals) {
  BoxRows<acc_t> rows(S, H, W, r_lo, r_hi, c_lo, c_hi, stride_h, stride_w, out_w);
  const std::vector<Segment> cuts = segments(rows.left_runs, rows.right_runs, out_w, true);
  const VirtualRows<acc_t> virtual_rows{rows.row.data(), top_row, bottom_row};
  for (int i = 0; i < out_h; ++i, g += out_w) {
    const int top_cell = slope_cell(acc_t(i * stride_h) + r_lo, H, false);
    const int bottom_cell = slope_cell(acc_t(i * stride_h) + r_hi, H, true);
    if (!rows.combine_with_slopes(i, top_cell, bottom_cell, top_row, bottom_row)) {
      rows.combine(i);
      slope_row(rows, top_cell, top_row);
      slope_row(rows, bottom_cell, bottom_row);
    }
    EdgeTerms<acc_t> terms;
    add_row_terms(virtual_rows, g, cuts, W, stride_w, rows.left_runs, rows.right_runs, terms);
    totals[0] -= terms.top;  // double: sums over many rows
    totals[1] += terms.bottom;
    totals[2] -= terms.left;
    totals[3] += terms.right;
    totals[4] += terms.sum;
  }
}

// The box gradients' totals (when totals is not null) and the input gradient (when grad_input
// is not null), one (batch item, channel) at a time, so that each gradient plane is read from
// memory once: its box gradients read it (against the input plane's integral image, in one
// thread buffer), then its transposed box sums find it in cache and integrate it into another
// (box gradients first measured 5-7% faster than the other order). Each batch item's totals go
// to their own slot of `partials` ((B, 5, C * F)), summed in order at the end: no two threads
// write the same value. F >= 1 (the host code handles F = 0).
template <typename scalar_t, typename acc_t>
void backward_kernel(const scalar_t* input, const acc_t* grad, Edges<acc_t> e, Edges<acc_t> mirrored,
                     const acc_t* scale, acc_t* grad_input, acc_t* totals, int64_t B, int64_t C, int64_t F, int H,
                     int W, int stride_h, int stride_w, int out_h, int out_w) {
  const int64_t boxes = C * F, plane_size = integral_plane_size(H, W);
  std::vector<double> partials(totals != nullptr ? B * 5 * boxes : 0, 0.0);
  at::parallel_for(0, B * C, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> input_integral(totals != nullptr ? plane_size : 0);
    std::vector<acc_t> grad_integral(grad_input != nullptr ? plane_size : 0);
    std::vector<acc_t> top_row(W + 1), bottom_row(W + 1);
    for (int64_t plane = begin; plane < end; ++plane) {  // b * C + c
      const int64_t b = plane / C;
      acc_t* gi = grad_input != nullptr ? grad_input + plane * H * W : nullptr;
      if (totals != nullptr) integrate_plane(input + plane * H * W, input_integral.data(), H, W);
      for (int64_t f = 0; f < F; ++f) {
        const int64_t box = (plane % C) * F + f;
        const acc_t* g = grad + (plane * F + f) * out_h * out_w;
        if (totals != nullptr) {
          double box_totals[5] = {0, 0, 0, 0, 0};
          add_slope_totals(input_integral.data(), g, e.r_lo[box], e.r_hi[box], e.c_lo[box], e.c_hi[box], H, W,
                           stride_h, stride_w, out_h, out_w, top_row.data(), bottom_row.data(), box_totals);
          for (int k = 0; k < 5; ++k) partials[(b * 5 + k) * boxes + box] = box_totals[k];
        }
        if (gi != nullptr) {
          add_transposed_sums(g, mirrored.r_lo[box], mirrored.r_hi[box], mirrored.c_lo[box], mirrored.c_hi[box],
                              scale[box], H, W, stride_h, stride_w, out_w, f == 0, grad_integral.data(), gi);
        }
      }
    }
  });
  if (totals == nullptr) return;
  for (int64_t k = 0; k < 5; ++k) {
    for (int64_t box = 0; box < boxes; ++box) {
      double total = 0;
      for (int64_t b = 0; b < B; ++b) total += partials[(b * 5 + k) * boxes + box];
      totals[k * boxes + box] = static_cast<acc_t>(total * scale[box]);
    }
  }
}

}  // namespace

// The rounded boxes of `exact = false` have integer edges, where the interpolation reads
// exactly the rounded values, so the CPU kernels need no separate inexact path.
void CpuBackend::sums(const at::Tensor& input, const std::vector<at::Tensor>& edges, const at::Tensor& scale,
                      at::Tensor& out, int stride_h, int stride_w, bool /*exact*/) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "box_sums_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    sums_kernel<scalar_t, acc_t>(input.data_ptr<scalar_t>(), Edges<acc_t>(edges), scale.data_ptr<acc_t>(),
                                 out.data_ptr<acc_t>(), input.size(0), input.size(1), scale.size(1), input.size(2),
                                 input.size(3), stride_h, stride_w, out.size(2), out.size(3));
  });
}

void CpuBackend::backward(const at::Tensor& input, const at::Tensor& grad, const std::vector<at::Tensor>& edges,
                          const std::vector<at::Tensor>& mirrored, const at::Tensor& scale, at::Tensor& grad_input,
                          at::Tensor& totals, int stride_h, int stride_w, bool /*exact*/) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, input.scalar_type(), "box_backward_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    backward_kernel<scalar_t, acc_t>(
        input.data_ptr<scalar_t>(), grad.data_ptr<acc_t>(), Edges<acc_t>(edges), Edges<acc_t>(mirrored),
        scale.data_ptr<acc_t>(), grad_input.defined() ? grad_input.data_ptr<acc_t>() : nullptr,
        totals.defined() ? totals.data_ptr<acc_t>() : nullptr, input.size(0), input.size(1), scale.size(1),
        input.size(2), input.size(3), stride_h, stride_w, grad.size(2), grad.size(3));
  });
}

}  // namespace box
}  // namespace farconv

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "farconv box convolution, CPU kernels";
  farconv::box::bind<farconv::box::CpuBackend>(m);
}
