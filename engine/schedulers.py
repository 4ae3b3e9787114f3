"""Learning-rate schedules, stepped once per optimiser step.

Every factory takes `(optimizer, *, total_steps, steps_per_epoch)` (the task fills them in
from the trainer) plus its own knobs, which the `scheduler/` config group sets; epochs in
the knobs may be fractional. All start with an optional linear warm-up.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

Schedule = Callable[[int], float]


def _with_warmup(schedule: Schedule, warmup_steps: int) -> Schedule:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return schedule(step - warmup_steps)

    return factor


def _warmup_steps(warmup_epochs: float, steps_per_epoch: int, total_steps: int) -> int:
    if warmup_epochs < 0:
        raise ValueError(f"scheduler.warmup_epochs={warmup_epochs} must be >= 0")
    return min(round(warmup_epochs * steps_per_epoch), max(total_steps - 1, 0))


def constant(optimizer: Optimizer, *, total_steps: int, steps_per_epoch: int, warmup_epochs: float = 0.0) -> LambdaLR:
    """The base learning rate throughout (after warm-up)."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    return LambdaLR(optimizer, _with_warmup(lambda step: 1.0, warmup))


def cosine(
    optimizer: Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    warmup_epochs: float = 0.0,
    final_lr_ratio: float = 0.0,
) -> LambdaLR:
    """Cosine decay from the base rate to `final_lr_ratio` times it over the run."""
    if not 0.0 <= final_lr_ratio <= 1.0:
        raise ValueError(f"scheduler.final_lr_ratio={final_lr_ratio} must be in [0, 1]")
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    decay_steps = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        progress = min(step / decay_steps, 1.0)
        return final_lr_ratio + (1.0 - final_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return LambdaLR(optimizer, _with_warmup(factor, warmup))


def multistep(
    optimizer: Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    milestones: Sequence[float] = (),
    gamma: float = 0.1,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """Multiply the rate by `gamma` at each epoch in `milestones`."""
    if list(milestones) != sorted(milestones):
        raise ValueError(f"scheduler.milestones={list(milestones)} must be increasing")
    if gamma <= 0:
        raise ValueError(f"scheduler.gamma={gamma} must be > 0")
    milestone_steps = [round(epoch * steps_per_epoch) for epoch in milestones]
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)

    def factor(step: int) -> float:
        return gamma ** sum(step + warmup >= milestone for milestone in milestone_steps)

    return LambdaLR(optimizer, _with_warmup(factor, warmup))


def poly(
    optimizer: Optimizer,
    *,
    total_steps: int,
    steps_per_epoch: int,
    power: float = 0.9,
    warmup_epochs: float = 0.0,
) -> LambdaLR:
    """Polynomial decay `(1 - progress) ** power`, the usual segmentation schedule."""
    warmup = _warmup_steps(warmup_epochs, steps_per_epoch, total_steps)
    decay_steps = max(total_steps - warmup, 1)
    return LambdaLR(optimizer, _with_warmup(lambda step: (1.0 - min(step / decay_steps, 1.0)) ** power, warmup))
