// Math of the box convolution shared by the CPU and CUDA kernels: the interpolation rule
// (`locate`, `lerp`), the one-sided slope rule (`slope_cell`) and the per-pixel evaluation
// used by the CUDA kernels (the CPU kernels evaluate whole rows with the same rules).
//
// `S` is one zero-padded integral image plane of (H+1) x (W+1) values, row-major.
// `P(r, c)`, its bilinear interpolation clamped to [0, H] x [0, W], is the integral of the
// image over [0, r) x [0, c); a box [r_lo, r_hi) x [c_lo, c_hi) sums to
// P(r_hi, c_hi) - P(r_lo, c_hi) - P(r_hi, c_lo) + P(r_lo, c_lo).
// With EXACT = false every position is an integer (the box was rounded inward), so the
// interpolation reduces to one read. See layers/box/reference.py for the derivation.
#pragma once

#include <cmath>

#if defined(__CUDACC__)
#define BOX_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define BOX_HOST_DEVICE inline
#endif

namespace farconv {
namespace box {

template <typename acc_t>
BOX_HOST_DEVICE acc_t clamp_position(acc_t t, int n) {
  return t < acc_t(0) ? acc_t(0) : (t > acc_t(n) ? acc_t(n) : t);
}

// Where a prefix position t, clamped to [0, n], falls: `fraction` of the way from entry
// `cell` to entry `cell + 1` (cell <= n - 1, so both entries exist).
template <typename acc_t>
struct Taps {
  int cell;
  acc_t fraction;
};

template <typename acc_t>
BOX_HOST_DEVICE Taps<acc_t> locate(acc_t t, int n) {
  t = clamp_position(t, n);
  int cell = static_cast<int>(floor(t));
  cell = cell > n - 1 ? n - 1 : cell;
  return {cell, t - acc_t(cell)};
}

// Linear interpolation of line[0], line[step], ..., line[n * step] at `at`.
template <typename acc_t>
BOX_HOST_DEVICE acc_t lerp(const acc_t* line, long step, Taps<acc_t> at) {
  const acc_t low = line[at.cell * step];
  return low + at.fraction * (line[(at.cell + 1) * step] - low);
}

// Linear interpolation of row `row` of S at column position `c`.
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t interpolate_column(const acc_t* S, int W, int row, acc_t c) {
  const acc_t* line = S + static_cast<long>(row) * (W + 1);
  if (!EXACT) return line[static_cast<int>(clamp_position(c, W))];
  return lerp(line, 1, locate(c, W));
}

// Bilinear interpolation P(r, c).
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t interpolate(const acc_t* S, int H, int W, acc_t r, acc_t c) {
  if (!EXACT) return interpolate_column<acc_t, false>(S, W, static_cast<int>(clamp_position(r, H)), c);
  const Taps<acc_t> at = locate(r, H);
  const acc_t top = interpolate_column<acc_t, true>(S, W, at.cell, c);
  const acc_t bottom = interpolate_column<acc_t, true>(S, W, at.cell + 1, c);
  return top + at.fraction * (bottom - top);
}

// Sum of the image over the box [r_lo, r_hi) x [c_lo, c_hi), zero outside the image.
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t box_sum(const acc_t* S, int H, int W, acc_t r_lo, acc_t r_hi, acc_t c_lo, acc_t c_hi) {
  return interpolate<acc_t, EXACT>(S, H, W, r_hi, c_hi) - interpolate<acc_t, EXACT>(S, H, W, r_lo, c_hi) -
         interpolate<acc_t, EXACT>(S, H, W, r_hi, c_lo) + interpolate<acc_t, EXACT>(S, H, W, r_lo, c_lo);
}

// The cell whose slope is the one-sided derivative that grows the box: right of an upper
// edge (floor), left of a lower edge (ceil - 1). -1 when outside [0, n - 1].
template <typename acc_t>
BOX_HOST_DEVICE int slope_cell(acc_t t, int n, bool upper_edge) {
  const int cell = upper_edge ? static_cast<int>(floor(t)) : static_cast<int>(ceil(t)) - 1;
  return (cell < 0 || cell > n - 1) ? -1 : cell;
}

// d box_sum / d r_edge: the column-interpolated box row at `cell` (zero if cell < 0).
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t row_slope(const acc_t* S, int W, int cell, acc_t c_lo, acc_t c_hi) {
  if (cell < 0) return acc_t(0);
  return (interpolate_column<acc_t, EXACT>(S, W, cell + 1, c_hi) - interpolate_column<acc_t, EXACT>(S, W, cell, c_hi)) -
         (interpolate_column<acc_t, EXACT>(S, W, cell + 1, c_lo) - interpolate_column<acc_t, EXACT>(S, W, cell, c_lo));
}

// Linear interpolation of column `column` of S at row position `r`.
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t interpolate_row(const acc_t* S, int H, int W, int column, acc_t r) {
  if (!EXACT) return S[static_cast<long>(clamp_position(r, H)) * (W + 1) + column];
  return lerp(S + column, W + 1, locate(r, H));
}

// d box_sum / d c_edge: the row-interpolated box column at `cell` (zero if cell < 0).
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE acc_t column_slope(const acc_t* S, int H, int W, int cell, acc_t r_lo, acc_t r_hi) {
  if (cell < 0) return acc_t(0);
  return (interpolate_row<acc_t, EXACT>(S, H, W, cell + 1, r_hi) - interpolate_row<acc_t, EXACT>(S, H, W, cell, r_hi)) -
         (interpolate_row<acc_t, EXACT>(S, H, W, cell + 1, r_lo) - interpolate_row<acc_t, EXACT>(S, H, W, cell, r_lo));
}

// Derivatives of one box sum with respect to its four edges (x_min, x_max, y_min, y_max),
// weighted by `weight` and added to `grads[0..3]`.
template <typename acc_t, bool EXACT>
BOX_HOST_DEVICE void accumulate_edge_slopes(const acc_t* S, int H, int W, acc_t r_lo, acc_t r_hi, acc_t c_lo,
                                            acc_t c_hi, acc_t weight, acc_t* grads) {
  grads[0] -= weight * row_slope<acc_t, EXACT>(S, W, slope_cell(r_lo, H, false), c_lo, c_hi);
  grads[1] += weight * row_slope<acc_t, EXACT>(S, W, slope_cell(r_hi, H, true), c_lo, c_hi);
  grads[2] -= weight * column_slope<acc_t, EXACT>(S, H, W, slope_cell(c_lo, W, false), r_lo, r_hi);
  grads[3] += weight * column_slope<acc_t, EXACT>(S, H, W, slope_cell(c_hi, W, true), r_lo, r_hi);
}

}  // namespace box
}  // namespace farconv
