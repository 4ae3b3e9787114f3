"""DCLS: dilated convolutions with learnable spacings (arXiv 2112.03740, 2306.00817)."""

from layers.dcls.dcls_layer import Dcls1d, Dcls2d, Dcls3d
from layers.dcls.factory import dcls_conv
from layers.dcls.functional import construct_kernel

__all__ = ["Dcls1d", "Dcls2d", "Dcls3d", "construct_kernel", "dcls_conv"]
