"""The ``training:`` section's model lives with the spec (:mod:`flowspec.spec.training`); the
runner and its callers import it from here too."""

from flowspec.spec.training import TrainingConfig, override  # noqa: F401

__all__ = ["TrainingConfig", "override"]
