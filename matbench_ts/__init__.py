"""matbench-ts: teacher-student training of composition models with structure teachers."""

from .estimator import TSRegressor

__all__ = ["TSRegressor"]
__version__ = "0.1.0"
