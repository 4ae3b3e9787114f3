"""Continuous kernel convolutions: CKConv (Romero et al., ICLR 2022, arXiv:2102.02611) and
FlexConv (Romero et al., ICLR 2022, arXiv:2110.08059).

`CKConv1d/2d` and `FlexConv1d/2d` (modules), the kernel networks (`MAGNet`, `GaborNet`,
`FourierNet`, `SIREN`, `MLP`), the convolution they share (`continuous_conv`: spatial or
FFT), cross-resolution resampling (`resample_kernels`) and the `flex`/`ckconv` families.
"""

from layers.flexconv.ckconv import CKConv, CKConv1d, CKConv2d
from layers.flexconv.crossres import resample_kernels
from layers.flexconv.factory import ck_conv, flex_conv
from layers.flexconv.flexconv import FlexConv, FlexConv1d, FlexConv2d
from layers.flexconv.functional import continuous_conv, fft_conv, spatial_conv
from layers.flexconv.kernelnets import MLP, SIREN, FourierNet, GaborNet, KernelNet, MAGNet

__all__ = [
    "CKConv",
    "CKConv1d",
    "CKConv2d",
    "FlexConv",
    "FlexConv1d",
    "FlexConv2d",
    "FourierNet",
    "GaborNet",
    "KernelNet",
    "MAGNet",
    "MLP",
    "SIREN",
    "ck_conv",
    "continuous_conv",
    "fft_conv",
    "flex_conv",
    "resample_kernels",
    "spatial_conv",
]
