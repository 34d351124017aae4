"""``TSClassifier``: binary classification with a structure teacher, used with formulas only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure
from sklearn.base import ClassifierMixin

from .estimator import TeacherStudentEstimator
from .inputs import target_column
from .recipe import Recipe
from .students import Student


def check_labels(y: Any, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """``(classes, encoded)`` of binary labels of any type; ValueError on a missing label, a length
    mismatch, one class only or more than two."""
    arr = target_column(y, n_rows, needs="a label")
    missing = np.flatnonzero(pd.isna(arr))
    if len(missing):
        raise ValueError(f"y has a missing label ({arr.tolist()[missing[0]]!r}) at row {missing[0]} ({len(missing)} such rows)")
    try:
        classes, encoded = np.unique(arr, return_inverse=True)
    except TypeError:
        raise ValueError("y mixes label types that cannot be ordered (e.g. numbers and strings)") from None
    shown = classes[:5].tolist()  # plain Python labels in messages
    if len(classes) < 2:
        raise ValueError(f"y has a single class ({shown[0]!r}): a classifier needs two")
    if len(classes) > 2:
        raise ValueError(f"y has {len(classes)} classes ({', '.join(map(repr, shown))}...); TSClassifier is binary")
    return classes, encoded.astype(np.float64)


class TSClassifier(ClassifierMixin, TeacherStudentEstimator):
    """Composition-only binary classifier taught by a crystal-structure model (teacher-student).

    The same two steps, teachers, students, caching and recipes as
    :class:`~matbench_ts.TSRegressor` (see it for the shared parameters); the target loss is the
    binary cross-entropy on the student's output (a logit), and early stopping and weight averaging
    watch the validation log-loss. Labels may be of any type (bool, str, int): ``classes_`` holds
    them in sorted order and ``predict_proba(X)[:, 1]`` is the probability of ``classes_[1]``.

    Parameters
    ----------
    class_weight : None, "balanced" or dict
        Weights of the two classes in the loss: ``"balanced"`` weighs each inversely to its share
        of the training rows; a dict maps each label to its weight.
    """

    def __init__(
        self,
        teacher: Any = "chgnet",
        student: str | Student = "crabnet",
        *,
        class_weight: str | dict[Any, float] | None = None,
        teacher_params: dict[str, Any] | None = None,
        student_params: dict[str, Any] | None = None,
        pretrained: str | None = None,
        alpha: float | str = "auto",
        beta: float = 1.0,
        epochs: int = 300,
        epochs_step1: int = 100,
        recipe: str | dict[str, Any] = "auto",
        learning_rate: float | None = None,
        batch_size: int | None = None,
        weight_decay: float | None = None,
        validation_fraction: float = 0.1,
        patience: int = 30,
        cache_dir: str | None = None,
        device: str | None = None,
        mixed_precision: bool = False,
        random_state: int | None = None,
        verbose: int = 1,
    ) -> None:
        super().__init__(
            teacher, student, teacher_params=teacher_params, student_params=student_params, pretrained=pretrained,
            alpha=alpha, beta=beta,
            epochs=epochs, epochs_step1=epochs_step1, recipe=recipe, learning_rate=learning_rate,
            batch_size=batch_size, weight_decay=weight_decay, validation_fraction=validation_fraction,
            patience=patience, cache_dir=cache_dir, device=device, mixed_precision=mixed_precision,
            random_state=random_state, verbose=verbose,
        )
        self.class_weight = class_weight

    def _check_params(self) -> None:
        super()._check_params()
        weight = self.class_weight
        if not (weight is None or weight == "balanced" or isinstance(weight, dict)):
            raise ValueError(f"class_weight must be None, 'balanced' or a dict of label -> weight, got {weight!r}")

    def _encode_targets(self, y: Any, n_rows: int) -> np.ndarray:
        self.classes_, encoded = check_labels(y, n_rows)
        if isinstance(self.class_weight, dict):
            unknown = [c for c in self.classes_ if c not in self.class_weight]
            if unknown or not all(np.isfinite(w) and w > 0 for w in self.class_weight.values()):
                raise ValueError(f"class_weight needs a weight > 0 for each class {self.classes_.tolist()}, "
                                 f"got {self.class_weight!r}")
        return encoded

    def _scale_targets(self, y: np.ndarray, train_idx: np.ndarray) -> np.ndarray:
        return y.astype(np.float32)

    def _objective(self, recipe: Recipe) -> str:
        return "bce"

    def _strata(self, y: np.ndarray) -> np.ndarray:
        return y

    def _pos_weight(self, y: np.ndarray, train_idx: np.ndarray) -> float | None:
        if self.class_weight is None:
            return None
        if self.class_weight == "balanced":
            positives = float(y[train_idx].sum())
            return (len(train_idx) - positives) / max(positives, 1.0)
        negative, positive = (self.class_weight[c] for c in self.classes_)
        return float(positive) / float(negative)

    def predict_proba(self, X: Sequence[str | Composition | Structure]) -> np.ndarray:
        """``(n, 2)`` probabilities of ``classes_[0]`` and ``classes_[1]``, from compositions alone."""
        logits = self._student_outputs(X)[1].astype(np.float64)
        positive = 1.0 / (1.0 + np.exp(-logits))
        return np.column_stack([1.0 - positive, positive])

    def decision_function(self, X: Sequence[str | Composition | Structure]) -> np.ndarray:
        """The logit of ``classes_[1]`` for each row."""
        return self._student_outputs(X)[1].astype(np.float64)

    def predict(self, X: Sequence[str | Composition | Structure]) -> np.ndarray:
        """The more probable label of each row."""
        return self.classes_[(self.decision_function(X) > 0).astype(int)]
