"""The effective receptive field: hand-computed maps and radii, layer choice, errors, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from analysis.erf import main
from layers.receptive_field import EffectiveReceptiveField, effective_receptive_field, last_spatial_module


def ones_conv(kernel: int) -> nn.Conv2d:
    conv = nn.Conv2d(1, 1, kernel, padding=kernel // 2, bias=False)
    nn.init.ones_(conv.weight)
    return conv


def field(weights: torch.Tensor) -> EffectiveReceptiveField:
    return EffectiveReceptiveField(weights.double() / weights.sum(), "", (1, *weights.shape))


def test_one_3x3_conv_sees_a_uniform_3x3_square():
    erf = effective_receptive_field(ones_conv(3), torch.randn(2, 1, 9, 9))
    expected = torch.zeros(9, 9, dtype=torch.float64)
    expected[3:6, 3:6] = 1 / 9
    torch.testing.assert_close(erf.weights, expected)
    assert erf.layer == ""  # the conv's own output is the feature map
    assert erf.radii() == pytest.approx({"r50": 1.0, "r90": math.sqrt(2)})  # 5/9 within 1 px, all within sqrt(2)


def test_two_3x3_convs_give_the_triangle_outer_product():
    erf = effective_receptive_field(nn.Sequential(ones_conv(3), ones_conv(3)), torch.randn(1, 1, 11, 11))
    triangle = torch.tensor([1.0, 2, 3, 2, 1], dtype=torch.float64)
    expected = torch.zeros(11, 11, dtype=torch.float64)
    expected[3:8, 3:8] = torch.outer(triangle, triangle) / 81
    torch.testing.assert_close(erf.weights, expected)
    torch.testing.assert_close(erf.centre_of_mass(), torch.tensor([5.0, 5.0], dtype=torch.float64))


class Submaps(nn.Module):
    """`(B, C, H, W) -> (B, C, 2, H, W)`: two submaps, as checkered nets carry them."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ones_conv(3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.stack([y, torch.roll(y, 1, dims=-1)], dim=2)


def test_feature_maps_with_submaps_use_the_centre_of_every_submap():
    erf = effective_receptive_field(Submaps(), torch.randn(2, 1, 9, 9))
    expected = torch.zeros(9, 9, dtype=torch.float64)
    expected[3:6, 3:6] += 1 / 18  # submap 0: the 3x3 square at the centre
    expected[3:6, 2:5] += 1 / 18  # submap 1: the same square one column to the left (rolled right)
    assert erf.layer == ""
    torch.testing.assert_close(erf.weights, expected)


def test_radii_of_hand_made_maps():
    delta = torch.zeros(5, 5)
    delta[1, 3] = 1
    assert field(delta).radii() == {"r50": 0.0, "r90": 0.0}
    pair = torch.zeros(1, 7)
    pair[0, 1] = pair[0, 5] = 1  # centre of mass at column 3, both pixels 2 px away
    assert field(pair).radius(0.5) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="fraction=1.5"):
        field(delta).radius(1.5)


def test_the_last_feature_map_is_chosen_before_global_pooling():
    net = nn.Sequential(ones_conv(3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    assert last_spatial_module(net, torch.randn(2, 1, 8, 8)) == "1"


def test_clear_errors():
    net = nn.Sequential(ones_conv(3), nn.AdaptiveAvgPool2d(1))
    with pytest.raises(ValueError, match="layer='nope' is not a module"):
        effective_receptive_field(net, torch.randn(1, 1, 8, 8), layer="nope")
    with pytest.raises(ValueError, match="layer='1' returns no feature map"):
        effective_receptive_field(net, torch.randn(1, 1, 8, 8), layer="1")
    dead = nn.Conv2d(1, 1, 3, padding=1)
    nn.init.zeros_(dead.weight)
    with pytest.raises(ValueError, match="gradient .* is zero"):
        effective_receptive_field(dead, torch.randn(1, 1, 8, 8))
    with pytest.raises(ValueError, match="no module of the net returns a feature map"):
        last_spatial_module(nn.Flatten(), torch.randn(1, 1, 8, 8))


def test_cli_writes_the_heat_map_and_logs_the_radii(tmp_path, capsys):
    main(["net=simple_cnn", "dataset=digits", "conv=box", "--samples", "4", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "erf.json").read_text())
    assert (tmp_path / "erf.png").stat().st_size > 0
    assert result["conv"] == "box" and result["state"] == "initialisation" and result["layer"] == "features"
    assert 0 < result["radii_px"]["r50"] <= result["radii_px"]["r90"]
    assert "radius holding 50% of the mass" in capsys.readouterr().out
    logged = next(tmp_path.glob("csv/version_*/metrics.csv")).read_text()
    assert "erf/r50" in logged and "erf/r90" in logged


def test_cli_loads_a_checkpoint(tmp_path):
    from engine.cli import compose
    from engine.nets import build_net

    torch.manual_seed(3)
    net = build_net(compose(["net=simple_cnn", "dataset=digits"]))
    checkpoint = tmp_path / "weights.ckpt"
    torch.save({"state_dict": {f"net.{key}": value for key, value in net.state_dict().items()}}, checkpoint)
    main(["net=simple_cnn", "dataset=digits", "logger=none", "--checkpoint", str(checkpoint), "--samples", "3", "--out", str(tmp_path / "out")])
    result = json.loads((tmp_path / "out" / "erf.json").read_text())
    generator = torch.Generator().manual_seed(0)  # the CLI's noise inputs (--seed 0)
    expected = effective_receptive_field(net, torch.randn(3, 1, 8, 8, generator=generator))
    assert result["state"] == "checkpoint weights.ckpt"
    assert result["radii_px"] == pytest.approx(expected.radii())


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["conv=nope", "--out", str(tmp_path)])
    assert raised.value.code == 2 and "conv=nope does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stray", "--out", str(tmp_path)])
    assert "unrecognised arguments stray" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--samples", "0"])
    assert "--samples=0 must be >= 1" in capsys.readouterr().err


def test_cli_logs_the_heat_map_and_radii_to_wandb(tmp_path):
    from tests.framework.wandb_log import read_wandb_log

    main(["net=simple_cnn", "dataset=digits", "logger=wandb", "--samples", "2", "--out", str(tmp_path)])
    (folder,) = (tmp_path / "wandb").glob("offline-run-*")
    history = read_wandb_log(next(folder.glob("run-*.wandb"))).history
    logged = {key: value for row in history for key, value in row.items()}
    assert logged["erf/heatmap/_type"] == "images/separated" and logged["erf/heatmap/count"] == 1
    assert logged["erf/r90"] == pytest.approx(json.loads((tmp_path / "erf.json").read_text())["radii_px"]["r90"])


def test_help_names_the_folders_the_cli_writes_to(capsys):
    from analysis.erf_io import default_out
    from engine.cli import compose

    with pytest.raises(SystemExit):
        main(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    cfg = compose(["net=simple_cnn", "dataset=digits", "paths.runs=somewhere"])
    for kind in ("single", "compare"):
        folder = default_out(cfg, kind)
        assert folder.parent == Path("somewhere", "erf", kind, cfg.name)
        assert f"<paths.runs>/erf/{kind}/<name>/<time>" in shown
