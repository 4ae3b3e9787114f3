"""Architectures built from `layers/`; Hydra's `_target_` points at these classes."""

from models.ccnn import ToyMNISTNet
from models.convnext import ConvNeXt
from models.densenet import DenseNetBC
from models.enet import BoxENet, BoxOnlyENet, ENet, ENetMinus
from models.erfnet import BoxERFNet, ERFNet
from models.flexnet import FlexNet, FlexTCN
from models.oct_resnet import OctResNet
from models.resnet import ResNet
from models.simple_cnn import SimpleCNN
from models.vgg import VGG
from models.wide_resnet import WideResNet

__all__ = [
    "BoxENet",
    "BoxERFNet",
    "BoxOnlyENet",
    "ConvNeXt",
    "DenseNetBC",
    "ENet",
    "ENetMinus",
    "ERFNet",
    "FlexNet",
    "FlexTCN",
    "OctResNet",
    "ResNet",
    "SimpleCNN",
    "ToyMNISTNet",
    "VGG",
    "WideResNet",
]
