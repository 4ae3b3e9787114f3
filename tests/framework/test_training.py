"""End to end: every net x compatible dataset trains (fast_dev_run), checkpoints reload,
incompatible pairs stop with one clear line, and the default experiment runs as documented."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import CONFIG_DIR, choices_of, compose
from engine.config import ConfigError
from engine.experiment import build_experiment
from tests.conftest import COMMAND_TIMEOUT, HAS_SHARED_MNIST, QUICK, REPO, SHARED_DATA
from tests.framework.fabricate import make_cityscapes_tree, write_cifar, write_cifar100, write_image_folder, write_mnist


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    """Fabricated CIFAR-10/100 and ImageNet trees, plus a link to the real MNIST if present."""
    root = tmp_path_factory.mktemp("data")
    write_cifar(root)
    write_cifar100(root)
    write_image_folder(root, classes=4, per_class=4)
    make_cityscapes_tree(root, images_per_city=4, size=(32, 64))
    if HAS_SHARED_MNIST:
        (root / "MNIST").symlink_to(SHARED_DATA / "MNIST")
    else:
        write_mnist(root, train_images=200, test_images=40)
    return root


def run(overrides: list[str], tmp_path: Path, data_root: Path | str = "data") -> dict[str, float]:
    cfg = compose([*QUICK, f"paths.runs={tmp_path / 'runs'}", f"paths.data={data_root}", *overrides])
    return build_experiment(cfg, tmp_path / "run", choices_of(cfg)).run()


# Dataset-specific overrides that keep fast_dev_run quick on CPU.
DATASET_OVERRIDES = {
    "digits": [],
    "mnist1d": [],
    "mnist": [],
    "cifar10": [],
    "cifar100": [],
    "imagenet": ["dataset.num_classes=4", "dataset.input_size=[64,64]", "dataset.val_fraction=0.25"],
}
# The fast_dev_run table: every net of cfg/net/ appears in COMPATIBLE (classification) or
# SEGMENTATION_NETS (test_every_net_has_a_fast_dev_run fails otherwise). Adding a net? Add a
# row with a small, fast dataset.
COMPATIBLE = [
    ("simple_cnn", dataset) for dataset in DATASET_OVERRIDES
] + [
    ("resnet20", "digits"), ("resnet20", "mnist"), ("resnet20", "cifar10"), ("resnet20", "cifar100"),
    ("resnet18", "cifar10"), ("resnet18", "imagenet"), ("resnet50", "imagenet"),
    ("flexnet3", "digits"), ("flexnet5", "digits"), ("flexnet7", "digits"),
    ("flextcn2", "mnist1d"), ("flextcn4", "mnist1d"), ("flextcn6", "mnist1d"), ("ckcnn", "mnist1d"),
    ("box_mnist", "mnist"),
    ("resnet26", "imagenet"), ("resnet101", "imagenet"), ("resnet152", "imagenet"), ("oct_resnet20", "cifar10"),
    ("oct_resnet26", "imagenet"), ("oct_resnet50", "imagenet"), ("oct_resnet101", "imagenet"), ("oct_resnet152", "imagenet"),
    ("ccnn_mnist", "mnist"), ("cnn_mnist", "mnist"), ("resnet18_cifar", "cifar10"), ("resnet50_cifar", "cifar100"),
    ("resnet18_tiny", "cifar10"), ("resnet50_tiny", "cifar10"), ("densenet_bc40", "cifar10"), ("vgg11_bn_cifar", "cifar10"),
    ("wrn28_10", "cifar10"),
    ("convnext_t", "imagenet"), ("convnext_s", "imagenet"), ("convnext_b", "imagenet"),
    ("convnext_t_dcls", "imagenet"), ("convnext_s_dcls", "imagenet"), ("convnext_b_dcls", "imagenet"),
    ("convnext_cifar_dcls", "cifar10"),
]  # fmt: skip
SLOW_RUNS = {"resnet101", "resnet152", "oct_resnet101", "oct_resnet152"}  # deep ImageNet nets
SLOW_RUNS |= {"resnet50_cifar", "wrn28_10"}  # tens of millions of parameters at 32x32
SLOW_RUNS |= {"convnext_t", "convnext_s", "convnext_b", "convnext_t_dcls", "convnext_s_dcls", "convnext_b_dcls"}


@pytest.mark.parametrize("net, dataset", [pytest.param(*row, marks=pytest.mark.slow) if row[0] in SLOW_RUNS else row for row in COMPATIBLE])
def test_fast_dev_run(net, dataset, tmp_path, data_root):
    metrics = run([f"net={net}", f"dataset={dataset}", "+trainer.fast_dev_run=true", *DATASET_OVERRIDES[dataset]], tmp_path, data_root)
    assert 0.0 <= metrics["test/acc"] <= 1.0


SEGMENTATION_NETS = ["enet", "boxenet", "boxonlyenet", "enet_minus", "erfnet", "boxerfnet"]


def test_every_net_has_a_fast_dev_run():
    tested = {net for net, _ in COMPATIBLE} | set(SEGMENTATION_NETS)
    nets = {path.stem for path in (CONFIG_DIR / "net").glob("*.yaml")}
    assert sorted(nets - tested) == [], "add these nets to COMPATIBLE or SEGMENTATION_NETS"


@pytest.mark.parametrize("net", SEGMENTATION_NETS)
def test_fast_dev_run_segmentation(net, tmp_path, data_root):
    overrides = [f"net={net}", "dataset=cityscapes", "dataset.input_size=[32,64]", "train.batch_size=2", "dataset.pin_memory=false"]
    metrics = run([*overrides, "+trainer.fast_dev_run=true"], tmp_path, data_root)
    assert 0.0 <= metrics["test/miou"] <= 1.0 and "test/pixel_acc" in metrics


@pytest.mark.parametrize("net, dataset", [("simple_cnn", "digits"), ("resnet20", "cifar10")])
def test_fast_dev_run_with_box_convolutions(net, dataset, tmp_path, data_root):
    metrics = run([f"net={net}", f"dataset={dataset}", "conv=box", "+trainer.fast_dev_run=true"], tmp_path, data_root)
    assert 0.0 <= metrics["test/acc"] <= 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["net=resnet20", "dataset=mnist1d"], "net=resnet20 cannot process dataset=mnist1d inputs of shape (2, 1, 40)"),
        (["net=enet"], "net=enet maps dataset=digits inputs (2, 1, 8, 8) to (2, 10, 8, 8), but task=classification needs (2, 10)"),
        (["dataset=cityscapes"], "Cityscapes not found: "),
        (["conv=box", "dataset=mnist1d"], "conv=box: only 2-D convolutions can become box convolutions"),
        (["net.kernel_size=4"], "net: simple_cnn: kernel_size=4 must be odd"),
        (["dataset=cifar10"], "CIFAR-10 not found"),
        (["pretrained=/no/such.ckpt"], "pretrained=/no/such.ckpt: no such checkpoint file"),
        (["resume=last"], "resume=last: no earlier run in "),
    ],
)
def test_impossible_runs_stop_with_a_config_error(overrides, message, tmp_path):
    with pytest.raises(ConfigError) as error:
        run(overrides, tmp_path, tmp_path / "empty")
    assert message in str(error.value)


def test_train_then_test_only_from_the_checkpoint(tmp_path):
    trained = run(["train.epochs=2", "scheduler=constant"], tmp_path / "first")
    best = sorted((tmp_path / "first" / "run" / "checkpoints").glob("best-*.ckpt"))
    assert len(best) == 1 and (tmp_path / "first" / "run" / "checkpoints" / "last.ckpt").is_file()
    tested = run(["train.do=false", f"pretrained={best[0]}"], tmp_path / "second")
    assert tested["test/acc"] == pytest.approx(trained["test/acc"])


def test_pretrained_checkpoint_that_does_not_fit_is_rejected(tmp_path):
    run(["train.epochs=1"], tmp_path / "first")
    best = next((tmp_path / "first" / "run" / "checkpoints").glob("best-*.ckpt"))
    with pytest.raises(ConfigError, match="does not fit the net"):
        run(["train.do=false", f"pretrained={best}", "net.widths=[16,32]"], tmp_path / "second")


def test_corrupt_checkpoint_is_rejected(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match=f"pretrained={broken}: {broken} is not a PyTorch checkpoint$"):
        run(["train.do=false", f"pretrained={broken}"], tmp_path)


def test_default_experiment_command_reports_test_accuracy(tmp_path):
    result = subprocess.run(
        [sys.executable, "run_experiment.py", "train.epochs=3", "logger=none", f"paths.runs={tmp_path}", "trainer.enable_progress_bar=false"],
        cwd=REPO, capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    accuracy_lines = [line for line in result.stdout.splitlines() if line.startswith("Test accuracy: ")]
    assert len(accuracy_lines) == 1
    assert float(accuracy_lines[0].split()[-1].rstrip("%")) > 80.0


def test_model_summary_counts_flops(tmp_path):
    from pytorch_lightning.utilities.model_summary import ModelSummary

    cfg = compose([*QUICK, f"paths.runs={tmp_path}"])
    experiment = build_experiment(cfg, tmp_path / "run", choices_of(cfg))
    assert ModelSummary(experiment.task, max_depth=1).total_flops == 2 * 1_493_632  # 2 x the MACs run_profiler.py reports
