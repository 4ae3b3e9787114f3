"""`python -m analysis.erf --compare`: matched parameter budgets, brief training, one figure."""

from __future__ import annotations

import json

import pytest

from analysis.compare import matched_widths, parameters_at
from analysis.erf import main
from tests.conftest import QUICK

DIGITS = ["net=simple_cnn", "dataset=digits", "dataset.num_workers=0"]


def test_box_widths_are_scaled_to_the_plain_parameter_count():
    target = parameters_at(DIGITS, "standard", [32, 64])
    widths, params = matched_widths(DIGITS, "box", [32, 64], target)
    assert widths != [32, 64] and abs(params - target) / target < 0.03
    assert params == parameters_at(DIGITS, "box", widths)


def test_compare_trains_each_family_and_lists_the_missing_ones(tmp_path):
    main(["--compare", "standard,box,no_such_family", *DIGITS, *QUICK[:2], "--train-batches", "2", "--samples", "4", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "erf_compare.json").read_text())
    assert [row["conv"] for row in result["families"]] == ["standard", "box"]
    assert result["skipped"] == ["no_such_family"]
    for row in result["families"]:
        assert abs(row["params"] - result["parameter_budget"]) / result["parameter_budget"] < 0.03
        assert 0 <= row["test_metrics"]["test/acc"] <= 1 and row["radii_px"]["r50"] > 0
    assert (tmp_path / "erf_compare.png").stat().st_size > 0
    assert "Not in this comparison" in (tmp_path / "erf_compare.md").read_text()


def test_compare_needs_net_widths(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--compare", "standard", "net=enet", "dataset=digits", "--out", str(tmp_path)])
    assert "matches parameter budgets by scaling net.widths; net=enet has none" in capsys.readouterr().err


def test_a_failing_family_is_reported_and_the_others_still_run(tmp_path, monkeypatch):
    import analysis.compare as compare_module

    real = compare_module.train_and_measure

    def box_fails(overrides, conv, widths, args, run_dir):
        if conv == "box":
            raise ValueError("box cannot train here")
        return real(overrides, conv, widths, args, run_dir)

    monkeypatch.setattr(compare_module, "train_and_measure", box_fails)
    main(["--compare", "box,standard", *DIGITS, *QUICK[:2], "--train-batches", "1", "--samples", "2", "--out", str(tmp_path)])
    result = json.loads((tmp_path / "erf_compare.json").read_text())
    assert [row["conv"] for row in result["families"]] == ["standard"]
    assert result["failed"] == {"box": "ValueError: box cannot train here"}
    assert "conv=box failed: ValueError: box cannot train here" in (tmp_path / "erf_compare.md").read_text()
