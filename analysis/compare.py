"""`python -m analysis.erf --compare standard,box,...`: the ERF of one net per conv family,
each trained briefly at the parameter budget of `conv=standard`, in one figure.

Budgets are matched by scaling every entry of `net.widths` by one factor, found by
bisection so the family's parameter count comes closest to the plain net's. Each family
is then trained for `--epochs` epochs of `--train-batches` batches by the framework's own
runner (`engine.experiment.build_experiment`; best checkpoint by validation, then the test
set), and its ERF is measured on `--samples` validation inputs. A family whose
`cfg/conv/<name>.yaml` does not exist is skipped and listed as such. Writes
`erf_compare.png`, `erf_compare.json` and `erf_compare.md` into the output folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from omegaconf import DictConfig

from analysis.erf_io import default_out, sample_inputs
from analysis.plots import save_erf_figure
from engine.cli import CONFIG_DIR, choices_of, compose, reporting_user_errors
from engine.config import ConfigError
from engine.experiment import build_experiment
from engine.nets import build_net
from engine.profiling import count_parameters
from layers.receptive_field import EffectiveReceptiveField, effective_receptive_field

BASELINE = "standard"
# Brief, quiet training: no progress bar, no logger, no model summary.
TRAINING = ["logger=none", "trainer.enable_progress_bar=false", "trainer.enable_model_summary=false", "trainer.num_sanity_val_steps=0"]


def parameters_at(overrides: list[str], conv: str, widths: list[int]) -> int:
    cfg = compose([*overrides, f"conv={conv}", f"net.widths=[{','.join(map(str, widths))}]"])
    with reporting_user_errors():
        return count_parameters(build_net(cfg))


def scaled(widths: list[int], factor: float) -> list[int]:
    return [max(1, round(width * factor)) for width in widths]


def matched_widths(overrides: list[str], conv: str, widths: list[int], target: int, steps: int = 14) -> tuple[list[int], int]:
    """`net.widths` scaled by one factor so that `conv=<conv>` has about `target` parameters."""
    low, high = 1 / 16, 16.0
    best = (abs(parameters_at(overrides, conv, widths) - target), widths)
    for _ in range(steps):
        factor = (low * high) ** 0.5
        candidate = scaled(widths, factor)
        count = parameters_at(overrides, conv, candidate)
        best = min(best, (abs(count - target), candidate))
        low, high = (factor, high) if count < target else (low, factor)
    return best[1], parameters_at(overrides, conv, best[1])


def train_and_measure(overrides: list[str], conv: str, widths: list[int], args: argparse.Namespace, run_dir: Path) -> dict:
    """Train `conv=<conv>` briefly, then its test metrics and its ERF on validation inputs."""
    cfg = compose([
        *overrides, f"conv={conv}", f"net.widths=[{','.join(map(str, widths))}]", *TRAINING,
        f"train.epochs={args.epochs}", f"+trainer.limit_train_batches={args.train_batches}", f"seed={args.seed}",
    ])  # fmt: skip
    started = time.perf_counter()
    experiment = build_experiment(cfg, run_dir, choices_of(cfg))
    metrics = experiment.run()
    training_s = time.perf_counter() - started
    net = experiment.task.net.cpu()
    with reporting_user_errors():
        erf = effective_receptive_field(net, sample_inputs(cfg, "data", args.samples, args.seed), args.layer)
    return {"erf": erf, "metrics": metrics, "training_s": training_s}


def measure_family(overrides: list[str], conv: str, widths: list[int], target: int, args: argparse.Namespace, out: Path) -> tuple[dict, EffectiveReceptiveField]:
    """Match the budget, train, measure: the family's row of the results and its ERF."""
    matched, params = matched_widths(overrides, conv, widths, target) if conv != BASELINE else (widths, target)
    print(f"conv={conv}: net.widths={matched} ({params:,} parameters, target {target:,}); training", flush=True)
    torch.manual_seed(args.seed)
    outcome = train_and_measure(overrides, conv, matched, args, out / "runs" / conv)
    erf, metrics = outcome["erf"], outcome["metrics"]
    radii = erf.radii()
    print(f"conv={conv}: r50 {radii['r50']:.2f} px, r90 {radii['r90']:.2f} px, test {metrics}", flush=True)
    row = {
        "conv": conv, "widths": matched, "params": params, "test_metrics": metrics, "training_s": outcome["training_s"],
        "layer": erf.layer, "feature_shape": list(erf.feature_shape), "radii_px": radii,
    }  # fmt: skip
    return row, erf


def available(conv: str) -> bool:
    return (CONFIG_DIR / "conv" / f"{conv}.yaml").is_file()


def compare(args: argparse.Namespace, overrides: list[str]) -> dict:
    families = [name.strip() for name in args.compare.split(",") if name.strip()]
    if not families:
        raise ConfigError(f"--compare {args.compare!r}: name at least one conv family, e.g. standard,box")
    base_cfg: DictConfig = compose(overrides)
    if "widths" not in base_cfg.net:
        raise ConfigError(f"--compare matches parameter budgets by scaling net.widths; net={choices_of(base_cfg)['net']} has none")
    widths = list(base_cfg.net.widths)
    target = parameters_at(overrides, BASELINE, widths)
    out = args.out or default_out(base_cfg, "compare")
    rows, fields, skipped, failed = [], [], [], {}
    for conv in families:
        if not available(conv):
            skipped.append(conv)
            print(f"conv={conv}: skipped (no cfg/conv/{conv}.yaml in this checkout)", flush=True)
            continue
        try:
            row, erf = measure_family(overrides, conv, widths, target, args, out)
        except Exception as error:  # one family's failure is reported; the others still run
            failed[conv] = f"{type(error).__name__}: {' '.join(str(error).split())[:300]}"
            print(f"conv={conv}: failed: {failed[conv]}", flush=True)
            continue
        rows.append(row)
        accuracy = row["test_metrics"].get("test/acc")
        fields.append((f"{conv}: {row['params'] / 1e3:.1f}K params" + (f", acc {100 * accuracy:.1f}%" if accuracy is not None else ""), erf))
    if not fields:
        raise ConfigError(f"--compare {args.compare}: no family could be compared (missing: {', '.join(skipped) or 'none'}; failed: {failed or 'none'})")
    choices = choices_of(base_cfg)
    result = {
        "command": " ".join(["python -m analysis.erf", *sys.argv[1:]]),
        "net": choices["net"], "dataset": choices["dataset"], "parameter_budget": target,
        "training": {
            "epochs": args.epochs, "train_batches_per_epoch": args.train_batches, "seed": args.seed,
            "test_batches": base_cfg.trainer.get("limit_test_batches"), "batch_size": base_cfg.train.batch_size,
        },
        "erf_inputs": f"{args.samples} validation samples", "families": rows, "skipped": skipped, "failed": failed,
    }  # fmt: skip
    picture = save_erf_figure(fields, out / "erf_compare.png", f"{choices['net']} on {choices['dataset']}: ERF after {args.epochs} x {args.train_batches} batches")
    result["picture"] = picture.name
    (out / "erf_compare.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "erf_compare.md").write_text(markdown(result))
    print(f"wrote {picture}, {out / 'erf_compare.json'} and {out / 'erf_compare.md'}")
    return result


def _test_set(training: dict) -> str:
    limit = training.get("test_batches")
    return "the test set" if limit is None else f"the first {limit} test batches of {training['batch_size']}"


def markdown(result: dict) -> str:
    training = result["training"]
    lines = [
        f"# Effective receptive fields: {result['net']} on {result['dataset']}, matched parameter budgets",
        "",
        f"Written by `{result['command']}`. Every family scaled `net.widths` to about {result['parameter_budget']:,} parameters "
        f"(the `conv=standard` net), trained {training['epochs']} epoch(s) of {training['train_batches_per_epoch']} batches "
        f"(seed {training['seed']}), tested on {_test_set(training)}; ERF of the centre unit of the last feature map over "
        f"{result['erf_inputs']}. Picture: [{result['picture']}]({result['picture']}).",
        "",
        "| conv | net.widths | parameters | test accuracy | training s | ERF layer | r50 px | r90 px |",
        "|---|---|---:|---:|---:|---|---:|---:|",
    ]
    for row in result["families"]:
        accuracy = row["test_metrics"].get("test/acc")
        lines.append(
            f"| {row['conv']} | {row['widths']} | {row['params']:,} | {'' if accuracy is None else f'{100 * accuracy:.2f}%'} | "
            f"{row['training_s']:.1f} | {row['layer']} {tuple(row['feature_shape'])} | {row['radii_px']['r50']:.2f} | {row['radii_px']['r90']:.2f} |"
        )
    if result["skipped"]:
        lines += ["", f"Not in this comparison (no `cfg/conv/<name>.yaml` when it ran): {', '.join(result['skipped'])}."]
    for conv, error in result["failed"].items():
        lines += ["", f"conv={conv} failed: {error}"]
    return "\n".join(lines) + "\n"
