"""LightningDataModules for every dataset the experiments use."""

from datasets.base import DataModule
from datasets.cifar import CIFARDataModule
from datasets.cityscapes import CityscapesDataModule
from datasets.digits import DigitsDataModule
from datasets.imagenet import ImageNetDataModule
from datasets.mnist import MNISTDataModule
from datasets.mnist1d import MNIST1DDataModule
from datasets.sequential import SequentialCIFARDataModule, SequentialMNISTDataModule
from datasets.speech_commands import SpeechCommandsDataModule

__all__ = [
    "CIFARDataModule",
    "CityscapesDataModule",
    "DataModule",
    "DigitsDataModule",
    "ImageNetDataModule",
    "MNIST1DDataModule",
    "MNISTDataModule",
    "SequentialCIFARDataModule",
    "SequentialMNISTDataModule",
    "SpeechCommandsDataModule",
]
