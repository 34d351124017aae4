"""TSRegressor on real data: learning, teachers, students, caching, masking, reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import TINY_ALIGNN, TINY_ROOST
from pymatgen.core import Composition

from matbench_ts import TSRegressor
from matbench_ts.estimator import AUTO_ALPHA_RULE
from matbench_ts.teachers.alignn import ALIGNNTeacher
from matbench_ts.training import MAX_ALPHA


def mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


def test_ts_learns_better_than_mean_predictor(fitted_ts, ci_data):
    mean_mae = mae(np.mean(ci_data["y"]), ci_data["y_test"])
    ts_mae = mae(fitted_ts.predict(ci_data["X_test"]), ci_data["y_test"])
    assert ts_mae < 0.6 * mean_mae, (ts_mae, mean_mae)
    assert fitted_ts.teacher_id_ == "chgnet-0.3.0-atom"
    assert fitted_ts.alpha_ > 0
    assert {h["step"] for h in fitted_ts.history_} == {"step 1", "step 2"}


@pytest.mark.parametrize("student,params", [("crabnet", None), ("roost", TINY_ROOST)])
def test_baseline_students_learn(student, params, ci_data, tiny):
    from conftest import TINY_CRABNET

    tiny.update(student=student, student_params=params or TINY_CRABNET)
    model = TSRegressor(teacher=None, **tiny).fit(ci_data["X"], ci_data["y"])
    mean_mae = mae(np.mean(ci_data["y"]), ci_data["y_test"])
    assert mae(model.predict(ci_data["X_test"]), ci_data["y_test"]) < 0.75 * mean_mae
    assert model.alpha_ == 0.0 and {h["step"] for h in model.history_} == {"step 2"}


def test_roost_student_with_chgnet_teacher(ci_data, tiny):
    tiny.update(student="roost", student_params=TINY_ROOST)
    model = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert model.transform(ci_data["X_test"]).shape == (60, TINY_ROOST["out_hidden"][-1])
    mean_mae = mae(np.mean(ci_data["y"]), ci_data["y_test"])
    assert mae(model.predict(ci_data["X_test"]), ci_data["y_test"]) < 0.75 * mean_mae


def test_alignn_teacher_trains_inside_fit_and_is_cached(ci_data, tiny, monkeypatch):
    calls = []
    original_fit = ALIGNNTeacher.fit

    def counting_fit(self, structures, y=None):
        calls.append(len(structures))
        return original_fit(self, structures, y)

    monkeypatch.setattr(ALIGNNTeacher, "fit", counting_fit)
    model = TSRegressor(teacher="alignn", teacher_params=TINY_ALIGNN, **tiny)
    model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert calls == [240]  # trained on the training rows only
    assert model.n_teacher_computed_ == 240
    teacher_mae = mae(model.teacher_.predict(ci_data["structures_test"]), ci_data["y_test"])
    assert teacher_mae < mae(np.mean(ci_data["y"]), ci_data["y_test"])
    first = model.predict(ci_data["X_test"])

    model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert calls == [240], "refit on the same data must reuse the cached teacher"
    assert model.n_teacher_computed_ == 0
    np.testing.assert_allclose(model.predict(ci_data["X_test"]), first, rtol=1e-5, atol=1e-6)


def test_alignn_checkpoint_round_trip(ci_data, tmp_path):
    teacher = ALIGNNTeacher(**{**TINY_ALIGNN, "epochs": 1}).fit(ci_data["structures"][:40], ci_data["y"][:40])
    path = tmp_path / "alignn.pt"
    teacher.save(path)
    loaded = ALIGNNTeacher(checkpoint=str(path)).fit(ci_data["structures"][:3])
    np.testing.assert_allclose(
        loaded.transform(ci_data["structures"][:5]), teacher.transform(ci_data["structures"][:5]), rtol=1e-5, atol=1e-6
    )


def test_refit_with_chgnet_does_no_teacher_work(fitted_ts, ci_data, tiny):
    model = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 2, "epochs_step1": 1})
    model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert model.n_teacher_computed_ == 0


def test_rows_without_structure_are_masked(ci_data, tiny):
    structures = [s if i % 2 else None for i, s in enumerate(ci_data["structures"])]
    model = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=structures)
    assert model.alpha_ > 0
    assert mae(model.predict(ci_data["X_test"]), ci_data["y_test"]) < mae(np.mean(ci_data["y"]), ci_data["y_test"])


def test_one_structure_among_many_rows_guides_a_little(ci_data, tiny):
    """Step 1 fits a lone structure exactly; neither its measured alpha nor its batch may swamp the targets."""
    structures = [s if i == 0 else None for i, s in enumerate(ci_data["structures"])]
    ts = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=structures)
    base = TSRegressor(teacher=None, **tiny).fit(ci_data["X"], ci_data["y"])
    assert 0 < ts.alpha_ <= MAX_ALPHA
    ts_mae = mae(ts.predict(ci_data["X_test"]), ci_data["y_test"])
    base_mae = mae(base.predict(ci_data["X_test"]), ci_data["y_test"])
    assert ts_mae < 1.15 * base_mae, (ts_mae, base_mae)


def test_a_lone_structure_drawn_for_validation_is_trained_on(ci_data, tiny):
    from sklearn.model_selection import train_test_split

    n = len(ci_data["X"])
    lone = train_test_split(np.arange(n), test_size=0.1, random_state=tiny["random_state"])[1][0]
    structures = [s if i == lone else None for i, s in enumerate(ci_data["structures"])]
    model = TSRegressor(teacher="chgnet", validation_fraction=0.1, **{**tiny, "epochs": 3, "epochs_step1": 2})
    model.fit(ci_data["X"], ci_data["y"], structures=structures)  # its scaling crashed with no training row
    assert model.alpha_ > 0  # the teacher guided step 2 through that row
    assert any(h["step"] == "step 1" for h in model.history_)


def test_measured_alpha_is_capped_when_step1_fits_exactly(monkeypatch):
    from matbench_ts import training

    monkeypatch.setattr(training, "evaluate", lambda *a, **k: training.Losses(emb_sum=1e-9, emb_rows=1, target_sum=0.7,
                                                                               target_rows=1))
    with pytest.warns(UserWarning, match="capped"):
        assert training.balancing_alpha(None, None, 1.0, 8, torch.device("cpu")) == MAX_ALPHA


def test_masked_embedding_loss_ignores_rows_without_teacher():
    from matbench_ts.students import make_student
    from matbench_ts.training import Rows, StudentWithProjection, batch_losses

    from conftest import TINY_CRABNET

    torch.manual_seed(0)
    model = StudentWithProjection(make_student("crabnet", TINY_CRABNET), 3).eval()
    comps = [Composition(f) for f in ["NaCl", "MgO", "Fe2O3", "SiC"]]
    teacher = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    teacher[[1, 3]] = np.nan
    rows = Rows(model.student.encode(comps), None, teacher)
    with torch.no_grad():
        emb, n_emb, *_ = batch_losses(model, rows, np.arange(4), torch.device("cpu"))
        kept, n_kept, *_ = batch_losses(model, Rows(rows.items, None, teacher), np.array([0, 2]), torch.device("cpu"))
    assert n_emb == 2 and n_kept == 2
    assert float(emb) == pytest.approx(float(kept), rel=1e-6)


def test_fit_without_structures_is_the_baseline(ci_data, tiny):
    with pytest.warns(UserWarning, match="no row has a structure"):
        ts = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"])
    base = TSRegressor(teacher=None, **tiny).fit(ci_data["X"], ci_data["y"])
    np.testing.assert_array_equal(ts.predict(ci_data["X_test"]), base.predict(ci_data["X_test"]))


def test_same_random_state_same_predictions_and_global_rng_untouched(ci_data, tiny, tmp_path):
    tiny["cache_dir"] = str(tmp_path)  # a: cold teacher cache, b: warm; the results must not differ
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    a = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert torch.rand(1) == expected_next, "fit must not reseed the global torch RNG"
    b = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert (a.n_teacher_computed_, b.n_teacher_computed_) == (240, 0)
    np.testing.assert_array_equal(a.predict(ci_data["X_test"]), b.predict(ci_data["X_test"]))
    c = TSRegressor(teacher="chgnet", **{**tiny, "random_state": 1})
    c.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert not np.array_equal(a.predict(ci_data["X_test"]), c.predict(ci_data["X_test"]))


def test_structures_as_X_feed_the_teacher(ci_data, tiny, tmp_path):
    tiny["cache_dir"] = str(tmp_path)
    model = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 3, "epochs_step1": 2})
    model.fit(ci_data["structures"][:50], ci_data["y"][:50])
    assert model.n_teacher_computed_ == 50
    formulas = model.predict(ci_data["X_test"])
    np.testing.assert_allclose(model.predict([Composition(f) for f in ci_data["X_test"]]), formulas, rtol=1e-6)
    np.testing.assert_allclose(model.predict(ci_data["structures_test"]), formulas, rtol=1e-6)


def test_pretrain_structures_run_step1_on_the_library(ci_data, tiny, tmp_path):
    tiny["cache_dir"] = str(tmp_path)
    library = ci_data["structures_test"]  # stands in for an MP structure library
    model = TSRegressor(teacher="chgnet", **tiny)
    model.fit(ci_data["X"][:40], ci_data["y"][:40], pretrain_structures=library)
    assert model.n_teacher_computed_ == len(library)
    assert any(h["step"] == "step 1" for h in model.history_)
    assert model.alpha_ == 0.0  # no fit row has a structure: step 2 is target-only


def test_fixed_alpha_is_used(ci_data, tiny):
    model = TSRegressor(teacher="chgnet", alpha=0.5, **{**tiny, "epochs": 2, "epochs_step1": 0})
    model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert model.alpha_ == 0.5
    assert {h["step"] for h in model.history_} == {"step 2"}


def test_alpha_rules_measure_before_or_after_step1(ci_data, tiny):
    fit = lambda **kw: TSRegressor(teacher="chgnet", **{**tiny, "epochs": 2, **kw}).fit(  # noqa: E731
        ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    untrained = fit(alpha="auto-step2", epochs_step1=0).alpha_  # no step 1: measured on the untrained student
    before_step1 = fit(alpha="auto-init", epochs_step1=5)
    after_step1 = fit(alpha="auto-step2", epochs_step1=5)
    assert before_step1.alpha_ == pytest.approx(untrained, rel=1e-5)
    assert after_step1.alpha_ != pytest.approx(untrained, rel=1e-2)  # step 1 moved the losses
    assert any(h["step"] == "step 1" for h in before_step1.history_)
    default = fit(alpha="auto", epochs_step1=5)
    assert default.alpha_ == {"auto-init": before_step1, "auto-step2": after_step1}[AUTO_ALPHA_RULE].alpha_


def test_mixed_precision_trains_and_predicts_float(ci_data, tiny):
    kw = {**tiny, "epochs": 15, "epochs_step1": 5}
    plain = TSRegressor(teacher="chgnet", **kw).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    amp = TSRegressor(teacher="chgnet", mixed_precision=True, **kw)
    amp.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    pred, dummy = amp.predict(ci_data["X_test"]), np.abs(ci_data["y_test"] - ci_data["y"].mean()).mean()
    assert pred.dtype == np.float64 and np.abs(pred - ci_data["y_test"]).mean() < 0.6 * dummy
    assert next(amp.model_.parameters()).dtype == torch.float32  # autocast: the weights stay float32
    assert not np.allclose(pred, plain.predict(ci_data["X_test"]))  # bfloat16 really ran


class DensityTeacher:
    """A user teacher: plain transformer methods, no matbench_ts base class."""

    def fit(self, structures, y=None):
        self.scale_ = float(np.mean([s.density for s in structures]))
        return self

    def transform(self, structures):
        return np.array([[s.density / self.scale_, s.volume / len(s)] for s in structures])


def test_custom_transformer_teacher(ci_data, tiny):
    model = TSRegressor(teacher=DensityTeacher(), **tiny)
    model.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    assert model.model_.projection.out_features == 2
    assert model.n_teacher_computed_ == 240
    assert mae(model.predict(ci_data["X_test"]), ci_data["y_test"]) < mae(np.mean(ci_data["y"]), ci_data["y_test"])


def test_importing_students_leaves_global_rngs_alone():
    """crabnet seeds torch and numpy at import; our import must undo that."""
    import subprocess
    import sys

    code = (
        "import numpy as np, torch; torch.manual_seed(7); np.random.seed(7); "
        "import matbench_ts.students.crabnet, matbench_ts.students.roost; "
        "t, n = torch.rand(1).item(), np.random.rand(); "
        "torch.manual_seed(7); np.random.seed(7); "
        "assert (t, n) == (torch.rand(1).item(), np.random.rand()), (t, n)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_random_state_reaches_a_trained_teacher(ci_data, tiny, tmp_path):
    """ALIGNN without its own random_state gets the estimator's: two cold fits train the same teacher.

    (Its scatter sums run in thread order on CPU, so equal means within float32 round-off.)
    """
    params = {k: v for k, v in TINY_ALIGNN.items() if k != "random_state"}
    embeddings = []
    for run in ("a", "b"):
        model = TSRegressor(teacher="alignn", teacher_params=params, **{**tiny, "cache_dir": str(tmp_path / run), "epochs": 2})
        model.fit(ci_data["X"][:80], ci_data["y"][:80], structures=ci_data["structures"][:80])
        assert model.teacher_.random_state == 0 and model.n_teacher_computed_ == 80
        embeddings.append(model.teacher_.transform(ci_data["structures_test"][:10]))
    np.testing.assert_allclose(embeddings[0], embeddings[1], atol=1e-4)


def test_cache_keeps_chunks_computed_before_an_interruption(ci_data, tmp_path):
    from matbench_ts.cache import TeacherCache

    structures = ci_data["structures"][:5]
    calls = []

    def compute(chunk):
        calls.append(len(chunk))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.ones((len(chunk), 3))

    with TeacherCache(tmp_path, chunk_size=2) as cache, pytest.raises(KeyboardInterrupt):
        cache.embeddings("t", structures, compute)
    with TeacherCache(tmp_path, chunk_size=2) as cache:
        emb = cache.embeddings("t", structures, lambda chunk: np.zeros((len(chunk), 3)))
        assert cache.computed == 1  # the first two chunks (4 structures) survived
    np.testing.assert_array_equal(emb[:, 0], [1, 1, 1, 1, 0])
