"""Kernel networks: small networks from relative positions to convolution kernels (`kernel=`)."""

from layers.flexconv.kernelnets.base import KernelNet, KernelNetFactory
from layers.flexconv.kernelnets.fourier import FourierNet
from layers.flexconv.kernelnets.gabor import GaborNet
from layers.flexconv.kernelnets.magnet import MAGNet
from layers.flexconv.kernelnets.mfn import MultiplicativeFilterNet
from layers.flexconv.kernelnets.mlp import MLP
from layers.flexconv.kernelnets.siren import SIREN

__all__ = ["MLP", "SIREN", "FourierNet", "GaborNet", "KernelNet", "KernelNetFactory", "MAGNet", "MultiplicativeFilterNet"]
