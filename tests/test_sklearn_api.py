"""TSRegressor as a scikit-learn citizen: params, clone, pipelines, search, persistence."""

from __future__ import annotations

import joblib
import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score
from sklearn.pipeline import Pipeline

from matbench_ts import TSRegressor


def test_get_set_params_and_clone_round_trip(tiny):
    model = TSRegressor(teacher="chgnet", alpha=0.3, **tiny)
    params = model.get_params()
    assert params["alpha"] == 0.3 and params["student_params"] == tiny["student_params"]
    copy = clone(model)
    assert copy.get_params() == params
    copy.set_params(alpha="auto", epochs=5)
    assert copy.alpha == "auto" and copy.epochs == 5 and model.alpha == 0.3


def test_tags_declare_string_input():
    tags = TSRegressor().__sklearn_tags__()
    assert tags.input_tags.string and not tags.input_tags.two_d_array
    assert tags.estimator_type == "regressor"


def test_joblib_round_trip_predicts_the_same(fitted_ts, ci_data, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(fitted_ts, path)
    loaded = joblib.load(path)
    np.testing.assert_array_equal(loaded.predict(ci_data["X_test"]), fitted_ts.predict(ci_data["X_test"]))
    np.testing.assert_array_equal(loaded.transform(ci_data["X_test"]), fitted_ts.transform(ci_data["X_test"]))


def test_transform_and_score(fitted_ts, ci_data):
    emb = fitted_ts.transform(ci_data["X_test"])
    assert emb.shape == (60, fitted_ts.model_.student.embedding_dim)
    assert fitted_ts.score(ci_data["X_test"], ci_data["y_test"]) > 0.5  # R^2


def test_pipeline_passes_structures(ci_data, tiny):
    pipe = Pipeline([("ts", TSRegressor(teacher="chgnet", **{**tiny, "epochs": 5, "epochs_step1": 2}))])
    pipe.fit(ci_data["X"], ci_data["y"], ts__structures=ci_data["structures"])
    assert pipe.named_steps["ts"].alpha_ > 0
    assert pipe.predict(ci_data["X_test"]).shape == (60,)


def test_grid_search_and_cross_val_score(ci_data, tiny):
    base = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 8, "epochs_step1": 3})
    search = GridSearchCV(base, {"alpha": [0.0, "auto"]}, cv=2, scoring="neg_mean_absolute_error")
    search.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert search.best_params_["alpha"] in (0.0, "auto")
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    scores = cross_val_score(
        base, ci_data["X"], ci_data["y"], cv=KFold(3), scoring="neg_mean_absolute_error",
        params={"structures": ci_data["structures"]},
    )
    assert scores.shape == (3,) and np.all(np.isfinite(scores)) and np.all(scores < 0)
