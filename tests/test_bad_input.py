"""Bad input fails fast with a ValueError naming the offending item, before any training."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError

from matbench_ts import TSRegressor


class RecordingTeacher:
    """Fails the test if any teacher work starts."""

    def fit(self, structures, y=None):
        raise AssertionError("teacher work started before input validation")

    def transform(self, structures):
        raise AssertionError("teacher work started before input validation")


@pytest.fixture
def model(tiny):
    return TSRegressor(teacher=RecordingTeacher(), **tiny)


@pytest.mark.parametrize(
    "X, message",
    [
        (["NaCl", "Xx2O3", "MgO"], r"row 1: unknown element Xx in .Xx2O3."),
        (["NaCl", "MgO", "Na((Cl"], r"row 2.*Na\(\(Cl"),
        (["NaCl", "", "MgO"], r"row 1"),
        ([], r"empty"),
    ],
)
def test_bad_formulas(model, X, message):
    with pytest.raises(ValueError, match=message):
        model.fit(X, np.zeros(len(X)))


def test_element_unknown_to_the_student(tiny):
    model = TSRegressor(teacher=RecordingTeacher(), **{**tiny, "student": "roost", "student_params": None})
    with pytest.raises(ValueError, match=r"row 1: element Og"):
        model.fit(["NaCl", "OgF2"], [1.0, 2.0])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_targets(model, bad):
    with pytest.raises(ValueError, match=r"non-finite value .* at row 2"):
        model.fit(["NaCl", "MgO", "SiC"], [1.0, 2.0, bad])


def test_length_mismatch_targets(model):
    with pytest.raises(ValueError, match=r"y has 2 rows but X has 3"):
        model.fit(["NaCl", "MgO", "SiC"], [1.0, 2.0])


def test_length_mismatch_structures(model, ci_data):
    with pytest.raises(ValueError, match=r"structures has 2 rows but X has 3"):
        model.fit(ci_data["X"][:3], ci_data["y"][:3], structures=ci_data["structures"][:2])


def test_structure_composition_disagrees(model, ci_data):
    structures = list(ci_data["structures"][:4])
    structures[2] = ci_data["structures"][10]
    with pytest.raises(ValueError, match=r"row 2: structure composition .* differs"):
        model.fit(ci_data["X"][:4], ci_data["y"][:4], structures=structures)


def test_unparsable_structure(model, ci_data):
    with pytest.raises(ValueError, match=r"row 1: cannot parse structure"):
        model.fit(ci_data["X"][:2], ci_data["y"][:2], structures=[ci_data["structures"][0], "not a cif"])


def test_bad_pretrain_structure(model, ci_data):
    with pytest.raises(ValueError, match=r"pretrain_structures.*row 0"):
        model.fit(ci_data["X"][:2], ci_data["y"][:2], pretrain_structures=["garbage"])


def test_bad_parameters(tiny):
    with pytest.raises(ValueError, match="alpha must be 'auto', 'auto-init', 'auto-step2' or a finite number.*'big'"):
        TSRegressor(alpha="big", **tiny).fit(["NaCl"], [1.0])
    with pytest.raises(ValueError, match="unknown teacher"):
        TSRegressor(teacher="megnet", **tiny).fit(["NaCl"], [1.0])
    with pytest.raises(ValueError, match="unknown student"):
        TSRegressor(**{**tiny, "student": "cgcnn"}).fit(["NaCl"], [1.0])


def test_predict_before_fit(tiny):
    with pytest.raises(NotFittedError):
        TSRegressor(**tiny).predict(["NaCl"])


def test_predict_rejects_bad_formula(fitted_ts):
    with pytest.raises(ValueError, match=r"row 1.*Qq"):
        fitted_ts.predict(["NaCl", "Qq2"])
