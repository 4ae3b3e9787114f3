"""Architectures built from `layers/`; Hydra's `_target_` points at these classes."""

from models.enet import BoxENet, BoxOnlyENet, ENet, ENetMinus
from models.erfnet import BoxERFNet, ERFNet
from models.resnet import ResNet
from models.simple_cnn import SimpleCNN

__all__ = ["BoxENet", "BoxERFNet", "BoxOnlyENet", "ENet", "ENetMinus", "ERFNet", "ResNet", "SimpleCNN"]
