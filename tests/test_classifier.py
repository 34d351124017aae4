"""TSClassifier: binary classification through the same two steps as TSRegressor."""

from __future__ import annotations

import joblib
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from matbench_ts import TSClassifier


def labels(y: np.ndarray, kind: str = "str") -> np.ndarray:
    """Formation energy below -1 eV/atom as a label of the given type."""
    stable = y < -1.0
    return {"bool": stable, "int": stable.astype(int) * 5 - 1, "str": np.where(stable, "stable", "unstable")}[kind]


@pytest.fixture(scope="module")
def fitted_ts_classifier(ci_data, cache_dir):
    from conftest import TINY_CRABNET

    model = TSClassifier(teacher="chgnet", student_params=TINY_CRABNET, recipe="plain", epochs=40, epochs_step1=20,
                         learning_rate=2e-3, batch_size=64, patience=10, cache_dir=cache_dir, random_state=0, verbose=0)
    return model.fit(ci_data["X"], labels(ci_data["y"]), structures=ci_data["structures"])


def test_ts_classifier_learns_with_the_teacher(fitted_ts_classifier, ci_data):
    model = fitted_ts_classifier
    y_test = labels(ci_data["y_test"])
    proba = model.predict_proba(ci_data["X_test"])
    assert list(model.classes_) == ["stable", "unstable"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert roc_auc_score(y_test == "unstable", proba[:, 1]) > 0.85
    assert model.score(ci_data["X_test"], y_test) > 0.75  # accuracy
    assert model.alpha_ > 0 and {h["step"] for h in model.history_} == {"step 1", "step 2"}


@pytest.mark.parametrize("kind", ["bool", "int"])
def test_labels_of_any_type_come_back_as_given(kind, ci_data, tiny):
    y = labels(ci_data["y"], kind)
    model = TSClassifier(teacher=None, **{**tiny, "epochs": 10}).fit(ci_data["X"], y)
    assert list(model.classes_) == sorted(set(y.tolist()))
    predicted = model.predict(ci_data["X_test"])
    assert predicted.dtype == y.dtype and set(predicted.tolist()) <= set(y.tolist())


def test_default_recipe_classifies(ci_data, cache_dir):
    from conftest import TINY_CRABNET

    model = TSClassifier(teacher=None, student_params=TINY_CRABNET, epochs=80, cache_dir=cache_dir, random_state=0,
                         verbose=0).fit(ci_data["X"], labels(ci_data["y"], "bool"))
    assert roc_auc_score(labels(ci_data["y_test"], "bool"), model.predict_proba(ci_data["X_test"])[:, 1]) > 0.85


def test_balanced_class_weight_raises_the_minority_probability(ci_data, tiny):
    y = ci_data["y"] < np.quantile(ci_data["y"], 0.15)  # 15 % positives
    plain = TSClassifier(teacher=None, **tiny).fit(ci_data["X"], y)
    balanced = TSClassifier(teacher=None, class_weight="balanced", **tiny).fit(ci_data["X"], y)
    as_dict = TSClassifier(teacher=None, class_weight={False: 1.0, True: (~y).sum() / y.sum()}, **tiny)
    as_dict.fit(ci_data["X"], y)
    p_plain, p_balanced = plain.predict_proba(ci_data["X"])[:, 1], balanced.predict_proba(ci_data["X"])[:, 1]
    assert p_balanced.mean() > p_plain.mean() + 0.05
    assert (balanced.predict(ci_data["X"]) == True).sum() > (plain.predict(ci_data["X"]) == True).sum()  # noqa: E712
    np.testing.assert_allclose(as_dict.predict_proba(ci_data["X"]), balanced.predict_proba(ci_data["X"]), atol=0.05)


def test_sklearn_tools(ci_data, tiny, tmp_path):
    y = labels(ci_data["y"])
    model = TSClassifier(teacher=None, **{**tiny, "epochs": 8})
    assert clone(model).get_params() == model.get_params()
    scores = cross_val_score(model, ci_data["X"], y, cv=StratifiedKFold(3, shuffle=True, random_state=0),
                             scoring="roc_auc")
    assert scores.shape == (3,) and np.all(scores > 0.5)
    search = GridSearchCV(model, {"alpha": [0.0]}, cv=StratifiedKFold(2), scoring="roc_auc").fit(ci_data["X"], y)
    assert search.best_score_ > 0.5
    pipe = make_pipeline(FunctionTransformer(), model).fit(ci_data["X"], y)
    path = tmp_path / "clf.joblib"
    joblib.dump(pipe, path)
    np.testing.assert_array_equal(joblib.load(path).predict_proba(ci_data["X_test"]), pipe.predict_proba(ci_data["X_test"]))


@pytest.mark.parametrize("y, message", [
    (["a"] * 20, r"single class \('a'\)"),
    (["a", "b", "c", "a"] * 5, r"3 classes .*TSClassifier is binary"),
    (["a", None] * 10, r"missing label \(None\) at row 1 \(10 such rows\)"),
    ([0.0, np.nan] * 10, r"missing label \(nan\) at row 1"),
    (["a", "b"] * 9, "y has 18 rows but X has 20"),
])
def test_bad_labels_are_refused_before_work(y, message, monkeypatch):
    import matbench_ts.estimator as estimator

    monkeypatch.setattr(estimator, "make_student", lambda *a: pytest.fail("work started"))
    with pytest.raises(ValueError, match=message):
        TSClassifier(teacher=None).fit(["NaCl"] * 20, y)


def test_bad_class_weight(tiny):
    with pytest.raises(ValueError, match="class_weight must be None, 'balanced' or a dict"):
        TSClassifier(teacher=None, class_weight="even").fit(["NaCl", "KCl"] * 10, [0, 1] * 10)
    with pytest.raises(ValueError, match=r"class_weight needs a weight > 0 for each class \['x', 'y'\]"):
        TSClassifier(teacher=None, class_weight={"x": 1.0}).fit(["NaCl", "KCl"] * 10, ["x", "y"] * 10)
