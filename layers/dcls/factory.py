"""The DCLS convolution family for models that take a `conv` factory (`conv=dcls`), and the
checks of its options, run on the composed configuration before any work and again by the
factory itself."""

from __future__ import annotations

from typing import Any, Mapping

from torch import nn

from layers.dcls.dcls_layer import Dcls1d, Dcls2d, Dcls3d
from layers.dcls.functional import IMPLEMENTATIONS
from layers.dcls.reference import VERSIONS
from layers.factory import standard_conv

_LAYERS = {1: Dcls1d, 2: Dcls2d, 3: Dcls3d}
_TARGET = f"{__name__}.dcls_conv"


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_options(
    *,
    kernel_size: int | None,
    dim: int,
    version: str = "gauss",
    dilated_kernel_size: int | None = None,
    kernel_count: int | None = None,
    position_lr_factor: float = 5.0,
    position_weight_decay: float | None = 0.0,
    repulsion_factor: float = 0.0,
    impl: str = "auto",
    key: str = "conv",
) -> None:
    """Raise `ValueError` with one line `<key>.<option>=<value> is out of range: <what is
    allowed>` for the first option of `dcls_conv` that cannot build a layer.

    Args:
        kernel_size: the side k of the convolution the net asks for; None when unknown (then
            the dilated size is only checked on its own).
        dim: spatial rank of the convolution.
        key: the config node the options come from, for the message.
    """

    def fail(option: str, value: Any, allowed: str) -> None:
        raise ValueError(f"{key}.{option}={value} is out of range: {allowed}")

    if version not in VERSIONS:
        fail("version", version, f"must be one of {', '.join(VERSIONS)}")
    if impl not in IMPLEMENTATIONS:
        fail("impl", impl, f"must be one of {', '.join(IMPLEMENTATIONS)}")
    if not position_lr_factor > 0:
        fail("position_lr_factor", position_lr_factor, "must be > 0")
    if position_weight_decay is not None and not position_weight_decay >= 0:
        fail("position_weight_decay", position_weight_decay, "must be null or >= 0")
    if not repulsion_factor >= 0:
        fail("repulsion_factor", repulsion_factor, "must be >= 0")
    size = dilated_kernel_size
    if size is not None:
        low = 1 if kernel_size is None else kernel_size
        if not _is_count(size) or size < low:
            fail("dilated_kernel_size", size, f"must be null or an integer >= {'1' if kernel_size is None else f'the net kernel_size={kernel_size}'}")
        if kernel_size is not None and (size - kernel_size) % 2:
            parity = "odd" if kernel_size % 2 else "even"
            fail("dilated_kernel_size", size, f"must be {parity} like the net kernel_size={kernel_size} (the output keeps its size)")
    side = size if size is not None or kernel_size is None else 2 * kernel_size - 1
    if kernel_count is not None and side is not None:  # else checked once the net asks for a convolution
        taps = side**dim
        if not _is_count(kernel_count) or not 1 <= kernel_count <= taps:
            shape = "x".join([str(side)] * dim)
            fail("kernel_count", kernel_count, f"must be an integer in [1, {taps}], the taps of the {shape} dilated kernel")


def check_config(cfg: Mapping[str, Any]) -> None:
    """Check the DCLS options of a composed experiment configuration before anything is
    built: `conv.*` when `conv=dcls`, and `net.conv.*` for nets with their own DCLS factory
    (ConvNeXt-DCLS). The net's kernel is `net.kernel_size` where the net config states it;
    the rank is that of `dataset.input_size`. Raises `ValueError` as `check_options`.
    """
    net = cfg.get("net") or {}
    input_size = (cfg.get("dataset") or {}).get("input_size")
    dim = len(input_size) if input_size is not None else 2
    for key, node in (("conv", cfg.get("conv")), ("net.conv", net.get("conv"))):
        if not isinstance(node, Mapping) or node.get("_target_") != _TARGET:
            continue
        options = {name: value for name, value in node.items() if not name.startswith("_")}
        check_options(kernel_size=net.get("kernel_size"), dim=dim, key=key, **options)


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
    repulsion_factor: float = 0.0,
    impl: str = "auto",
) -> nn.Module:
    """`ConvFactory` of the DCLS family: a k x k convolution (k > 1) becomes a `DclsNd` with
    the same number of elements, K = k^dim (or `kernel_count`), spread over a dilated kernel
    of side `dilated_kernel_size` (None: 2k - 1). The padding grows by `(D - k) / 2` so the
    output keeps the plain convolution's size. 1x1 convolutions stay plain.
    `repulsion_factor` > 0 adds the paper's repulsion term of each layer to the training loss.
    """
    if kernel_size == 1:
        return standard_conv(in_channels, out_channels, 1, stride=stride, groups=groups, bias=bias, dim=dim)
    if dim not in _LAYERS:
        raise ValueError(f"conv=dcls: dim={dim} is not one of {sorted(_LAYERS)}")
    if dilation != 1:
        raise ValueError(f"conv=dcls replaces undilated convolutions (the spacing is learned); got dilation={dilation}")
    options = dict(
        version=version, impl=impl, position_lr_factor=position_lr_factor,
        position_weight_decay=position_weight_decay, repulsion_factor=repulsion_factor,
    )  # fmt: skip
    check_options(kernel_size=kernel_size, dim=dim, dilated_kernel_size=dilated_kernel_size, kernel_count=kernel_count, **options)
    size = 2 * kernel_size - 1 if dilated_kernel_size is None else dilated_kernel_size
    count = kernel_size**dim if kernel_count is None else kernel_count
    return _LAYERS[dim](
        in_channels, out_channels, count, stride=stride, padding=padding + (size - kernel_size) // 2,
        dilated_kernel_size=size, groups=groups, bias=bias, **options,
    )  # fmt: skip
