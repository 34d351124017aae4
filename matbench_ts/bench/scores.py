"""What a run is scored by: Matbench's metric and its companions, the calibration of predicted
standard deviations, and the ridge probe that stands for a frozen teacher's own MAE."""

from __future__ import annotations

from typing import Any

import numpy as np


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    """MAE (Matbench's regression metric), RMSE and the MAE of the training mean."""
    err = y_pred - y_true
    return {"metric": "mae", "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "dummy_mae": float(np.mean(np.abs(y_true - y_train.mean())))}


def classification_scores(labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """ROC-AUC from probabilities (Matbench's classification metric), and accuracy, F1 and balanced
    accuracy of the labels at probability 0.5."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    predicted = proba > 0.5
    return {"metric": "roc_auc", "roc_auc": float(roc_auc_score(labels, proba)),
            "accuracy": float(accuracy_score(labels, predicted)), "f1": float(f1_score(labels, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted))}


def calibration(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray) -> dict[str, float]:
    """How well predicted standard deviations match the errors.

    ``spearman``: rank correlation of |error| with std; ``coverage_95``: share of rows within
    +-1.96 std (0.95 when calibrated); ``miscalibration_area``: mean |observed - expected| share
    inside the central Gaussian intervals over 99 confidence levels (0 when calibrated).
    """
    from scipy.stats import norm, spearmanr

    err = np.abs(np.asarray(y_pred) - np.asarray(y_true))
    z = err / np.maximum(np.asarray(y_std), 1e-12)
    levels = np.linspace(0.01, 0.99, 99)
    observed = np.array([np.mean(z <= norm.ppf(0.5 + p / 2)) for p in levels])
    return {"spearman": float(spearmanr(err, y_std).statistic), "coverage_95": float(np.mean(z <= 1.96)),
            "miscalibration_area": float(np.mean(np.abs(observed - levels))), "mean_std": float(np.mean(y_std))}


def ridge_probe() -> Any:
    """The linear read-out that stands for a frozen teacher's own MAE (reports, diagnostics)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))
