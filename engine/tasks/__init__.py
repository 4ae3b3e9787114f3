"""Generic LightningModules: loss, metrics and optimiser set-up per kind of task."""

from engine.tasks.base import TaskModule
from engine.tasks.classification import ClassificationTask
from engine.tasks.segmentation import SegmentationTask

__all__ = ["ClassificationTask", "SegmentationTask", "TaskModule"]
