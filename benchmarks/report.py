"""Write a suite report (`benchmarks.suite.run_device`) as JSON, a Markdown table and a PNG chart.

Every time is written with its ratio to the baseline measured in the same run; a failed
measurement is written as "fails" with its error listed under the table.
"""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.probes import MODES
from benchmarks.roofline import PATHS
from engine.profiling import format_count

MODE_LABELS = {"float32": "float32", "bf16_autocast": "bf16 autocast", "compile": "torch.compile"}


def write(result: dict, stem: Path) -> list[Path]:
    """`<stem>.json`, `<stem>.md` and `<stem>.png`."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [stem.with_suffix(".json"), stem.with_suffix(".md"), stem.with_suffix(".png")]
    paths[0].write_text(json.dumps(result, indent=2, default=str) + "\n")
    paths[1].write_text(markdown(result, paths[2].name))
    chart(result, paths[2])
    return paths


def _ms(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def _ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}x"


def header(result: dict, chart_name: str) -> list[str]:
    machine, settings = result["machine"], result["settings"]
    load = machine["load_average_1_5_15min"]
    lines = [
        f"# Benchmark suite: {settings['device']}, {machine['date']}",
        "",
        f"Written by `{result['command']}` in {result['wall_s']:.0f} s on {machine['summary']}; "
        f"{machine['torch_threads']} torch threads; precision: {settings['precision']}; "
        f"`torch.compile` backend `{settings['compile_backend']}` with `fullgraph=True`. "
        f"1-minute load average {load['start'][0]:.1f} at the start, {load['end'][0]:.1f} at the end. "
        f"Families: {', '.join(settings['families'])}. Chart: [{chart_name}]({chart_name}).",
        "",
    ]
    if settings["note"]:
        lines += [f"> {settings['note']}", ""]
    bandwidth = result["bandwidth"]
    lines += [
        "## Memory bandwidth",
        "",
        f"Measured in this run on a {bandwidth['buffer_mb']:.0f} MB float32 buffer: copy {bandwidth['copy_gb_s']:.1f} GB/s "
        f"(read + write, {bandwidth['copy_ms']:.1f} ms), sum {bandwidth['sum_gb_s']:.1f} GB/s (read, {bandwidth['sum_ms']:.1f} ms).",
        "",
    ]
    return lines


def layer_table(result: dict) -> list[str]:
    settings = result["settings"]
    lines = [
        "## One layer per family",
        "",
        f"What `conv=<family>` builds for one convolution: {settings['layer_shape']}; forward + backward of "
        f"`out.float().sum()`, median of {settings['layer_timing']['repeats']} after {settings['layer_timing']['warmup']} warm-up; "
        "peak memory of one step. `x plain`: this layer / the plain `nn.Conv2d` in the same mode and run.",
        "",
        "| family | module | params | " + " | ".join(f"{MODE_LABELS[mode]} ms | x plain | peak MB | x plain" for mode in MODES) + " |",
        "|---|---|---:|" + "---:|---:|---:|---:|" * len(MODES),
    ]
    errors = []
    for name, layer in result["layers"].items():
        cells = []
        for mode in MODES:
            measured = layer["modes"][mode]
            if measured["status"] == "ok":
                cells += [_ms(measured["fwd_bwd_ms"]), _ratio(measured.get("ratio_fwd_bwd")), f"{measured['peak_mb']:.1f}", _ratio(measured.get("ratio_peak_mb"))]
            else:
                cells += ["fails", "", "", ""]
                errors.append(f"- {name}, {MODE_LABELS[mode]}: {measured['error']}")
        params = "" if layer["params"] is None else f"{layer['params']:,}"
        lines.append(f"| {name} | {layer.get('module', '')} | {params} | " + " | ".join(cells) + " |")
    compiled = [f"{name} {layer['modes']['compile']['first_call_s']:.1f} s" for name, layer in result["layers"].items() if layer["modes"]["compile"]["status"] == "ok"]
    if compiled:
        lines += ["", f"First `torch.compile` call (compilation included): {', '.join(compiled)}."]
    if errors:
        lines += ["", "Failures (no silent fallback: a mode that cannot run as asked fails):", "", *errors]
    return lines + [""]


def family_sections(result: dict) -> list[str]:
    lines = ["## Family benchmarks", ""]
    for name, entry in result["families"].items():
        for extra, outcome in entry["extras"].items():
            lines += [f"### {name}: `{extra}`", "", *_extra_lines(outcome), ""]
        if "own_benchmark" in entry:
            outcome = entry["own_benchmark"]
            lines += [f"### {name}: `{entry['benchmark']}.run`", ""]
            if outcome["status"] == "ok":
                lines.append(f"Ran in {outcome['wall_s']:.0f} s; every figure is in the JSON under `families.{name}.own_benchmark.result`.")
                if outcome.get("markdown"):
                    lines += ["", *_demoted(outcome["markdown"])]
                else:
                    verdicts = outcome["result"].get("verdicts", {}) if isinstance(outcome["result"], dict) else {}
                    lines += [""] + [f"- {target}: {verdict}" for target, verdict in verdicts.items()]
            else:
                lines.append(f"Failed after {outcome['wall_s']:.0f} s: {outcome['error']}")
            lines.append("")
    return lines


def _demoted(markdown: str) -> list[str]:
    """A family's own report inside this one: its headings three levels lower."""
    return [f"###{line}" if line.startswith("#") else line for line in markdown.strip().splitlines()]


def _extra_lines(outcome: dict) -> list[str]:
    if outcome["status"] != "ok":
        return [f"Failed: {outcome['error']}"]
    figures = outcome["result"]
    if "op" not in figures:
        return [f"Figures in the JSON ({', '.join(figures)})."]
    shape = figures["shape"]
    lines = [
        f"Box convolution at {shape['batch']}x{shape['channels']}x{shape['height']}x{shape['width']} {shape['dtype']}, "
        f"{shape['filters']} boxes per channel, {figures['threads']} threads, load {figures['load_average_1min']:.1f}: forward (no grad) "
        "and backward (input and box gradients); `op` as a layer calls it (fresh outputs every call), `kernels` the compiled "
        "kernels alone into buffers allocated once, also on 1 thread (`benchmarks/roofline.py`).",
        "",
        "| path | pass | ms | bytes counted | MB moved | GB/s achieved | of copy bandwidth | of sum bandwidth |",
        "|---|---|---:|---|---:|---:|---:|---:|",
    ]
    labels = {"compulsory": "compulsory (inputs read, outputs written)", "with_integral_image": "+ float32 integral images, as if written and read"}
    for path in PATHS:
        for direction, measured in figures.get(path, {}).items():
            for count, label in labels.items():
                part = measured[count]
                lines.append(f"| {PATHS[path]} | {direction} | {_ms(measured['ms'])} | {label} | {part['bytes'] / 2**20:.1f} | {part['gb_s']:.2f} "
                             f"| {100 * part['of_copy_bandwidth']:.1f}% | {100 * part['of_sum_bandwidth']:.1f}% |")  # fmt: skip
    return lines


def model_table(result: dict) -> list[str]:
    if not result["models"]:
        return []
    timing = result["settings"]["model_timing"]
    lines = [
        "## Models",
        "",
        f"Built as `run_profiler.py net=... dataset=... conv=...` builds them; batch {timing['batch_size']}, median of "
        f"{timing['repeats']} after {timing['warmup']} warm-up; `x baseline`: this model / its plain baseline in the same run.",
        "",
        "| model | net / conv | input | params | MACs / sample | forward ms | fwd+bwd ms | images/s | peak MB | baseline | x baseline time | x baseline memory |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|---:|---:|",
    ]
    errors = []
    for row in result["models"]:
        name = f"{row['net']} / {row['conv']}"
        if row["status"] != "ok":
            lines.append(f"| {row['label']} | {name} | | | | fails | | | | {row['baseline'] or ''} | | |")
            errors.append(f"- {row['label']}: {row['error']}")
            continue
        lines.append(
            f"| {row['label']} | {name} | {'x'.join(map(str, row['input_shape']))} | {row['params']:,} | {format_count(row['macs'])} | "
            f"{_ms(row['fwd_ms'])} | {_ms(row['fwd_bwd_ms'])} | {row['images_per_s']:.2f} | {row['peak_mem_mb']:.0f} | "
            f"{row['baseline'] or ''} | {_ratio(row.get('ratio_fwd_bwd'))} | {_ratio(row.get('ratio_peak_mb'))} |"
        )
    return lines + ([""] + errors if errors else []) + [""]


def markdown(result: dict, chart_name: str) -> str:
    return "\n".join(header(result, chart_name) + layer_table(result) + family_sections(result) + model_table(result))


def chart(result: dict, path: Path) -> None:
    """Bar charts of the ratios: each layer to the plain layer per mode, each model to its baseline."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2))
    FigureCanvasAgg(figure)
    layers_ax, models_ax = figure.subplots(1, 2)
    names = list(result["layers"])
    width = 0.8 / len(MODES)
    for index, mode in enumerate(MODES):
        ratios = [result["layers"][name]["modes"][mode].get("ratio_fwd_bwd") or 0.0 for name in names]
        layers_ax.bar([position + index * width for position in range(len(names))], ratios, width, label=MODE_LABELS[mode])
    layers_ax.set_xticks([position + width for position in range(len(names))], names)
    layers_ax.axhline(1.0, color="0.4", linewidth=0.8)
    layers_ax.set_yscale("log")
    layers_ax.set_ylabel("fwd+bwd time / plain conv (same mode)")
    layers_ax.set_title(f"one layer ({result['settings']['device']}); missing bar: fails")
    layers_ax.legend(fontsize=8)
    compared = [row for row in result["models"] if row.get("ratio_fwd_bwd") is not None]
    models_ax.bar([row["label"] for row in compared], [row["ratio_fwd_bwd"] for row in compared], color="tab:purple")
    models_ax.axhline(1.0, color="0.4", linewidth=0.8)
    models_ax.set_ylabel("fwd+bwd time / plain baseline model")
    models_ax.set_title("models" if compared else "models (none compared)")
    models_ax.tick_params(axis="x", labelrotation=30)
    figure.suptitle(f"{result['machine']['summary']}, {result['machine']['date']}", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
