"""Effective receptive field of a configured net (Luo et al. 2016, arXiv:1701.04128).

    python -m analysis.erf net=simple_cnn dataset=mnist conv=box paths.data=../shared/data
    python -m analysis.erf net=... dataset=... --checkpoint runs/.../best.ckpt --input data
    python -m analysis.erf --compare standard,box,dcls net=simple_cnn dataset=mnist paths.data=../shared/data

The net is built like every entry point builds it (`engine.nets.build_net`), at
initialisation or with a checkpoint's weights. The ERF of the centre unit of its last
feature map (`layers.receptive_field`) is saved as a heat-map PNG with `erf.json`; the
radii holding 50% and 90% of the mass are printed and logged to every configured logger
(`logger=wandb`: W&B gets the picture too). `--compare` trains the net briefly with each
family at the parameter budget of `conv=standard` and draws all ERFs in one figure
(`analysis.compare`). Hydra overrides (`key=value`) and the options below mix freely.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from analysis.compare import compare
from analysis.erf_io import INPUTS, default_out, output_folder_help, sample_inputs
from analysis.plots import save_erf_figure
from engine.cli import check_command_line, choices_of, compose, reporting_user_errors
from engine.config import ConfigError
from engine.experiment import flatten_config, load_net_weights
from engine.loggers import RunContext, finish_runs
from engine.nets import build_net
from layers.receptive_field import EffectiveReceptiveField, effective_receptive_field


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="python -m analysis.erf", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, default=None, help="load the net's weights from this checkpoint (default: initialisation)")
    parser.add_argument("--samples", type=int, default=16, help="inputs whose gradient magnitudes are summed")
    parser.add_argument("--input", choices=INPUTS, default="noise", help="standard-normal inputs or the first validation samples")
    parser.add_argument("--layer", default=None, help="module whose centre unit is used (default: the last feature map)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the noise inputs and of the net's initialisation")
    parser.add_argument("--out", type=Path, default=None, help=f"output folder (default: {output_folder_help()})")
    parser.add_argument("--compare", default=None, help="comma-separated conv families trained briefly and compared at matched parameters")
    parser.add_argument("--epochs", type=int, default=1, help="--compare: training epochs per family")
    parser.add_argument("--train-batches", type=int, default=100, help="--compare: training batches per epoch")
    args, rest = parser.parse_known_args(argv)
    not_overrides = [arg for arg in rest if arg.startswith("-") or "=" not in arg]
    if not_overrides:
        parser.error(f"unrecognised arguments {' '.join(not_overrides)}: give options as --name value and Hydra overrides as key=value")
    for name in ("samples", "epochs", "train_batches"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')}={getattr(args, name)} must be >= 1")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        parser.error(f"--checkpoint {args.checkpoint}: no such file")
    if args.compare is not None and args.checkpoint is not None:
        parser.error("--compare trains every family from scratch; it takes no --checkpoint")
    return args, rest


def log_erf(cfg: DictConfig, out: Path, name: str, erf: EffectiveReceptiveField, picture: Path) -> None:
    """Radii (and, where the logger takes images, the heat map) to every logger of `cfg.logger`."""
    context = RunContext(run_dir=out, name=name, config=flatten_config(cfg), debug=cfg.debug)
    loggers = [instantiate(node, _partial_=True)(context=context) for node in cfg.logger.values() if node is not None]
    for logger in loggers:
        logger.log_metrics({f"erf/{key}": value for key, value in erf.radii().items()}, step=0)
        if callable(getattr(logger, "log_image", None)):
            logger.log_image(key="erf/heatmap", images=[str(picture)], caption=[name], step=0)
        logger.save()
    finish_runs(loggers)


def single(args: argparse.Namespace, overrides: list[str]) -> dict:
    """The ERF of one configured net; writes `erf.png` and `erf.json` into the output folder."""
    cfg = compose(overrides)
    choices = choices_of(cfg)
    torch.manual_seed(args.seed)
    with reporting_user_errors():
        net = build_net(cfg)
        if args.checkpoint is not None:
            load_net_weights(SimpleNamespace(net=net), args.checkpoint, strict=cfg.pretrained_strict)
        inputs = sample_inputs(cfg, args.input, args.samples, args.seed)
        erf = effective_receptive_field(net, inputs, args.layer)
    out = args.out or default_out(cfg, "single")
    state = f"checkpoint {args.checkpoint.name}" if args.checkpoint else "initialisation"
    radii = erf.radii()
    title = f"{choices['net']}, conv={choices['conv']}, {state}"
    picture = save_erf_figure([(title, erf)], out / "erf.png", f"ERF at {erf.layer or 'the output'}, {args.samples} {args.input} inputs")
    result = {
        "net": choices["net"], "dataset": choices["dataset"], "conv": choices["conv"], "state": state,
        "layer": erf.layer, "feature_shape": list(erf.feature_shape), "inputs": f"{args.samples} {args.input}",
        "radii_px": radii, "centre_of_mass": erf.centre_of_mass().tolist(), "picture": str(picture),
        "command": " ".join(["python -m analysis.erf", *sys.argv[1:]]),
    }  # fmt: skip
    (out / "erf.json").write_text(json.dumps(result, indent=2) + "\n")
    log_erf(cfg, out, f"erf-{cfg.name}", erf, picture)
    print(f"{title}: ERF of the centre unit of {erf.layer or 'the output'} {tuple(erf.feature_shape)}")
    print(f"radius holding 50% of the mass: {radii['r50']:.2f} px; 90%: {radii['r90']:.2f} px")
    print(f"wrote {picture} and {out / 'erf.json'}")
    return result


def main(argv: list[str] | None = None) -> None:
    args, overrides = parse_args(argv)
    try:
        check_command_line(overrides)
        if args.compare is not None:
            compare(args, overrides)
        else:
            single(args, overrides)
    except ConfigError as error:
        print(f"error: {' '.join(str(error).split())}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
