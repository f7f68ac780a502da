"""Training: the loop (:mod:`.trainer`), what it builds (:mod:`.build`), devices and precision
(:mod:`.accel`) and data-parallel training under ``torchrun`` (:mod:`.distributed`)."""

from llmesr.training.build import create_model, semantic_artifacts
from llmesr.training.trainer import Trainer, TrainState, train_run

__all__ = ["Trainer", "TrainState", "create_model", "semantic_artifacts", "train_run"]
