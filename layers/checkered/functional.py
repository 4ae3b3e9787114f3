"""Checkered subsampling and multisampling on submap tensors `(N, C, S, H, W)`.

Sadigh & Sen, "Improving the Resolution of CNN Feature Maps Efficiently with
Multisampling", arXiv 1805.10766. Every function maps `(N, C, S, H, W)` (a 4-D input is
one submap, `S = 1`) to `(N, C', S', H', W')`:

- stride 1: the 2-D operation on every submap (shared weights);
- stride 2: each input submap is read at the offsets of its sampler (`sampling.py`) and
  subsampled by 2, so the output has `S * groups` submaps of `ceil`-halved size. The
  offset-`(dy, dx)` submap equals the stride-1 output at `[dy::2, dx::2]`, the input
  carrying one more row and column of padding at the bottom and right;
- `depth > 1`: every output submap mixes `depth` neighbouring input submaps (a
  `(depth, k, k)` kernel along `(S, H, W)`), so `S' = S - depth + 1` before sampling.

Only the kept samples are computed, never a convolution at an offset that is thrown away.
A stride-2 convolution of depth 1 is one strided 2-D convolution per kept group over the
`N * S` submaps read at the group's offset, in channels-last layout, where the convolution
pads symmetric borders itself (offset (0, 0): no copy of the input at all); its outputs,
stacked, are the result in channels-last-3d strides. CPU backends run a channels-last 2-D
convolution and its backward markedly faster than the 3-D form (`benchmarks/checkered.py`). Pools, and convolutions with `depth > 1`,
use the operation's 3-D form (kernel `(depth, kh, kw)`, stride `(1, 2, 2)`), one strided
call per kept group.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from layers.checkered.sampling import Offset

Padding = tuple[int, int, int, int]  # left, right, top, bottom, as F.pad takes them
# (B, C, D, H, W) -> (B, C', D - depth + 1, H', W'): the 3-D form of the operation, kernel
# (depth, kh, kw), stride (1, s, s), given the symmetric (pad_h, pad_w) it must apply itself.
PlaneOp = Callable[[Tensor, int, tuple[int, int]], Tensor]


def as_submaps(x: Tensor, where: str) -> Tensor:
    """`(N, C, H, W)` or `(N, C, S, H, W)` -> `(N, C, S, H, W)`."""
    if x.dim() == 4:
        return x.unsqueeze(2)
    if x.dim() != 5:
        raise ValueError(f"{where}: expected (N, C, H, W) or (N, C, S, H, W) input, got shape {tuple(x.shape)}")
    return x


def _shift_pad(x: Tensor, offset: Offset, padding: Padding, value: float) -> Tensor:
    """`x` padded by `padding` and read from `offset` on: the last `offset` rows and columns
    past the padding are `value` too. One pad (negative where it crops), so its backward is a view."""
    (dy, dx), (left, right, top, bottom) = offset, padding
    return F.pad(x, (left - dx, right + dx, top - dy, bottom + dy), value=value)


def _read_at(x: Tensor, offsets: list[Offset], padding: Padding, value: float) -> Tensor:
    """`(N, C, S, H, W)`, submap `s` read at `offsets[s]` -> `(N, C, S, H + pad, W + pad)`."""
    if len(set(offsets)) == 1:
        return _shift_pad(x, offsets[0], padding, value)
    return torch.stack([_shift_pad(x[:, :, s], offset, padding, value) for s, offset in enumerate(offsets)], 2)


def _windows_at(x: Tensor, offsets: list[Offset], depth: int, padding: Padding, value: float) -> Tensor:
    """`(N, C, S, H, W)` -> `(N * S', C, depth, ...)`: window `s` (submaps `s .. s+depth-1`) read at `offsets[s]`."""
    windows = [_shift_pad(x[:, :, s : s + depth], offset, padding, value) for s, offset in enumerate(offsets)]
    return torch.stack(windows, 1).flatten(0, 1)


def checkered_apply(
    x: Tensor,
    op: PlaneOp,
    *,
    stride: int,
    padding: Padding,
    depth: int,
    groups: list[list[Offset]] | None,
    pad_value: float = 0.0,
) -> Tensor:
    """Apply a 2-D operation to submaps with checkered sampling, as its 3-D form over `(S, H, W)`.

    Args:
        x: `(N, C, S, H, W)`.
        op: the operation's 3-D form (`PlaneOp`); its kernel spans `depth` submaps.
        stride: 1 or 2.
        padding: `(left, right, top, bottom)` zero (or `pad_value`) padding.
        depth: submaps mixed per output submap.
        groups: for stride 2, one offset per output submap per group (`sampling.offset_groups`).
    Returns:
        `(N, C', S', H', W')`, `S' = (S - depth + 1) * len(groups)` for stride 2.
    """
    n, _, submaps = x.shape[:3]
    if not 1 <= depth <= submaps:
        raise ValueError(f"checkered layer: depth={depth} needs 1 <= depth <= submaps, got {submaps} submaps")
    kept = submaps - depth + 1
    left, right, top, bottom = padding
    if stride == 1:
        if left == right and top == bottom:
            return op(x, 1, (top, left))
        return op(F.pad(x, padding, value=pad_value), 1, (0, 0))
    if groups is None or any(len(group) != kept for group in groups):
        raise ValueError(f"checkered layer: stride 2 needs one offset per submap ({kept}) in every sampler group")
    if depth == 1:
        # One strided call per kept group, its outputs side by side along S (concatenating the
        # quarter-size outputs is cheaper than concatenating the padded inputs for one call).
        return torch.cat([op(_read_at(x, group, padding, pad_value), 2, (0, 0)) for group in groups], 2)
    out = op(torch.cat([_windows_at(x, group, depth, padding, pad_value) for group in groups]), 2, (0, 0))  # (G * N * S', C', 1, H', W')
    return out.view(len(groups), n, kept, *out.shape[1:]).permute(1, 3, 0, 2, 4, 5, 6).flatten(2, 4)


def _group_input(x: Tensor, group: list[Offset], padding: Padding) -> tuple[Tensor, tuple[int, int]]:
    """`x (N, S, H, W, C)` (channels last) read at the group's offsets -> `(N * S, C, H', W')` in
    channels-last layout, and the symmetric padding the convolution adds itself.

    A group with one offset for every submap leaves to the convolution the padding that is
    the same on both sides (offset (0, 0) with symmetric padding: no copy at all) and pads
    the rest; a group whose offsets differ per submap pads each submap to its own offset."""
    left, right, top, bottom = padding
    if len(set(group)) > 1:
        reads = [F.pad(x[:, s], (0, 0, left - dx, right + dx, top - dy, bottom + dy)) for s, (dy, dx) in enumerate(group)]
        read, conv_padding = torch.stack(reads, 1), (0, 0)
    else:
        dy, dx = group[0]
        amounts = (left - dx, right + dx, top - dy, bottom + dy)
        conv_padding = (max(0, min(amounts[2:])), max(0, min(amounts[:2])))
        rest = (amounts[0] - conv_padding[1], amounts[1] - conv_padding[1], amounts[2] - conv_padding[0], amounts[3] - conv_padding[0])
        read = F.pad(x, (0, 0, *rest)) if any(rest) else x
    return read.reshape(-1, *read.shape[2:]).permute(0, 3, 1, 2), conv_padding


def _strided_conv2d(x: Tensor, weight: Tensor, bias: Tensor | None, padding: Padding, dilation: tuple[int, int], groups: int,
                    sampling: list[list[Offset]]) -> Tensor:  # fmt: skip
    """Stride-2, depth-1 checkered convolution `(N, C, S, H, W) -> (N, O, G * S, H', W')`: per
    offset group, one strided `conv2d` over the `N * S` submaps in channels-last layout (see
    the module docstring); the result has channels-last-3d strides."""
    n, submaps = x.shape[0], x.shape[2]
    if any(len(group) != submaps for group in sampling):
        raise ValueError(f"checkered layer: stride 2 needs one offset per submap ({submaps}) in every sampler group")
    channels_last = x.permute(0, 2, 3, 4, 1)  # (N, S, H, W, C): a view when x is channels-last-3d
    outputs = []
    for group in sampling:
        read, conv_padding = _group_input(channels_last, group, padding)
        out = F.conv2d(read, weight, bias, 2, conv_padding, dilation, groups)  # (N * S, O, H', W')
        outputs.append(out.permute(0, 2, 3, 1).reshape(n, submaps, *out.shape[2:], out.shape[1]))  # a view for channels-last output
    return torch.stack(outputs, 1).flatten(1, 2).permute(0, 4, 1, 2, 3)


def checkered_conv2d(
    x: Tensor,
    weight: Tensor,
    bias: Tensor | None,
    *,
    stride: int = 1,
    padding: Padding = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    groups: int = 1,
    sampling: list[list[Offset]] | None = None,
) -> Tensor:
    """Checkered convolution `(N, C, S, H, W) -> (N, O, S', H', W')`.

    `weight` is `(O, C / groups, kh, kw)` (depth 1) or `(O, C / groups, depth, kh, kw)`.
    """
    x = as_submaps(x, "checkered_conv2d")
    if stride == 2 and weight.dim() == 4:
        if sampling is None:
            raise ValueError("checkered layer: stride 2 needs the sampler's offset groups")
        return _strided_conv2d(x, weight, bias, padding, dilation, groups, sampling)
    kernel = weight if weight.dim() == 5 else weight.unsqueeze(2)
    depth = kernel.shape[2]

    def op(submaps: Tensor, step: int, pad: tuple[int, int]) -> Tensor:
        return F.conv3d(submaps, kernel, bias, (1, step, step), (0, *pad), (1, *dilation), groups)

    return checkered_apply(x, op, stride=stride, padding=padding, depth=depth, groups=sampling)


def checkered_max_pool2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    *,
    stride: int,
    padding: Padding = (0, 0, 0, 0),
    dilation: tuple[int, int] = (1, 1),
    ceil_mode: bool = False,
    depth: int = 1,
    sampling: list[list[Offset]] | None = None,
) -> Tensor:
    """Checkered max pooling `(N, C, S, H, W) -> (N, C, S', H', W')` over `(depth, kh, kw)` windows."""
    x = as_submaps(x, "checkered_max_pool2d")

    def op(submaps: Tensor, step: int, pad: tuple[int, int]) -> Tensor:
        return F.max_pool3d(submaps, (depth, *kernel_size), (1, step, step), (0, *pad), (1, *dilation), ceil_mode)

    return checkered_apply(x, op, stride=stride, padding=padding, depth=depth, groups=sampling, pad_value=float("-inf"))


def checkered_avg_pool2d(
    x: Tensor,
    kernel_size: tuple[int, int],
    *,
    stride: int,
    padding: Padding = (0, 0, 0, 0),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    depth: int = 1,
    sampling: list[list[Offset]] | None = None,
) -> Tensor:
    """Checkered average pooling `(N, C, S, H, W) -> (N, C, S', H', W')` over `(depth, kh, kw)` windows.

    With stride 2 the padding is applied before the offsets are taken, so padded zeros
    count in the average (`count_include_pad=False` needs `padding=0` there).
    """
    x = as_submaps(x, "checkered_avg_pool2d")
    if stride == 2 and not count_include_pad and any(padding):
        raise ValueError("checkered_avg_pool2d: count_include_pad=False with stride 2 needs padding=0")

    def op(submaps: Tensor, step: int, pad: tuple[int, int]) -> Tensor:
        return F.avg_pool3d(submaps, (depth, *kernel_size), (1, step, step), (0, *pad), ceil_mode, count_include_pad)

    return checkered_apply(x, op, stride=stride, padding=padding, depth=depth, groups=sampling)
