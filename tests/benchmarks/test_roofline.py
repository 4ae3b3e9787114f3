"""`python -m benchmarks.roofline`: rounds at both shapes, summarised by median and range."""

from __future__ import annotations

import json
import sys

from benchmarks import roofline


def fake_round(quick: bool, device: str, calls: list) -> dict:
    """A round whose passes take 10, 20, 30 ms (quick shape) or 100, 200, 300 ms (full shape)."""
    calls.append(quick)
    ms = (10.0 if quick else 100.0) * calls.count(quick)
    figures = {"ms": ms, "compulsory": {"of_copy_bandwidth": 10 / ms}, "with_integral_image": {"of_copy_bandwidth": 20 / ms}}
    one_thread = {**figures, "ms": 2 * ms}
    return {
        "shape": {"batch": 2 if quick else 8, "channels": 32, "filters": 4, "height": 128, "width": 256, "dtype": "torch.float32"},
        "bandwidth": {"copy_gb_s": 25.0},
        "build": "farconv_box_cpu_avx2",
        "op": {"forward": figures, "backward": figures},
        "kernels": {"forward": figures, "backward": figures},
        "kernels_1_thread": {"forward": one_thread, "backward": one_thread},
    }


def test_rounds_alternate_shapes_and_report_the_median_and_range(tmp_path, monkeypatch):
    calls: list[bool] = []
    monkeypatch.setattr(roofline, "box_roofline", lambda quick, device: fake_round(quick, device, calls))
    monkeypatch.setattr(sys, "argv", ["roofline", "--rounds", "3", "--out", str(tmp_path)])
    roofline.main()
    assert calls == [True, False, True, False, True, False]  # interleaved
    report = json.loads((tmp_path / "box_roofline_cpu.json").read_text())
    quick = report["shapes"]["quick shape"]["summary"]["op backward"]
    assert quick["ms"] == 20.0 and quick["ms_range"] == [10.0, 30.0]
    assert quick["compulsory"]["of_copy_bandwidth"] == 10 / 20.0
    markdown = (tmp_path / "box_roofline_cpu.md").read_text()
    assert "| kernels | backward | 200.00 | 100.00-300.00 | 5.0% | 3.3-10.0% | 10.0% | 6.7-20.0% |" in markdown
    assert "| kernels, 1 thread | backward | 400.00 | 200.00-600.00 |" in markdown
    assert "threads: forward 2.00x, backward 2.00x faster." in markdown
    assert "3 interleaved rounds per shape" in markdown and "farconv_box_cpu_avx2" in markdown
