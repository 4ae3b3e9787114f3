"""The cross-resolution claim at unit-test scale: a FlexConv net trained on scikit-learn's
8x8 digits with the anti-aliasing regulariser keeps its accuracy out of the box at 16x16;
the same net without it does not (FlexConv paper, Table 4, in miniature)."""

from __future__ import annotations

import pytest
import torch

from engine.cli import choices_of, compose
from engine.crossres import cross_resolution
from tests.conftest import QUICK

# FlexNet with one residual block of 16 channels and MAGNet kernels of 16 units (about 45k
# parameters); 8 epochs of 41 batches of 32 digits at 8x8.
TINY_FLEXNET = [
    *QUICK, "net=flexnet3", "conv=flex", "dataset=digits", "net.hidden_channels=16", "net.num_blocks=1",
    "net.block_width_factors=[]", "net.dropout=0.0", "kernel.net.hidden_channels=16", "train.epochs=8",
    "train.batch_size=32", "trainer.num_sanity_val_steps=0", "cross_res.source_res=8", "cross_res.target_res=16",
]  # fmt: skip
MARGIN = 0.08  # out of the box at 16x16 at most this far below the source accuracy


def accuracies(tmp_path, *overrides) -> tuple[float, float]:
    cfg = compose([*TINY_FLEXNET, f"paths.runs={tmp_path}", *overrides])
    metrics = cross_resolution(cfg, tmp_path / "run", choices_of(cfg))
    return metrics["source/test/acc"], metrics["ootb/test/acc"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The unregularised net's aliased kernels make its result sensitive to rounding: one
    thread gives the same sums, so the same accuracies, on every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def regularised(tmp_path_factory):
    return accuracies(tmp_path_factory.mktemp("regularised"), "kernel.regularize.target=gabor+mask")


def test_regularised_flexnet_keeps_its_accuracy_at_twice_the_resolution(regularised):
    source, out_of_the_box = regularised
    assert source >= 0.8, f"source accuracy {source:.3f}: the net did not learn"
    assert out_of_the_box >= source - MARGIN, f"out of the box {out_of_the_box:.3f} against {source:.3f} at the source resolution"


def test_without_the_regulariser_the_same_net_loses_it(regularised, tmp_path):
    _, unregularised = accuracies(tmp_path, "kernel.regularize.target=null")
    assert unregularised <= regularised[1] - 0.25, f"unregularised {unregularised:.3f} against regularised {regularised[1]:.3f} out of the box"
