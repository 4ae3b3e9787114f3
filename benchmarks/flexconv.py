"""Benchmark: FlexConv against the authors' implementation (rjbruin/flexconv), its kernel
generation, where the FFT path overtakes the spatial one, and FlexNet-3's MNIST epoch time.

All timings are forward + backward of `out.sum()` (an input that requires a gradient),
timed interleaved (`time_interleaved`: the paths take turns, one call each per round, so
a load that comes and goes falls on all of them alike) on two clocks, wall time and this
process's CPU time; a ratio is the median over rounds of the per-round ratio.

- `reference` (only when a checkout of rjbruin/flexconv is installed outside the repository,
  `git clone https://github.com/rjbruin/flexconv $FARCONV_REFS/flexconv`, see
  `benchmarks/references.py`; otherwise skipped, and the report says why): the authors'
  `ckconv.nn.FlexConv` and ours with the same weights (kernel network, mask, bias copied from
  theirs) at batch 64, 32 -> 32 channels, 32 x 32, horizon 33, with masks cropping the kernel to
  5x5, 13x13 and 33x33; and FlexNet-7 (their `models.ckresnet.Img_ResNet` with the CIFAR-10
  settings, ours `models.flexnet.FlexNet`), whole net, train mode, same weights. Their crop
  keeps the samples strictly inside the mask's threshold radius, as ours does with
  `mask_crop="inside"` (`layers.flexconv.mask.crop_window`; the paper recipes
  `experiment=flexnet7_cifar10` and `flextcn_sequences` set `mask.crop=inside`), so our layers
  crop exactly as theirs and the outputs are compared (eval mode). FlexNet-7 is also timed
  with the framework's default crop (`mask.crop=cover`: also the first sample beyond the
  radius, 7x7 instead of 5x5 at the initial mask).
- `layers`: our FlexConv2d (FlexNet-7's widest layer, 48 -> 48 channels, 32 x 32) at 5x5, 17x17
  and 33x33 masks, FlexConv1d and CKConv1d at sMNIST shapes, on the path `impl="auto"` picks:
  the share of the layer's time spent generating the kernel (kernel network + mask, forward +
  backward of a random projection of the kernel).
- `crossover`: `spatial_conv` against `fft_conv` for growing kernels, 2-D (batch 64, 32 -> 32,
  32 x 32) and 1-D (length 784): the size from which the FFT is faster at every larger size
  measured, which `layers.flexconv.functional.FFT_THRESHOLDS` and `conv.fft_threshold` take.
- `flexnet3`: training steps of FlexNet-3 (`net=flexnet3 conv=flex
  kernel.regularize.target=gabor+mask`, batch 64, AdamW, cross-entropy plus the anti-aliasing
  penalty) on synthetic MNIST-shaped batches at 14x14 (the cross-resolution source) and 28x28,
  extrapolated to an epoch (54000 training images: MNIST less the 10% validation split).
  Data loading is not included.

    python benchmarks/flexconv.py --device cpu --threads 2 --out benchmarks/results

writes `flexconv_<device>.json` and `flexconv_<device>.md` (`flexconv_<device>_quick.*` with
`--quick`: batch 4, narrower layers, fewer sizes and steps; about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import statistics
import sys
import time
import types
from functools import partial
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root is the import root

from benchmarks.machine import describe_machine  # noqa: E402
from benchmarks.references import load_reference  # noqa: E402
from engine.profiling import peak_memory_mb  # noqa: E402
from layers.flexconv import CKConv1d, FlexConv1d, FlexConv2d, MAGNet, fft_conv, flex_conv, spatial_conv  # noqa: E402
from layers.flexconv.ckconv import CKConv  # noqa: E402
from layers.flexconv.functional import use_fft  # noqa: E402
from layers.flexconv.mask import crop_window, threshold_radius  # noqa: E402
from models.flexnet import FlexNet  # noqa: E402

TARGET_SHARE = 0.20  # kernel generation should take at most this share of the layer's time
TARGET_SPEEDUP = 1.1  # ours against the authors' FlexConv, every kernel size and FlexNet-7
REFERENCE = "flexconv"  # the checkout's folder under $FARCONV_REFS
REFERENCE_SOURCE = "https://github.com/rjbruin/flexconv"
HORIZON = 33
# Our FlexNet-7 with the reference's crop (the paper recipe's) and with the framework's default.
SAME_CROP, DEFAULT_CROP = "ours, mask.crop=inside (experiment=flexnet7_cifar10)", "ours, mask.crop=cover (default)"
MNIST_TRAIN_IMAGES = 54000  # 60000 less the 10% validation split (cfg/common/datamodule.yaml)


def log(message: str) -> None:
    print(f"[flexconv benchmark] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true", help="batch 4, narrower layers, fewer sizes and steps, 2 rounds")
    parser.add_argument("--batch", type=int, default=None, help="default: 64 (4 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timed rounds per comparison (default 5; 2 with --quick)")
    parser.add_argument("--steps", type=int, default=None, help="timed FlexNet-3 training steps per resolution (default 200; 5 with --quick)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--parts", nargs="+", default=["reference", "layers", "crossover", "flexnet3"], choices=["reference", "layers", "crossover", "flexnet3"])
    parser.add_argument("--note", default="", help="written at the top of the results, e.g. the load average and that the machine was shared")
    parser.add_argument("--reuse", type=Path, default=None, help="JSON report of an earlier run whose parts (and their load averages) stand in for those not in --parts")
    parser.add_argument("--before", type=Path, default=None, help="JSON report of an earlier run (e.g. of the parent commit) whose speed-ups are listed beside this run's")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.batch = args.batch or (4 if args.quick else 64)
    args.repeats = args.repeats or (2 if args.quick else 5)
    args.steps = args.steps or (5 if args.quick else 200)
    if min(args.batch, args.repeats, args.steps) < 1 or (args.threads is not None and args.threads < 1):
        parser.error(f"--batch={args.batch}, --repeats={args.repeats}, --steps={args.steps} and --threads={args.threads} must be >= 1")
    return args


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(steps: dict[str, Callable[[], object]], device: torch.device, repeats: int, warmup: int = 1) -> dict[str, dict[str, list[float]]]:
    """`{name: {"wall": [ms per round], "cpu": [...]}}`; within a round the steps take turns, starting one later each round."""
    times = {name: {"wall": [], "cpu": []} for name in steps}
    for round_index in range(warmup + repeats):
        names = list(steps)
        names = names[round_index % len(names) :] + names[: round_index % len(names)]
        for name in names:
            _synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            steps[name]()
            _synchronize(device)
            if round_index >= warmup:
                times[name]["wall"].append((time.perf_counter() - wall) * 1e3)
                times[name]["cpu"].append((time.process_time() - cpu) * 1e3)
    return times


def speedup(times: dict[str, dict[str, list[float]]], baseline: str, name: str, clock: str = "wall") -> float:
    """How many times faster `name` is than `baseline`: the median over rounds of the per-round ratio."""
    return statistics.median(b / a for a, b in zip(times[name][clock], times[baseline][clock]))


def medians(times: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float]]:
    return {name: {clock: statistics.median(values) for clock, values in clocks.items()} for name, clocks in times.items()}


def fwd_bwd(module: Callable[[Tensor], Tensor], x: Tensor, parameters: list[nn.Parameter]) -> Callable[[], None]:
    def step() -> None:
        x.grad = None
        for parameter in parameters:
            parameter.grad = None
        module(x).sum().backward()

    return step


# --- the authors' implementation ------------------------------------------------------------


def timed_against_authors(
    theirs: nn.Module, ours: dict[str, nn.Module], x: Tensor, device: torch.device, repeats: int
) -> tuple[dict[str, Callable[[], None]], dict]:
    """Forward + backward of the authors' module and each of `ours` on `x`, timed interleaved;
    returns the steps (keyed `authors` and the names of `ours`) and the row fields `ms`,
    `speedup` and `speedup_cpu` (authors' time / ours, wall and process CPU time)."""
    steps = {"authors": fwd_bwd(theirs, x, list(theirs.parameters()))}
    steps.update({name: fwd_bwd(module, x, list(module.parameters())) for name, module in ours.items()})
    times = time_interleaved(steps, device, repeats)
    timing = {
        "ms": medians(times),
        "speedup": {name: speedup(times, "authors", name) for name in ours},
        "speedup_cpu": {name: speedup(times, "authors", name, "cpu") for name in ours},
    }
    return steps, timing


def load_authors() -> tuple[types.ModuleType | None, types.ModuleType | None, str]:
    """`(ckconv.nn, models.ckresnet, where)` of the checkout, or `(None, None, why not)`.

    Their packages import `pandas` (config flattening) and `srf` (another convolution type),
    neither used by the layers and nets timed here: empty stand-ins are registered while
    importing when they are not installed. farconv's own `models` package leaves
    `sys.modules` while theirs is imported, so the two do not collide."""
    stand_ins = [name for name in ("pandas", "srf", "srf.nn") if name not in sys.modules]
    for name in stand_ins:
        sys.modules[name] = types.ModuleType(name)
    if "srf.nn" in stand_ins:
        sys.modules["srf.nn"].Srf_layer_shared = None  # type: ignore[attr-defined]
    ours = {name: module for name, module in sys.modules.items() if name == "models" or name.startswith("models.")}
    for name in ours:
        del sys.modules[name]
    try:
        ck, where = load_reference(REFERENCE, "ckconv.nn")
        resnet, _ = load_reference(REFERENCE, "models.ckresnet") if ck is not None else (None, where)
    finally:
        for name in stand_ins:
            sys.modules.pop(name, None)
        sys.modules.update(ours)
    if ck is None:  # references.py does not list this checkout's source: name it
        where = where.replace(f"clone {REFERENCE} there", f"clone {REFERENCE_SOURCE} there")
    return ck, resnet, where


def sigma_for_size(size: int, grid: int = HORIZON, threshold: float = 0.1) -> float:
    """A centred mask width whose threshold radius reaches `(size - 1) / 2 + 0.5` samples: the
    authors' crop (and ours with `mask_crop="inside"`) then keeps `size` samples (odd sizes)."""
    return ((size - 1) // 2 + 0.5) / ((grid - 1) / 2) / threshold_radius(1.0, threshold)


@torch.no_grad()
def copy_flexconv(theirs: nn.Module, ours: CKConv) -> None:
    """Our FlexConv takes the weights of the authors' (MAGNet kernel network, mask, bias)."""
    net = ours.kernel_net
    for mine, their in zip(net.filters, theirs.Kernel.filters):
        mine.linear.weight.copy_(their.linear.weight.view_as(mine.linear.weight))
        mine.linear.bias.copy_(their.linear.bias)
        mine.mu.copy_(their.mu)
        mine.gamma.copy_(their.gamma)
    for mine, their in zip(net.hidden, theirs.Kernel.linear):
        mine.weight.copy_(their.weight.view_as(mine.weight))
        mine.bias.copy_(their.bias)
    net.output.weight.copy_(theirs.Kernel.output_linear.weight.view_as(net.output.weight))
    net.output.bias.copy_(theirs.Kernel.output_linear.bias)
    ours.mask_mean.copy_(theirs.mask_params[:, 0])
    ours.mask_sigma.copy_(theirs.mask_params[:, 1])
    if ours.bias is not None:
        ours.bias.copy_(theirs.bias)


def authors_flexconv(ck: types.ModuleType, channels: int, sigma: float) -> nn.Module:
    return ck.FlexConv(channels, channels, horizon=str(HORIZON), kernel_type="MAGNet", kernel_dim_linear=2, kernel_no_hidden=32,
                       kernel_no_layers=3, kernel_input_scale=25.6, conv_use_fft=False, mask_init_value=sigma)  # fmt: skip


def our_flexconv(channels: int, impl: str = "auto") -> FlexConv2d:
    return FlexConv2d(channels, channels, HORIZON, kernel_net=MAGNet, impl=impl, mask_crop="inside")


def max_difference(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference relative to the largest magnitude of `a`."""
    return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def reference_layers(ck: types.ModuleType, args: argparse.Namespace, device: torch.device) -> list[dict]:
    channels = 8 if args.quick else 32
    x = torch.randn(args.batch, channels, 32, 32, device=device, requires_grad=True)
    rows = []
    for size in [5, 33] if args.quick else [5, 13, 33]:
        torch.manual_seed(size)
        sigma = sigma_for_size(size)
        theirs = authors_flexconv(ck, channels, sigma).to(device)
        paths = {"ours": our_flexconv(channels).to(device)}
        if size < HORIZON:  # the other path too, to see the crossover at this shape (at 33x33 the spatial one is theirs)
            paths["ours, spatial"] = our_flexconv(channels, "spatial").to(device)
            paths["ours, fft"] = our_flexconv(channels, "fft").to(device)
        for layer in paths.values():
            copy_flexconv(theirs, layer)
        with torch.no_grad():
            reference_out = theirs(x)
            difference = max(max_difference(reference_out, layer(x)) for layer in paths.values())
        kernel = list(paths["ours"].kernel_size)
        if kernel != list(theirs.conv_kernel.shape[2:]):
            raise RuntimeError(f"crop mismatch at {size}: ours {kernel}, theirs {list(theirs.conv_kernel.shape[2:])}")
        steps, timing = timed_against_authors(theirs, paths, x, device, args.repeats)
        row = {
            "case": f"FlexConv2d {channels}->{channels}, batch {args.batch}, 32x32, kernel {size}x{size}",
            "kernel_size": kernel,
            "auto_path": "fft" if _auto_is_fft(paths["ours"]) else "spatial",
            "max_rel_difference": difference,
            "peak_mb": {name: peak_memory_mb(step, device) for name, step in steps.items()},
            **timing,
        }
        log(f"reference {row['case']}: {row['speedup']} (difference {difference:.1e})")
        rows.append(row)
    return rows


def _auto_is_fft(layer: CKConv) -> bool:
    return use_fft(tuple(layer.kernel_size), "auto", layer.fft_threshold)


def authors_flexnet(resnet: types.ModuleType, in_channels: int, num_classes: int, blocks: int, widths: list[float]) -> nn.Module:
    """Their `Img_ResNet` with the settings of their CIFAR-10 FlexNet runs (MAGNet of 32 units, 3
    layers, input scale 25.6, horizon 33, Gaussian mask from 0.075, threshold 0.1, BatchNorm, dropout 0.2)."""
    from omegaconf import OmegaConf

    net = OmegaConf.create(dict(no_hidden=24, no_blocks=blocks, norm="BatchNorm", dropout=0.2, block_width_factors=widths, nonlinearity="ReLU"))
    kernel = OmegaConf.create(dict(type="MAGNet", dim_linear=2, no_hidden=32, no_layers=3, activ_function="ReLU", norm="BatchNorm", omega_0=0.0,
                                   learn_omega_0=False, weight_norm=False, steerable=False, init_spatial_value=1.0, bias_init=None,
                                   input_scale=25.6, sampling_rate_norm=1.0, srf=dict(scale=0.0)))  # fmt: skip
    conv = OmegaConf.create(dict(type="FlexConv", use_fft=False, horizon=str(HORIZON), padding="same", stride=1, bias=True))
    mask = OmegaConf.create(dict(use=True, type="gaussian", init_value=0.075, temperature=15.0, dynamic_cropping=True, threshold=0.1))
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line per block
        return resnet.Img_ResNet(in_channels, num_classes, net, kernel, conv, mask)


@torch.no_grad()
def copy_flexnet(theirs: nn.Module, ours: FlexNet) -> None:
    """Module by module: stem, each block's two FlexConvs, norms and shortcut, the classifier."""

    def norm(mine: nn.BatchNorm2d, their: nn.BatchNorm2d) -> None:
        mine.load_state_dict(their.state_dict())

    copy_flexconv(theirs.cconv1, ours.stem[0])
    norm(ours.stem[1], theirs.norm1)
    for mine, their in zip(ours.blocks, theirs.blocks):
        copy_flexconv(their.cconv1, mine.conv1)
        copy_flexconv(their.cconv2, mine.conv2)
        norm(mine.norm1, their.norm1)
        norm(mine.norm2, their.norm2)
        if len(their.shortcut):
            mine.shortcut.load_state_dict(their.shortcut[0].state_dict())
    ours.head.weight.copy_(theirs.out_layer.weight.view_as(ours.head.weight))
    ours.head.bias.copy_(theirs.out_layer.bias)


def reference_flexnet(resnet: types.ModuleType, args: argparse.Namespace, device: torch.device) -> dict:
    blocks, widths = (2, [1.0, 1, 1.5, 1]) if args.quick else (7, [1.0, 2, 1.5, 3, 2.0, 2])
    torch.manual_seed(7)
    theirs = authors_flexnet(resnet, 3, 10, blocks, widths).to(device)
    start, stop = crop_window(HORIZON, 0.0, 0.075, 0.1, causal=False, rule="inside")  # their crop of the initial mask
    initial_size = stop - start

    def ours(crop: str) -> FlexNet:
        conv = partial(flex_conv, horizon=HORIZON, kernel_net=partial(MAGNet, hidden_channels=32, num_layers=3, input_scale=25.6), mask_crop=crop)
        net = FlexNet(3, 10, [32, 32], hidden_channels=24, num_blocks=blocks, block_width_factors=widths, dropout=0.2, conv=conv).to(device)
        copy_flexnet(theirs, net)
        return net

    nets = {SAME_CROP: ours("inside"), DEFAULT_CROP: ours("cover")}
    x = torch.randn(args.batch, 3, 32, 32, device=device, requires_grad=True)
    for net in (theirs, *nets.values()):
        net.eval()
    with torch.no_grad():
        outputs = {name: net(x) for name, net in nets.items()}
        difference = max_difference(theirs(x), outputs[SAME_CROP])
    kernels = {name: list(net.stem[0].kernel_size) for name, net in nets.items()}
    for net in (theirs, *nets.values()):
        net.train()
    _, timing = timed_against_authors(theirs, nets, x, device, args.repeats)
    row = {
        "case": f"FlexNet-{blocks}, batch {args.batch}, 3x32x32, train mode",
        "kernel_size_authors": [initial_size, initial_size],
        "kernel_size": kernels,
        "max_rel_difference_same_crop": difference,
        **timing,
    }
    log(f"reference {row['case']}: {row['speedup']} (difference {difference:.1e})")
    return row


def reference_cases(args: argparse.Namespace, device: torch.device) -> dict:
    ck, resnet, where = load_authors()
    if ck is None or resnet is None:
        log(f"reference skipped: {where}")
        return {"available": False, "why": where}
    return {"available": True, "where": where, "layers": reference_layers(ck, args, device), "flexnet": reference_flexnet(resnet, args, device)}


# --- our layers -----------------------------------------------------------------------------


def generation_ms(layer: CKConv, input_size: tuple[int, ...], repeats: int, device: torch.device) -> float:
    """Median latency of generating the layer's kernel and back-propagating into the kernel network."""
    projection = torch.randn(layer.generate_kernel(input_size).shape, device=device)

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        (layer.generate_kernel(input_size) * projection).sum().backward()

    return medians(time_interleaved({"generation": step}, device, repeats))["generation"]["wall"]


def layer_case(name: str, layer: CKConv, x: Tensor, repeats: int) -> dict:
    layer(x)  # fixes the grid and the crop
    path = "fft" if _auto_is_fft(layer) else "spatial"
    layer_ms = medians(time_interleaved({"layer": fwd_bwd(layer, x, list(layer.parameters()))}, x.device, repeats))["layer"]["wall"]
    generate_ms = generation_ms(layer, tuple(x.shape[2:]), repeats, x.device)
    log(f"{name}: kernel {layer.kernel_size} ({path}), layer {layer_ms:.1f} ms, generation {generate_ms:.1f} ms")
    return {"case": name, "input": list(x.shape), "kernel_size": list(layer.kernel_size), "path": path, "layer_ms": layer_ms,
            "generation_ms": generate_ms, "generation_share": generate_ms / layer_ms}  # fmt: skip


def layer_cases(args: argparse.Namespace, device: torch.device) -> list[dict]:
    torch.manual_seed(0)
    results = []
    width = 16 if args.quick else 48
    x2 = torch.randn(args.batch, width, 32, 32, device=device, requires_grad=True)
    for size in [5, 33] if args.quick else [5, 17, 33]:
        layer = FlexConv2d(width, width, HORIZON, kernel_net=MAGNet, mask_crop="inside").to(device)
        with torch.no_grad():
            layer.mask_sigma.fill_(sigma_for_size(size))
        results.append(layer_case(f"FlexConv2d {width}->{width}, 32x32, mask {size}x{size}", layer, x2, args.repeats))
    x1 = torch.randn(args.batch, 30, 784, device=device, requires_grad=True)
    results.append(layer_case("FlexConv1d 30->30, L=784, initial mask", FlexConv1d(30, 30, kernel_net=MAGNet).to(device), x1, args.repeats))
    if not args.quick:
        results.append(layer_case("CKConv1d 30->30, L=784, whole sequence", CKConv1d(30, 30, kernel_net=MAGNet).to(device), x1, args.repeats))
    return results


def crossover(args: argparse.Namespace, device: torch.device) -> dict:
    """Spatial vs FFT forward+backward per kernel size (interleaved); the size from which the FFT
    is faster (wall time) at every larger size measured."""
    torch.manual_seed(1)
    settings = {
        "2d": ((args.batch, 8 if args.quick else 32, 32, 32), [3, 9, 17] if args.quick else [3, 5, 7, 9, 11, 13, 15, 17, 21, 25]),
        "1d": ((args.batch, 8 if args.quick else 30, 784), [7, 31, 255] if args.quick else [3, 5, 7, 9, 11, 15, 23, 31, 47, 63, 127, 255]),
    }
    report = {}
    for dim, (shape, sizes) in settings.items():
        x = torch.randn(shape, device=device, requires_grad=True)
        causal = dim == "1d"
        rows = []
        for size in sizes:
            kernel = (torch.randn(shape[1], shape[1], *([size] * (len(shape) - 2)), device=device) / size).requires_grad_()
            steps = {conv.__name__: partial(lambda c: c(x, kernel, causal=causal).sum().backward(), conv) for conv in (spatial_conv, fft_conv)}
            times = medians(time_interleaved(steps, device, args.repeats))
            rows.append({"kernel_size": size, "spatial_ms": times["spatial_conv"]["wall"], "fft_ms": times["fft_conv"]["wall"],
                         "spatial_cpu_ms": times["spatial_conv"]["cpu"], "fft_cpu_ms": times["fft_conv"]["cpu"]})  # fmt: skip
            log(f"crossover {dim} k={size}: spatial {rows[-1]['spatial_ms']:.1f} ms, fft {rows[-1]['fft_ms']:.1f} ms")
        faster_from = None
        for row in reversed(rows):
            if row["fft_ms"] >= row["spatial_ms"]:
                break
            faster_from = row["kernel_size"]
        threshold = faster_from ** (len(shape) - 2) if faster_from is not None else None
        report[dim] = {"input": list(shape), "rows": rows, "fft_faster_from": faster_from, "threshold_elements": threshold}
    return report


def flexnet3_epoch(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Training steps of FlexNet-3 on MNIST-shaped batches, built from the configs as `run_experiment.py` builds it."""
    from engine.cli import compose
    from engine.nets import build_net

    rows = []
    for side in [14, 28]:
        overrides = ["net=flexnet3", "conv=flex", "dataset=mnist", f"dataset.input_size=[{side},{side}]", "kernel.regularize.target=gabor+mask", f"train.batch_size={args.batch}"]
        cfg = compose(overrides)
        torch.manual_seed(3)
        net = build_net(cfg).to(device).train()
        optimizer = torch.optim.AdamW(net.parameters(), lr=float(cfg.train.lr), weight_decay=float(cfg.train.weight_decay))
        x = torch.randn(args.batch, 1, side, side, device=device)
        y = torch.randint(0, 10, (args.batch,), device=device)

        def step() -> None:
            optimizer.zero_grad(set_to_none=True)
            loss = nn.functional.cross_entropy(net(x), y)
            terms = [term for module in net.modules() if callable(getattr(module, "auxiliary_loss", None)) and (term := module.auxiliary_loss()) is not None]
            (loss + torch.stack(terms).sum() if terms else loss).backward()
            optimizer.step()

        for _ in range(3):
            step()
        times = time_interleaved({"step": step}, device, args.steps, warmup=0)["step"]
        steps_per_epoch = math.ceil(MNIST_TRAIN_IMAGES / args.batch)
        kernels = sorted({tuple(module.kernel_size) for module in net.modules() if isinstance(module, CKConv)})
        row = {"input": f"1x{side}x{side}", "overrides": overrides, "steps": args.steps, "step_ms": statistics.mean(times["wall"]),
               "step_cpu_ms": statistics.mean(times["cpu"]), "steps_per_epoch": steps_per_epoch,
               "epoch_s": statistics.mean(times["wall"]) * steps_per_epoch / 1e3, "kernel_sizes_at_end": [list(k) for k in kernels]}  # fmt: skip
        log(f"FlexNet-3 {row['input']}: {row['step_ms']:.0f} ms/step, epoch ~{row['epoch_s']:.0f} s")
        rows.append(row)
    return rows


def benchmark(args: argparse.Namespace, command: str) -> dict:
    device = torch.device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    report: dict = {"command": command, "note": args.note, "arguments": {**vars(args), "out": str(args.out), "before": args.before and str(args.before), "reuse": args.reuse and str(args.reuse)}, "machine": describe_machine(device),
                    "threads": torch.get_num_threads()}  # fmt: skip
    report["load_average"] = {}  # 1-minute load average at the start and end of each part: on a shared CPU, what the figures ran beside
    for part, measure in (("reference", reference_cases), ("layers", layer_cases), ("crossover", crossover), ("flexnet3", flexnet3_epoch)):
        if part in args.parts:
            start = os.getloadavg()[0]
            report[part] = measure(args, device)
            report["load_average"][part] = [start, os.getloadavg()[0]]
    if args.reuse is not None:
        earlier = json.loads(args.reuse.read_text())
        reused = [part for part in ("reference", "layers", "crossover", "flexnet3") if part not in args.parts and part in earlier]
        for part in reused:
            report[part] = earlier[part]
            report["load_average"][part] = earlier["load_average"][part]
        report["reused"] = {"file": str(args.reuse), "command": earlier["command"], "date": earlier["machine"]["date"], "parts": reused}
    if args.before is not None:
        report["before"] = {"file": str(args.before), "report": json.loads(args.before.read_text())}
    report["verdicts"] = verdicts(report, args)
    report["wall_s"] = time.perf_counter() - started
    return report


def verdicts(report: dict, args: argparse.Namespace) -> dict:
    out = {}
    if "layers" in report:
        worst = max(row["generation_share"] for row in report["layers"])
        out["kernel generation"] = f"at most {worst:.1%} of a layer's time at batch {args.batch} (target <= {TARGET_SHARE:.0%}: {'met' if worst <= TARGET_SHARE else 'NOT met'})"
    reference = report.get("reference", {})
    if reference.get("available"):
        ratios = [row["speedup"]["ours"] for row in reference["layers"]] + [reference["flexnet"]["speedup"][SAME_CROP]]
        out["speed against rjbruin/flexconv"] = (f"{min(ratios):.2f}x to {max(ratios):.2f}x over the kernel sizes and FlexNet-7 (the reference's crop, as the paper recipe) "
                                                 f"(target >= {TARGET_SPEEDUP}x everywhere: {'met' if min(ratios) >= TARGET_SPEEDUP else 'NOT met'})")  # fmt: skip
    return out


def markdown_report(report: dict) -> str:
    machine = report["machine"]
    lines = [f"# FlexConv benchmark ({machine['summary']})", "", f"`{report['command']}`, {machine['date']}, {report['threads']} torch threads, {report['wall_s']:.0f} s."]
    if report["note"]:
        lines += ["", report["note"]]
    if report.get("reused"):
        reused = report["reused"]
        lines += ["", f"Parts {', '.join(reused['parts'])}: from an earlier run on the same machine (`{reused['command']}`, {reused['date']}; "
                  f"`--reuse {reused['file']}`); the rest ran in this one."]  # fmt: skip
    loads = ", ".join(f"{part} {start:.1f} -> {end:.1f}" for part, (start, end) in report.get("load_average", {}).items())
    if loads:
        lines += ["", f"1-minute load average at the start and end of each part: {loads}."]
    rounds = report["arguments"]["repeats"]
    lines += ["", f"Forward + backward, median of {rounds} interleaved rounds after a warm-up round; wall time unless marked CPU (this process's CPU time)."]
    reference = report.get("reference")
    if reference is not None:
        lines += ["", "## Against the authors' FlexConv (rjbruin/flexconv)", ""]
        if not reference["available"]:
            lines += [f"Skipped: {reference['why']}."]
        else:
            lines += [f"Their checkout: `{reference['where']}`. Same weights; our layers with `mask_crop=\"inside\"`, which crops as theirs "
                      "(see the module docstring); `difference`: largest output difference relative to the largest output (eval mode).", "",
                      "`peak`: memory allocated at the high-water mark of one forward + backward (`engine.profiling.peak_memory_mb`), "
                      "ours against theirs; `ours spatial` / `ours fft`: ms (speed-up) of each path forced.", "",
                      "| case | kernel | `auto` takes | authors ms | ours ms | speed-up | speed-up (CPU) | peak | ours spatial | ours fft | difference |",
                      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
            for row in reference["layers"]:
                ms, up = row["ms"], row["speedup"]
                other = [f"{ms[name]['wall']:.0f} ({up[name]:.2f}x)" if name in ms else "-" for name in ("ours, spatial", "ours, fft")]
                lines.append(f"| {row['case']} | {'x'.join(map(str, row['kernel_size']))} | {row['auto_path']} | {ms['authors']['wall']:.0f} | {ms['ours']['wall']:.0f} | "
                             f"**{up['ours']:.2f}x** | {row['speedup_cpu']['ours']:.2f}x | {row['peak_mb']['ours'] / row['peak_mb']['authors']:.2f}x | "
                             f"{other[0]} | {other[1]} | {row['max_rel_difference']:.1e} |")  # fmt: skip
            net = reference["flexnet"]
            lines += ["", f"{net['case']}: their kernels {'x'.join(map(str, net['kernel_size_authors']))} at the initial mask, "
                      f"difference (same crop) {net['max_rel_difference_same_crop']:.1e}.", "",
                      "| net | stem kernel | ms | speed-up | speed-up (CPU) |", "|---|---|---:|---:|---:|",
                      f"| authors | {'x'.join(map(str, net['kernel_size_authors']))} | {net['ms']['authors']['wall']:.0f} | 1.00x | 1.00x |"]  # fmt: skip
            for name, size in net["kernel_size"].items():
                lines.append(f"| {name} | {'x'.join(map(str, size))} | {net['ms'][name]['wall']:.0f} | **{net['speedup'][name]:.2f}x** | {net['speedup_cpu'][name]:.2f}x |")
    if "before" in report and reference is not None and reference.get("available"):
        lines += before_table(report)
    if "crossover" in report:
        lines += ["", "## FFT against spatial convolution"]
        for dim, part in report["crossover"].items():
            lines += ["", f"{dim}, input {part['input']} (forward + backward, ms):", "", "| kernel | spatial | fft | spatial CPU | fft CPU |", "|---:|---:|---:|---:|---:|"]
            lines += [f"| {r['kernel_size']} | {r['spatial_ms']:.1f} | {r['fft_ms']:.1f} | {r['spatial_cpu_ms']:.1f} | {r['fft_cpu_ms']:.1f} |" for r in part["rows"]]
            lines += ["", f"FFT faster from kernel size {part['fft_faster_from']} on (threshold {part['threshold_elements']} kernel elements)."
                      if part["fft_faster_from"] else "FFT never faster at every larger size in this range."]  # fmt: skip
    if "layers" in report:
        lines += ["", "## Kernel generation", "", "| case | kernel | path | layer ms | generation ms | share |", "|---|---|---|---:|---:|---:|"]
        for row in report["layers"]:
            lines.append(f"| {row['case']} | {'x'.join(map(str, row['kernel_size']))} | {row['path']} | {row['layer_ms']:.1f} | {row['generation_ms']:.1f} | {row['generation_share']:.1%} |")
    if "flexnet3" in report:
        lines += ["", "## FlexNet-3 on MNIST: one epoch, extrapolated", "",
                  "Training steps (forward, cross-entropy + anti-aliasing penalty, backward, AdamW) on synthetic batches; data loading excluded. "
                  "The epoch time is the mean step time times the steps of one epoch, not a measured epoch; the masks (and with them the "
                  "kernels) grow during real training, which these steps from initialisation do not show.", "",
                  "| input | steps timed | ms / step | CPU ms / step | steps / epoch | epoch (extrapolated) | kernels |", "|---|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        for row in report["flexnet3"]:
            kernels = ", ".join("x".join(map(str, k)) for k in row["kernel_sizes_at_end"])
            lines.append(f"| {row['input']} | {row['steps']} | {row['step_ms']:.0f} | {row['step_cpu_ms']:.0f} | {row['steps_per_epoch']} | {row['epoch_s'] / 60:.1f} min | {kernels} |")
    if report["verdicts"]:
        lines += ["", "## Verdicts", ""] + [f"- {name}: {verdict}" for name, verdict in report["verdicts"].items()]
    return "\n".join(lines) + "\n"


def before_table(report: dict) -> list[str]:
    """This run's speed-ups against the authors beside those of the `--before` report (same cases)."""
    before = report["before"]["report"]
    old = {row["case"]: row for row in before.get("reference", {}).get("layers", [])}
    old_net = before.get("reference", {}).get("flexnet", {})
    lines = ["", f"Before and after: speed-up against the authors in `{report['before']['file']}` ({before['command']}, {before['machine']['date']}; "
             f"{before['note'] or 'no note'}) and in this run.", "", "| case | before | after |", "|---|---:|---:|"]  # fmt: skip
    for row in report["reference"]["layers"]:
        previous = old.get(row["case"], {}).get("speedup", {}).get("ours")
        lines.append(f"| {row['case']} | {f'{previous:.2f}x' if previous else '-'} | {row['speedup']['ours']:.2f}x |")
    net = report["reference"]["flexnet"]
    for name in net["speedup"]:
        previous = old_net.get("speedup", {}).get(name) if old_net.get("case") == net["case"] else None
        lines.append(f"| {net['case']}, {name} | {f'{previous:.2f}x' if previous else '-'} | {net['speedup'][name]:.2f}x |")
    return lines


def run(quick: bool, device: str) -> dict:
    """The benchmark as `python -m benchmarks` calls it: the report, nothing written."""
    return benchmark(parse_args([*(["--quick"] if quick else []), "--device", device]), f"benchmarks.flexconv.run(quick={quick}, device={device!r})")


def main() -> None:
    args = parse_args()
    report = benchmark(args, " ".join(["python", *sys.argv]))
    markdown = markdown_report(report)
    device_type = torch.device(args.device).type
    suffix = "_quick" if args.quick else ""
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"flexconv_{device_type}{suffix}.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / f"flexconv_{device_type}{suffix}.md").write_text(markdown)
    print(markdown)


if __name__ == "__main__":
    main()
