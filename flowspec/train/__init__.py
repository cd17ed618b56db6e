"""Training: the ``training:`` config, the runner (train, evaluate, sample, checkpoint, resume),
EMA of the weights, and torchrun/DDP support. ``from flowspec.train.runner import train``."""

from flowspec.train.config import TrainingConfig

__all__ = ["TrainingConfig"]
