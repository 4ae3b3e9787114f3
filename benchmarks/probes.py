"""One layer of each family, measured the same way: float32, bf16 autocast, `torch.compile`.

The layer is what `conv=<family>` puts into a model for a `k x k` convolution with
`C -> C` channels (`padding = k // 2`): the family's `ConvFactory` called once, or, for a
whole-model family, its `ModelConversion` applied to a one-convolution net. Each mode runs
forward + backward of `out.float().sum()` on the same input and reports the median
latency and the peak memory of one step.

No mode falls back silently:

- bf16 autocast: every module with its own parameters must return bfloat16; a layer that
  still computes in float32 (e.g. a custom op autocast does not know) fails the mode with
  a message naming it;
- `torch.compile(fullgraph=True)`: a graph break is an error, not a silent return to eager.

A failed mode is recorded with its one-line error; the other modes still run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from hydra.utils import instantiate
from torch import Tensor, nn

from engine.cli import compose
from engine.nets import is_model_conversion
from engine.profiling import count_parameters, median_ms, peak_memory_mb
from layers.factory import standard_conv

MODES = ("float32", "bf16_autocast", "compile")


@dataclass(frozen=True)
class ProbeShape:
    batch: int
    channels: int
    size: int  # height = width
    kernel: int
    warmup: int
    repeats: int

    def describe(self) -> str:
        return f"{self.batch}x{self.channels}x{self.size}x{self.size} input, {self.kernel}x{self.kernel} kernel, {self.channels} -> {self.channels} channels"


QUICK_SHAPE = ProbeShape(batch=2, channels=16, size=32, kernel=7, warmup=2, repeats=5)
FULL_SHAPE = ProbeShape(batch=8, channels=32, size=64, kernel=7, warmup=3, repeats=10)


class SilentFallback(RuntimeError):
    """A mode would run (part of) the layer in another precision or path than asked."""


def build_layer(conv: str, shape: ProbeShape) -> nn.Module:
    """The module `conv=<conv>` builds for one `k x k` convolution (see the module docstring)."""
    cfg = compose([f"conv={conv}", f"dataset.input_size=[{shape.size},{shape.size}]", f"dataset.in_channels={shape.channels}"])
    if is_model_conversion(cfg.conv):
        plain = nn.Sequential(standard_conv(shape.channels, shape.channels, shape.kernel, padding=shape.kernel // 2))
        return instantiate(cfg.conv)(plain)
    return instantiate(cfg.conv)(shape.channels, shape.channels, shape.kernel, padding=shape.kernel // 2)


def _is_activation(value: object, x: Tensor) -> bool:
    """A tensor of the data path (batch and rank of `x`), not e.g. a kernel network's coordinate grid."""
    return isinstance(value, Tensor) and value.is_floating_point() and value.ndim == x.ndim and value.shape[0] == x.shape[0]


def check_bf16_outputs(module: nn.Module, x: Tensor) -> None:
    """Run `module(x)` under bf16 autocast; raise `SilentFallback` naming the first module with
    parameters that takes an activation (a tensor with the batch and rank of `x`) and does not
    return bfloat16. `x` needs a batch of 2 or more, so activations are told from kernel grids."""
    if x.shape[0] < 2:
        raise ValueError(f"check_bf16_outputs: needs a batch of >= 2 samples, got input {tuple(x.shape)}")
    offenders: list[str] = []

    def hook(name: str) -> Callable:
        def check(mod: nn.Module, inputs: tuple, output: object) -> None:
            if not any(_is_activation(value, x) for value in inputs):
                return
            outputs = output if isinstance(output, (tuple, list)) else (output,)
            for tensor in outputs:
                if isinstance(tensor, Tensor) and tensor.is_floating_point() and tensor.dtype != torch.bfloat16:
                    offenders.append(f"{type(mod).__name__} ({name or 'the layer'}) returns {tensor.dtype}")

        return check

    handles = [
        sub.register_forward_hook(hook(name))
        for name, sub in module.named_modules()
        if any(True for _ in sub.parameters(recurse=False))
    ]
    try:
        with torch.autocast(x.device.type, dtype=torch.bfloat16), torch.no_grad():
            module(x)
    finally:
        for handle in handles:
            handle.remove()
    if offenders:
        raise SilentFallback(f"under bf16 autocast {offenders[0]}: it computes in float32 (no bf16 path under autocast)")


def _step(module: Callable[[Tensor], Tensor], x: Tensor, autocast: bool) -> Callable[[], None]:
    def forward_backward() -> None:
        x.grad = None
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=autocast):
            out = module(x)
        out = out[0] if isinstance(out, (tuple, list)) else out
        out.float().sum().backward()

    return forward_backward


def measure_mode(layer: nn.Module, x: Tensor, mode: str, shape: ProbeShape, compile_backend: str) -> dict:
    """`{"status": "ok", "fwd_bwd_ms", "peak_mb", ...}` or `{"status": "failed", "error": ...}`."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r} is not one of {MODES}")
    try:
        extra: dict = {}
        module: Callable[[Tensor], Tensor] = layer
        if mode == "bf16_autocast":
            check_bf16_outputs(layer, x)
        if mode == "compile":
            torch._dynamo.reset()
            module = torch.compile(layer, fullgraph=True, backend=compile_backend)
            extra["backend"] = compile_backend
            extra["first_call_s"] = median_ms(_step(module, x, False), x.device, warmup=0, repeats=1) / 1e3
        step = _step(module, x, mode == "bf16_autocast")
        fwd_bwd_ms = median_ms(step, x.device, shape.warmup, shape.repeats)
        layer.zero_grad(set_to_none=True)
        x.grad = None
        peak = peak_memory_mb(step, x.device)
    except Exception as error:  # any failure of a mode is reported, never hidden
        message = " ".join(str(error).split()) or type(error).__name__
        return {"status": "failed", "error": f"{type(error).__name__}: {message[:300]}"}
    return {"status": "ok", "fwd_bwd_ms": fwd_bwd_ms, "peak_mb": peak, "repeats": shape.repeats, "warmup": shape.warmup, **extra}


def probe_family(conv: str, shape: ProbeShape, device: str, compile_backend: str, progress: Callable[[str], None]) -> dict:
    """All modes of the layer of `conv=<conv>`; a layer that cannot be built fails every mode."""
    try:
        layer = build_layer(conv, shape).to(device).train()
    except Exception as error:
        message = f"cannot build the layer: {type(error).__name__}: {' '.join(str(error).split())[:300]}"
        return {"params": None, "modes": {mode: {"status": "failed", "error": message} for mode in MODES}}
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape.batch, shape.channels, shape.size, shape.size, generator=generator).to(device).requires_grad_()
    modes = {}
    for mode in MODES:
        progress(f"layer conv={conv}: {mode}")
        modes[mode] = measure_mode(layer, x, mode, shape, compile_backend)
    return {"params": count_parameters(layer), "module": type(layer).__name__, "modes": modes}


def add_ratios(layers: dict[str, dict], baseline: str = "standard") -> None:
    """Set `ratio_fwd_bwd` and `ratio_peak_mb` (this layer / the baseline layer, same mode) in place."""
    reference = layers.get(baseline)
    for result in layers.values():
        for mode, measured in result["modes"].items():
            base = reference["modes"].get(mode) if reference else None
            if measured["status"] == "ok" and base and base["status"] == "ok":
                measured["ratio_fwd_bwd"] = measured["fwd_bwd_ms"] / base["fwd_bwd_ms"]
                measured["ratio_peak_mb"] = measured["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else None
