"""The authors' implementations as benchmark columns: found under $FARCONV_REFS, skipped with a reason otherwise."""

from __future__ import annotations

import sys

import torch

from benchmarks.references import load_reference

STAND_IN = '''
import torch
from layers.box import box_conv2d


class BoxConv2d(torch.nn.Module):  # the authors' constructor and parametrisation (coordinates / (max_input * factor))
    def __init__(self, in_planes, num_filters, max_input_h, max_input_w, reparametrization_factor=8, normalize=True):
        super().__init__()
        self.reparametrization_h, self.reparametrization_w = max_input_h * reparametrization_factor, max_input_w * reparametrization_factor
        self.normalize, self.exact = normalize, True
        self.x_min, self.x_max, self.y_min, self.y_max = (torch.nn.Parameter(torch.zeros(in_planes, num_filters)) for _ in range(4))

    def forward(self, x):
        h, w = self.reparametrization_h, self.reparametrization_w
        return box_conv2d(x, self.x_min * h, self.x_max * h, self.y_min * w, self.y_max * w, normalize=self.normalize, exact=self.exact)
'''


def test_an_absent_checkout_is_skipped_with_the_way_to_install_it(monkeypatch, tmp_path):
    from benchmarks.box_conv import authors_layer
    from benchmarks.checkered import authors_layer as checkered_authors
    from layers import BoxConv2d, CheckeredConv2d

    monkeypatch.setenv("FARCONV_REFS", str(tmp_path))
    module, why = load_reference("checkered-cnn", "checkered_layers")
    assert module is None and "github.com/ShayanPersonal/checkered-cnn" in why
    assert authors_layer(BoxConv2d(2, 2, 8, 8))[0] is None
    assert checkered_authors(CheckeredConv2d(2, 2, 3, stride=2, padding=1))[0] is None


def test_an_installed_checkout_gives_the_same_outputs_and_leaves_no_module_behind(monkeypatch, tmp_path):
    from benchmarks.box_conv import authors_layer
    from layers import BoxConv2d

    package = tmp_path / "box-convolutions" / "box_convolution"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(STAND_IN)
    monkeypatch.setenv("FARCONV_REFS", str(tmp_path))
    ours = BoxConv2d(3, 2, 16, 20).eval()
    theirs, where = authors_layer(ours)
    assert where == str(tmp_path / "box-convolutions") and "box_convolution" not in sys.modules
    x = torch.randn(2, 3, 16, 20)
    torch.testing.assert_close(theirs.eval()(x), ours(x))
