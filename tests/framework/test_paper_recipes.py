"""Every paper preset of cfg/experiment/ composes to the recipe of its reference training code.

`REFERENCE` is written from the authors' scripts (the `experiments/<family>/README.md`
tables give file and line for each value), not from the presets: a changed default in any
config group that a preset relies on breaks this test, not a reproduction. Every experiment
file is either a paper preset here or listed in `NOT_PAPER_RECIPES`, so a new preset needs
its reference too.
"""

from __future__ import annotations

from typing import Any

import pytest
from omegaconf import OmegaConf

from engine.cli import check_command_line, compose
from tests.conftest import REPO

# ConvNeXt-dcls main.py defaults and TRAINING.md (shared by T, S and B)
CONVNEXT_DCLS = {
    "optimizer._target_": "torch.optim.AdamW",
    "optimizer.betas": [0.9, 0.999],
    "train.lr": 4e-3,
    "effective batch": 4096,
    "train.weight_decay": 0.05,
    "task.decay_norm_and_bias": False,  # 1-D parameters and biases: no weight decay
    "net.conv.position_weight_decay": 0.0,
    "net.conv.position_lr_factor": 5.0,
    "train.epochs": 300,
    "scheduler._target_": "engine.schedulers.cosine",
    "scheduler.warmup_epochs": 20,
    "scheduler.final_lr_ratio": 1e-6 / 4e-3,
    "train.grad_clip": 0.0,
    "net.layer_scale_init": 1e-6,
    "net.head_init_scale": 1.0,
    "task.label_smoothing": 0.1,
    "dataset.mixup._target_": "timm.data.Mixup",
    "dataset.mixup.mixup_alpha": 0.8,
    "dataset.mixup.cutmix_alpha": 1.0,
    "dataset.mixup.prob": 1.0,
    "dataset.mixup.switch_prob": 0.5,
    "dataset.mixup.mode": "batch",
    "dataset.timm_transform.auto_augment": "rand-m9-mstd0.5-inc1",
    "dataset.timm_transform.re_prob": 0.25,
    "dataset.timm_transform.re_mode": "pixel",
    "dataset.timm_transform.re_count": 1,
    "dataset.interpolation": "bicubic",
    "dataset.input_size": [224, 224],
    "dataset.resize_ratio": 0.875,
    "callbacks.ema.decay": 0.9999,
    "net.repulsion_factor": 1.0,
    "callbacks.dcls_repulsion.start_epoch": 21,  # engine.py: `if epoch > 20`
    "trainer.precision": "32-true",  # --use_amp false
    "net.conv.version": "v1",
    "net.conv.dilated_kernel_size": 17,
    "net.share_positions": True,
}

# facebookresearch/OctConv README ("Ablation") and utils/gluon/train_imagenet.py
OCTAVE_ABLATION = {
    "net.pre_activation": True,
    "optimizer._target_": "torch.optim.SGD",
    "optimizer.nesterov": True,
    "optimizer.momentum": 0.9,
    "lr per 256 images": 0.1,  # README lr 0.4, linearly scaled to batch 1024
    "train.weight_decay": 1e-4,
    "task.decay_norm_and_bias": True,  # --no-wd off: every parameter decays
    "scheduler._target_": "engine.schedulers.cosine",
    "scheduler.warmup_epochs": 5,
    "task.label_smoothing": 0.0,
    "dataset.mixup": None,
    "dataset.timm_transform.color_jitter": 0.4,
    "dataset.resize_ratio": 0.875,
    "dataset.input_size": [224, 224],
}

# ShayanPersonal/checkered-cnn demo_cifar.py
CHECKERED_CIFAR = {
    "optimizer._target_": "torch.optim.SGD",
    "optimizer.nesterov": True,
    "optimizer.momentum": 0.9,
    "train.lr": 0.1,
    "train.batch_size": 64,
    "train.weight_decay": 1e-4,
    "task.decay_norm_and_bias": True,
    "train.epochs": 300,
    "scheduler._target_": "engine.schedulers.multistep",
    "scheduler.milestones": [149, 224],  # MultiStepLR([150, 225]) stepped before each epoch
    "scheduler.gamma": 0.1,
}

REFERENCE: dict[str, dict[str, Any]] = {
    # shrubb/box-convolutions examples/Cityscapes/train.py and datasets.py
    "box_cityscapes": {
        "optimizer._target_": "torch.optim.Adam",
        "train.lr": 1e-3,
        "train.weight_decay": 2e-4,
        "train.batch_size": 12,
        "train.epochs": 1300,
        "scheduler._target_": "engine.schedulers.multistep",
        "scheduler.gamma": 0.45,
        "scheduler.milestones": [601, 781, 881, 961, 1041, 1121, 1201, 1261],  # decay once epoch > m
        "dataset.train_resize": [512, 1024],
        "dataset.eval_size": [512, 1024],
        "dataset.flip_probability": 0.5,
        "dataset.max_rotation": 7.5,
        "dataset.max_scale_change": 0.12,
        "task.use_class_weights": True,
        "task.monitor": "val/miou",
    },
    "dcls_convnext_t_imagenet": {**CONVNEXT_DCLS, "net.depths": [3, 3, 9, 3], "net.dims": [96, 192, 384, 768], "net.drop_path_rate": 0.1,
                                 "net.conv.kernel_count": 34},  # fmt: skip
    "dcls_convnext_s_imagenet": {**CONVNEXT_DCLS, "net.depths": [3, 3, 27, 3], "net.dims": [96, 192, 384, 768], "net.drop_path_rate": 0.4,
                                 "net.conv.kernel_count": 40},  # fmt: skip
    "dcls_convnext_b_imagenet": {**CONVNEXT_DCLS, "net.depths": [3, 3, 27, 3], "net.dims": [128, 256, 512, 1024], "net.drop_path_rate": 0.5,
                                 "net.conv.kernel_count": 40},  # fmt: skip
    # ShayanPersonal/checkered-cnn demo_mnist.py
    "checkered_mnist_paper": {
        "net._target_": "models.ccnn.ToyMNISTNet",
        "optimizer._target_": "torch.optim.SGD",
        "optimizer.nesterov": True,
        "optimizer.momentum": 0.9,
        "train.lr": 0.1,
        "train.batch_size": 16,
        "train.weight_decay": 0.0,
        "train.epochs": 100,
        "scheduler.milestones": [49, 74],  # MultiStepLR([50, 75]) stepped before each 1-based epoch
        "scheduler.gamma": 0.1,
        "dataset.augment": True,  # RandomRotation(15) + RandomCrop(28, padding=2)
    },
    "checkered_cifar": {**CHECKERED_CIFAR, "dataset.augment": True},  # RandomCrop(32, 4) + flip
    "checkered_cifar_noaug": {**CHECKERED_CIFAR, "dataset.augment": False},  # --no_aug
    # rjbruin/flexconv experiments/readme.md (FlexNet-7, CIFAR-10) and optim.py
    "flexnet7_cifar10": {
        "net.num_blocks": 7,
        "net.hidden_channels": 24,
        "net.block_width_factors": [1.0, 2, 1.5, 3, 2.0, 2],
        "net.dropout": 0.2,
        "conv._target_": "layers.flexconv.flex_conv",
        "conv.horizon": "same",  # conv.horizon=33: the odd grid of a 32x32 input
        "kernel.net._target_": "layers.flexconv.MAGNet",
        "kernel.net.hidden_channels": 32,
        "kernel.net.num_layers": 3,
        "kernel.net.input_scale": 25.6,
        "mask.init_value": 0.075,
        "mask.lr_factor": 0.1,
        "mask.dynamic_cropping": True,
        "mask.crop": "inside",  # ckconv/nn/ckconv.py keeps the samples within the threshold radius
        "optimizer._target_": "torch.optim.Adam",
        "train.lr": 0.01,
        "train.weight_decay": 0.0,
        "train.batch_size": 64,
        "train.epochs": 350,
        "scheduler._target_": "engine.schedulers.cosine",
        "scheduler.warmup_epochs": 5,
        "scheduler.final_lr_ratio": 1e-6 / 0.01,  # CosineAnnealingLR(eta_min=1e-6)
        "dataset.augment": True,  # train.augment=resnet: crop + flip
    },
    # rjbruin/flexconv (image recipe; no published sequence command) and FlexConv Table 2
    "flextcn_sequences": {
        "net.num_blocks": 6,
        "conv._target_": "layers.flexconv.flex_conv",
        "kernel.net._target_": "layers.flexconv.MAGNet",
        "optimizer._target_": "torch.optim.Adam",
        "train.lr": 0.01,
        "train.weight_decay": 0.0,
        "mask.lr_factor": 0.1,
        "mask.crop": "inside",
    },
    # dwromero/ckconv README commands (2 blocks of 30 channels, SIREN 32 units, 3 layers, Adam 1e-3)
    "ckcnn_sequences": {
        "net.num_blocks": 2,
        "net.hidden_channels": 30,
        "conv._target_": "layers.flexconv.ck_conv",
        "kernel.net.hidden_channels": 32,
        "kernel.net.num_layers": 3,
        "optimizer._target_": "torch.optim.Adam",
        "train.lr": 0.001,
        "train.batch_size": 64,
        "train.epochs": 200,
        "train.weight_decay": 0.0,
    },
    "octave_imagenet": {**OCTAVE_ABLATION, "net._target_": "models.oct_resnet.OctResNet", "net.layers": [3, 4, 6, 3]},
}

# CPU-sized runs, baselines of this repository and presets tested elsewhere: no paper recipe.
NOT_PAPER_RECIPES = {
    "box_mnist", "checkered_mnist", "ckcnn_mnist1d", "flextcn_mnist1d", "dcls_mnist", "dcls_mnist_dense", "octave_mnist",
    "dcls_convnext_cifar10", "octave_cifar10", "resnet20_cifar10",
    "crossres_flexnet7_cifar10",  # tests/crossres/test_presets.py
}  # fmt: skip


def setting(cfg, key: str) -> Any:
    """The composed value of `key`, or one of the derived quantities the references state."""
    if key == "effective batch":
        return cfg.train.batch_size * cfg.train.accumulate_grad_batches * cfg.trainer.devices
    if key == "lr per 256 images":
        return cfg.train.lr * 256 / cfg.train.batch_size
    value = OmegaConf.select(cfg, key, throw_on_missing=True)
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def test_every_experiment_file_is_a_paper_preset_or_listed_as_not_one():
    presets = {path.stem for path in (REPO / "cfg" / "experiment").glob("*.yaml")}
    assert presets == set(REFERENCE) | NOT_PAPER_RECIPES, presets ^ (set(REFERENCE) | NOT_PAPER_RECIPES)


@pytest.mark.parametrize("preset", sorted(REFERENCE))
def test_paper_preset_composes_to_its_reference_recipe(preset):
    overrides = [f"experiment={preset}"] + (["dataset=smnist"] if preset.endswith("_sequences") else [])
    assert check_command_line(overrides, multirun=False) == 1
    cfg = compose(overrides)
    drift = {key: (setting(cfg, key), expected) for key, expected in REFERENCE[preset].items()
             if setting(cfg, key) != pytest.approx(expected)}  # fmt: skip
    assert not drift, f"{preset}: (ours, reference) {drift}"
