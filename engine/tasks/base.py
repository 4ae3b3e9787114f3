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
        if self.decay_norm_and_bias:
            return [{"params": [p for p in self.net.parameters() if p.requires_grad]}]
        decayed, exempt = [], []
        for parameter in self.net.parameters():
            if parameter.requires_grad:
                (exempt if parameter.ndim <= 1 else decayed).append(parameter)
        return [{"params": decayed}, {"params": exempt, "weight_decay": 0.0}]

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.parameter_groups())
        if self.scheduler_factory is None:
            return optimizer
        total_steps = int(self.trainer.estimated_stepping_batches)
        steps_per_epoch = max(total_steps // max(self.trainer.max_epochs or 1, 1), 1)
        scheduler = self.scheduler_factory(optimizer, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
