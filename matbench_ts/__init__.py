"""matbench-ts: teacher-student training of composition models with structure teachers."""

from .classifier import TSClassifier
from .estimator import TSRegressor

__all__ = ["TSClassifier", "TSRegressor"]
__version__ = "0.1.0"
