"""The DCLS convolution family for models that take a `conv` factory (`conv=dcls`)."""

from __future__ import annotations

from torch import nn

from layers.dcls.dcls_layer import Dcls1d, Dcls2d, Dcls3d
from layers.factory import standard_conv

_LAYERS = {1: Dcls1d, 2: Dcls2d, 3: Dcls3d}


def dcls_conv(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
    groups: int = 1,
    bias: bool = True,
    dim: int = 2,
    version: str = "gauss",
    dilated_kernel_size: int | None = None,
    kernel_count: int | None = None,
    position_lr_factor: float = 5.0,
    position_weight_decay: float | None = 0.0,
    impl: str = "auto",
) -> nn.Module:
    """`ConvFactory` of the DCLS family: a k x k convolution (k > 1) becomes a `DclsNd` with
    the same number of elements, K = k^dim (or `kernel_count`), spread over a dilated kernel
    of side `dilated_kernel_size` (None: 2k - 1). The padding grows by `(D - k) / 2` so the
    output keeps the plain convolution's size. 1x1 convolutions stay plain.
    """
    if kernel_size == 1:
        return standard_conv(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias, dim=dim)
    if dim not in _LAYERS:
        raise ValueError(f"conv=dcls: dim={dim} is not one of {sorted(_LAYERS)}")
    if dilation != 1:
        raise ValueError(f"conv=dcls replaces undilated convolutions (the spacing is learned); got dilation={dilation}")
    size = 2 * kernel_size - 1 if dilated_kernel_size is None else dilated_kernel_size
    if size < kernel_size:
        raise ValueError(f"conv=dcls: dilated_kernel_size={size} is smaller than the net's kernel_size={kernel_size}")
    if (size - kernel_size) % 2:
        raise ValueError(
            f"conv=dcls: dilated_kernel_size={size} - kernel_size={kernel_size} must be even to keep the output size"
        )
    count = kernel_size**dim if kernel_count is None else kernel_count
    if not 1 <= count <= size**dim:
        raise ValueError(f"conv=dcls: kernel_count={count} must be in [1, {size ** dim}] for dilated_kernel_size={size}")
    return _LAYERS[dim](
        in_channels, out_channels, count, stride=stride, padding=padding + (size - kernel_size) // 2,
        dilated_kernel_size=size, groups=groups, bias=bias, version=version, impl=impl,
        position_lr_factor=position_lr_factor, position_weight_decay=position_weight_decay,
    )  # fmt: skip
