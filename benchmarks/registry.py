"""The families and models that `python -m benchmarks` measures: one entry per family.

A family entry names its `cfg/conv/<conv>` option (the suite builds its layer from it,
exactly as `conv=<conv>` does for a model), its own benchmark module (which stays runnable
on its own and exposes `run(quick: bool, device: str) -> dict`), the models that show it
at full size with the plain model each is compared with, and any extra measurements only
it has (`extras`: `"module:function"` names called as `function(quick, device) -> dict`).
Adding a sixth family adds one `Family(...)` line to `FAMILIES`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelCase:
    """One net at one input size, built like `run_profiler.py net=<net> dataset=<dataset> conv=<conv>`.

    `baseline` is the label of the model case it is compared with (measured in the same run):
    one of `STANDARD.models` or a case of the same family listed before it.
    """

    label: str
    net: str
    dataset: str
    conv: str = "standard"
    baseline: str | None = None
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Family:
    """A convolution family as the suite sees it (see the module docstring)."""

    name: str  # what `--only` selects
    conv: str  # the cfg/conv option
    paper: str
    benchmark: str | None = None  # module with `run(quick, device) -> dict`
    models: tuple[ModelCase, ...] = ()
    extras: tuple[str, ...] = ()


ENET = ModelCase("ENet", "enet", "cityscapes")
RESNET50 = ModelCase("ResNet-50", "resnet50", "imagenet")

# The plain convolution: every ratio of the suite is against it (layers) or its models.
STANDARD = Family("standard", "standard", "nn.Conv2d", models=(ENET, RESNET50))

FAMILIES: tuple[Family, ...] = (
    Family(
        "box", "box", "Burkov & Lempitsky, NeurIPS 2018", "benchmarks.box_conv",
        models=(ModelCase("BoxENet", "boxenet", "cityscapes", baseline="ENet"),
                ModelCase("BoxOnlyENet", "boxonlyenet", "cityscapes", baseline="ENet")),
        extras=("benchmarks.roofline:box_roofline",),
    ),
    Family(
        "dcls", "dcls", "Khalfaoui-Hassani et al., ICLR 2023 (arXiv:2112.03740)", "benchmarks.dcls",
        models=(ModelCase("ConvNeXt-T", "convnext_t", "imagenet"),
                ModelCase("ConvNeXt-T-DCLS", "convnext_t_dcls", "imagenet", baseline="ConvNeXt-T")),
    ),
    Family(
        "flexconv", "flex", "Romero et al., ICLR 2022 (arXiv:2110.08059)", "benchmarks.flexconv",
        models=(ModelCase("FlexNet-7 / standard", "flexnet7", "cifar10"),
                ModelCase("FlexNet-7", "flexnet7", "cifar10", conv="flex", baseline="FlexNet-7 / standard")),
    ),
    Family(
        "checkered", "checkered", "Sadigh & Sen 2018 (arXiv:1805.10766)", "benchmarks.checkered",
        models=(ModelCase("toy MNIST CNN", "cnn_mnist", "mnist"),
                ModelCase("toy MNIST CCNN", "ccnn_mnist", "mnist", baseline="toy MNIST CNN")),
    ),
    Family(
        "octave", "octave", "Chen et al., ICCV 2019 (arXiv:1904.05049)", "benchmarks.octave",
        models=(ModelCase("Oct-ResNet-50", "oct_resnet50", "imagenet", baseline="ResNet-50"),),
    ),
)  # fmt: skip


def select(only: str | None) -> list[Family]:
    """The families named in a comma-separated `only` (None or empty: all), in registry order.

    Raises `ValueError` naming an unknown family and the known ones.
    """
    if not only:
        return list(FAMILIES)
    names = [name.strip() for name in only.split(",") if name.strip()]
    known = {family.name: family for family in FAMILIES}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"--only {only!r}: unknown famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown) or '(none given)'}; known: {', '.join(known)}")
    return [family for family in FAMILIES if family.name in names]


def model_cases(families: list[Family]) -> list[ModelCase]:
    """The plain baseline models, then the model cases of `families` (each after its baseline)."""
    cases = list(STANDARD.models)
    for family in families:
        for case in family.models:
            known = [known_case.label for known_case in cases]
            if case.baseline is not None and case.baseline not in known:
                raise ValueError(f"model {case.label}: baseline {case.baseline!r} is not one of {', '.join(known)}")
            if case not in cases:
                cases.append(case)
    return cases


__all__ = ["FAMILIES", "Family", "ModelCase", "STANDARD", "model_cases", "select"]
