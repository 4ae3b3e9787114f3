"""Architectures built from `layers/`; Hydra's `_target_` points at these classes."""

from models.resnet import ResNet
from models.simple_cnn import SimpleCNN

__all__ = ["ResNet", "SimpleCNN"]
