"""What every task shares: the net, the optimiser with its parameter groups, the schedule."""

from __future__ import annotations

from typing import Any, Callable, Iterable

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.optim import Optimizer

OptimizerFactory = Callable[[Iterable[dict[str, Any]]], Optimizer]
SchedulerFactory = Callable[..., torch.optim.lr_scheduler.LRScheduler]


class TaskModule(pl.LightningModule):
    """Base LightningModule.

    Args:
        net: the model, `(B, ...) -> outputs`.
        optimizer: a partial optimiser taking parameter groups (config group `optimizer/`).
        scheduler: a partial schedule from `engine.schedulers` (config group `scheduler/`).
        monitor: the validation metric that selects the best checkpoint.
        monitor_mode: `max` or `min` for `monitor`.
        decay_norm_and_bias: apply weight decay to 1-D parameters (norm scales, biases,
            PReLU slopes) too; `false` exempts them.
    """

    def __init__(
        self,
        net: nn.Module,
        optimizer: OptimizerFactory,
        scheduler: SchedulerFactory | None = None,
        monitor: str = "val/loss",
        monitor_mode: str = "min",
        decay_norm_and_bias: bool = True,
    ) -> None:
        super().__init__()
        if monitor_mode not in ("min", "max"):
            raise ValueError(f"task.monitor_mode={monitor_mode!r} must be 'min' or 'max'")
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.monitor = monitor
        self.monitor_mode = monitor_mode
        self.decay_norm_and_bias = decay_norm_and_bias

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def expected_output_shape(self, batch_size: int, input_size: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the net must produce for a batch of inputs of spatial size `input_size`."""
        raise NotImplementedError

    def parameter_groups(self) -> list[dict[str, Any]]:
        """Trainable parameters grouped by their optimiser options.

        Weight decay exempts 1-D parameters unless `decay_norm_and_bias`; modules that
        implement `layers.factory.ParameterOptions` add their own options per parameter
        (`lr_factor`, `weight_decay`, ...), which win over both.
        """
        requested = {
            id(parameter): options
            for module in self.net.modules()
            if callable(getattr(module, "parameter_options", None))
            for name, options in module.parameter_options().items()
            if (parameter := getattr(module, name, None)) is not None
        }
        groups: dict[tuple, dict[str, Any]] = {}
        for parameter in self.net.parameters():
            if not parameter.requires_grad:
                continue
            options = {} if self.decay_norm_and_bias or parameter.ndim > 1 else {"weight_decay": 0.0}
            options = {**options, **requested.get(id(parameter), {})}
            key = tuple(sorted(options.items()))
            groups.setdefault(key, {"params": [], **options})["params"].append(parameter)
        return list(groups.values())

    def auxiliary_loss(self) -> Tensor | None:
        """Sum of the terms that modules implementing `layers.factory.AuxiliaryLoss` add to the
        training loss; None when none does."""
        terms = [
            term
            for module in self.net.modules()
            if callable(getattr(module, "auxiliary_loss", None)) and (term := module.auxiliary_loss()) is not None
        ]
        return torch.stack(terms).sum() if terms else None

    def with_auxiliary_loss(self, loss: Tensor, batch_size: int) -> Tensor:
        """`loss` plus the net's auxiliary terms (logged as `train/aux_loss`), for training steps."""
        auxiliary = self.auxiliary_loss()
        if auxiliary is None:
            return loss
        self.log("train/aux_loss", auxiliary, on_step=True, on_epoch=True, batch_size=batch_size)
        return loss + auxiliary

    def optimizer_step(self, *args: Any, **kwargs: Any) -> None:
        """The optimiser's step, then `clamp_parameters()` of every module that implements
        `layers.factory.ConstrainedParameters`."""
        super().optimizer_step(*args, **kwargs)
        for module in self.net.modules():
            if callable(getattr(module, "clamp_parameters", None)):
                module.clamp_parameters()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        for group in optimizer.param_groups:  # before the schedule records each group's initial lr
            group["lr"] *= group.get("lr_factor", 1.0)
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total_steps // max(self.trainer.max_epochs or 1, 1), 1)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
