"""`convert_to_checkered`: any 2-D CNN -> its CCNN (Sadigh & Sen, arXiv 1805.10766).

Modules are swapped for their checkered forms in place (Conv2d -> CheckeredConv2d sharing
the same Parameters, BatchNorm2d -> BatchNorm3d sharing Parameters and running
statistics, Dropout2d -> Dropout3d, pools and adaptive pools -> checkered pools), then the
net's `forward` is traced with `torch.fx` and two things are inserted into the graph:
the submap dimension after the image input (`(N, C, H, W) -> (N, C, 1, H, W)`), and an
average over the submaps before every operation that cannot take them (flatten, view,
linear layers, the output, ...). So the converted net takes and returns what the
original did, and no `forward` is edited.
"""

from __future__ import annotations

import operator
import re

import torch
import torch.nn.functional as F
from torch import fx, nn

from layers.checkered.checkered_conv import CheckeredConv2d
from layers.checkered.pooling import (
    CheckeredAdaptiveAvgPool2d,
    CheckeredAdaptiveMaxPool2d,
    CheckeredAvgPool2d,
    CheckeredMaxPool2d,
)
from layers.checkered.sampling import check_sampler
from layers.factory import ModelConversion

CHECKERED_MODULES = (
    CheckeredConv2d, CheckeredMaxPool2d, CheckeredAvgPool2d, CheckeredAdaptiveAvgPool2d, CheckeredAdaptiveMaxPool2d,
    nn.BatchNorm3d, nn.Dropout3d,
)
# Modules that act per element (or per channel along dim 1), so submaps pass through.
_SUBMAP_SAFE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Sigmoid, nn.Tanh,
    nn.Hardswish, nn.Hardsigmoid, nn.Hardtanh, nn.Softplus, nn.Identity, nn.Dropout, nn.AlphaDropout, nn.GroupNorm,
)
_SUBMAP_SAFE_FUNCTIONS = {
    operator.add, operator.sub, operator.mul, operator.truediv, operator.iadd, operator.isub, operator.imul, operator.neg,
    torch.add, torch.sub, torch.mul, torch.div, torch.relu, torch.sigmoid, torch.tanh, torch.clamp,
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.hardswish, F.hardsigmoid, F.sigmoid, F.tanh, F.dropout,
}
_SUBMAP_SAFE_METHODS = {
    "add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp",
    "clamp_", "contiguous", "float", "half", "to", "type_as", "detach", "clone",
}
# Spatial 2-D operations that would silently see averaged submaps: refuse them instead.
_SPATIAL_FUNCTIONS = {F.conv2d, F.max_pool2d, F.avg_pool2d, F.interpolate, F.pixel_shuffle, F.grid_sample, F.conv_transpose2d, F.unfold}
_UNCONVERTIBLE_MODULES = (
    nn.Upsample, nn.PixelShuffle, nn.PixelUnshuffle, nn.Unfold, nn.Fold, nn.LocalResponseNorm, nn.ZeroPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d,
)
# The end of every "cannot convert" message: which nets convert, and what to do instead.
_WHAT_CONVERTS = (
    "these convert: 2-D CNNs of Conv2d (stride 1 or 2), BatchNorm2d, Dropout2d, pools without indices, activations and "
    "linear layers, with a forward torch.fx can trace, such as ResNet, WideResNet, VGG, DenseNetBC, SimpleCNN and "
    "ToyMNISTNet; convert one of those, or use this net unconverted (conv=standard)"
)


class _Converter:
    """Swaps modules for their checkered forms; every stride-2 layer gets its own seed."""

    def __init__(self, sampler: str, seed: int) -> None:
        self.sampler, self.seed, self.strided = sampler, seed, 0

    def _sampler(self) -> dict:
        self.strided += 1
        return {"sampler": self.sampler, "seed": self.seed + self.strided - 1}

    def convert(self, module: nn.Module, path: str) -> nn.Module:
        kind = type(module)
        try:
            if kind is nn.Conv2d:
                return CheckeredConv2d.from_conv2d(module, **self._sampler())
            if kind is nn.BatchNorm2d:
                norm = nn.BatchNorm3d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
                norm.weight, norm.bias = module.weight, module.bias
                for name in ("running_mean", "running_var", "num_batches_tracked"):
                    setattr(norm, name, getattr(module, name))
                return norm
            if kind is nn.Dropout2d:
                return nn.Dropout3d(module.p, module.inplace)
            if kind in (nn.MaxPool2d, nn.AdaptiveMaxPool2d) and module.return_indices:
                raise ValueError("it returns pooling indices (for an unpooling layer), which have no checkered form")
            if kind is nn.MaxPool2d:
                return CheckeredMaxPool2d.from_pool(module, **self._sampler())
            if kind is nn.AvgPool2d:
                return CheckeredAvgPool2d.from_pool(module, **self._sampler())
            if kind is nn.AdaptiveAvgPool2d:
                return CheckeredAdaptiveAvgPool2d(module.output_size)
            if kind is nn.AdaptiveMaxPool2d:
                return CheckeredAdaptiveMaxPool2d(module.output_size)
        except ValueError as error:
            reason = re.sub(r"^Checkered\w+: ", "", str(error))  # the checkered layer is internal to the conversion
            raise ValueError(f"convert_to_checkered: cannot convert {path or 'the model'} ({kind.__name__}): {reason}; {_WHAT_CONVERTS}") from error
        if isinstance(module, CHECKERED_MODULES[:5]):
            raise ValueError(f"convert_to_checkered: {path} ({kind.__name__}) is already checkered; convert plain models only")
        if isinstance(module, _UNCONVERTIBLE_MODULES) or kind.__name__.lower().endswith(("1d", "2d", "3d")):
            raise ValueError(f"convert_to_checkered: cannot convert {path or 'the model'} ({kind.__name__}): it has no checkered form; {_WHAT_CONVERTS}")
        for name, child in module.named_children():
            setattr(module, name, self.convert(child, f"{path}.{name}" if path else name))
        return module


class _Tracer(fx.Tracer):
    def is_leaf_module(self, module: nn.Module, qualified_name: str) -> bool:
        return isinstance(module, CHECKERED_MODULES) or super().is_leaf_module(module, qualified_name)


def _role(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    """What `node` does with a submap tensor: `carry` it on, `read` it as it is (its size along
    batch or channels, not a tensor), or needs it `averaged` over the submaps first."""
    if node.op == "call_module":
        return "carry" if isinstance(modules[node.target], CHECKERED_MODULES + _SUBMAP_SAFE_MODULES) else "averaged"
    if node.op == "call_function":
        if node.target is torch.cat:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            return "carry" if dim in (0, 1) else "averaged"
        return "carry" if node.target in _SUBMAP_SAFE_FUNCTIONS else "averaged"
    if node.op == "call_method":
        if node.target == "size":
            return "read" if len(node.args) > 1 and node.args[1] in (0, 1) else "averaged"
        return "carry" if node.target in _SUBMAP_SAFE_METHODS else "averaged"
    return "averaged"


def _insert_submaps(graph: fx.Graph, modules: dict[str, nn.Module], name: str) -> None:
    """Add the submap dimension after the first input and average it out where it cannot go."""
    image = next((node for node in graph.nodes if node.op == "placeholder"), None)
    if image is None:
        raise ValueError(f"convert_to_checkered: {name}.forward takes no input")
    with graph.inserting_after(image):
        lifted = graph.call_method("unsqueeze", (image, 2))
    image.replace_all_uses_with(lifted, delete_user_cb=lambda user: user is not lifted)
    carrying, averaged = {lifted}, {}
    for node in list(graph.nodes):
        sources = [arg for arg in node.all_input_nodes if arg in carrying]
        if not sources or node is lifted:
            continue
        role = _role(node, modules)
        if role == "carry":
            carrying.add(node)
        if role != "averaged":
            continue
        if node.op == "call_function" and node.target in _SPATIAL_FUNCTIONS:
            raise ValueError(f"convert_to_checkered: {name}.forward calls {node.target.__name__} on feature maps, which has no checkered form; {_WHAT_CONVERTS}")
        for source in sources:
            if source not in averaged:
                with graph.inserting_after(source):
                    averaged[source] = graph.call_function(torch.mean, (source, 2))
            node.replace_input_with(source, averaged[source])
    graph.lint()


def convert_to_checkered(model: nn.Module, sampler: str = "naive", seed: int = 0) -> fx.GraphModule:
    """Convert a 2-D CNN `(N, C, H, W) -> outputs` into its CCNN, with the same interface.

    The model's modules are replaced in place (its Parameters and buffers are reused, so
    the parameter count is unchanged); the returned `GraphModule` holds them under the
    same names, so state dicts are interchangeable (depth-1 kernels keep Conv2d's shape).

    Args:
        model: a net built from `nn.Conv2d`, `nn.BatchNorm2d`, pools, activations, linear
            layers; its forward must be traceable by `torch.fx`.
        sampler: `naive | lattice | random | three_quarters | complete` for every stride-2 layer.
        seed: seed of the first stride-2 layer's `random` sampler (the k-th gets `seed + k`).
    Raises:
        ValueError: naming the first module (or operation) that has no checkered form.
    """
    check_sampler(sampler, "convert_to_checkered")
    name = type(model).__name__
    _Converter(sampler, seed).convert(model, "")
    try:
        graph = _Tracer().trace(model)
    except Exception as error:  # fx reports untraceable control flow as various exception types
        reason = next((line for line in str(error).splitlines() if line.strip()), type(error).__name__)
        raise ValueError(f"convert_to_checkered: cannot trace {name}.forward with torch.fx ({reason}); {_WHAT_CONVERTS}") from error
    _insert_submaps(graph, dict(model.named_modules()), name)
    converted = fx.GraphModule(model, graph, class_name=f"Checkered{name}")
    converted.train(model.training)
    return converted


class CheckeredConversion(ModelConversion):
    """The `conv=checkered` family: `convert_to_checkered(net, sampler, seed)`."""

    def __init__(self, sampler: str = "naive", seed: int = 0) -> None:
        check_sampler(sampler, "conv=checkered: conv.sampler")
        self.sampler, self.seed = sampler, seed

    def __call__(self, model: nn.Module) -> nn.Module:
        return convert_to_checkered(model, self.sampler, self.seed)
