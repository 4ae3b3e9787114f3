"""Generic LightningModules: loss, metrics and optimiser set-up per kind of task."""

from engine.tasks.base import TaskModule
from engine.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask", "TaskModule"]
