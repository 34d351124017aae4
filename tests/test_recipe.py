"""Training recipes (the published students' own) and the uncertainty they give."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Composition
from conftest import TINY_CRABNET, TINY_ROOST
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer

from matbench_ts import TSRegressor
from matbench_ts.bench.scores import calibration
from matbench_ts.recipe import RECIPES, resolve_recipe
from matbench_ts.students.crabnet import CrabNetStudent


def mae(a, b) -> float:
    return float(np.mean(np.abs(np.asarray(a) - np.asarray(b))))


@pytest.fixture(scope="module")
def crabnet_recipe_model(ci_data, cache_dir):
    """A tiny CrabNet trained with crabnet's recipe (robust loss, Lamb, cyclic lr, SWA)."""
    model = TSRegressor(teacher=None, student="crabnet", student_params=TINY_CRABNET, epochs=80,
                        cache_dir=cache_dir, random_state=0, verbose=0)
    return model.fit(ci_data["X"], ci_data["y"])


def test_auto_recipe_is_the_students_own():
    assert resolve_recipe("auto", "crabnet") == RECIPES["crabnet"]
    assert resolve_recipe("auto", "roost") == RECIPES["roost"]
    assert resolve_recipe("auto", CrabNetStudent(**TINY_CRABNET)) == RECIPES["plain"]
    ablated = resolve_recipe({"base": "crabnet", "swa": False}, "roost")
    assert ablated.optimizer == "lamb" and not ablated.swa


@pytest.mark.parametrize("recipe, message", [
    ("adam", "unknown recipe 'adam'"),
    ({"base": "crabnet", "momentum": 0.9}, r"unknown recipe field\(s\) \['momentum'\]"),
    ({"base": "plain", "swa": True}, "needs cycle_epochs > 0"),
    ({"loss": "huber"}, "recipe loss must be one of"),
    ({"learning_rate": float("nan")}, "recipe learning_rate must be a finite number"),
    ({"swa": "maybe"}, "recipe swa must be True or False"),
])
def test_bad_recipes_are_refused_before_work(recipe, message, ci_data):
    with pytest.raises(ValueError, match=message):
        TSRegressor(teacher=None, recipe=recipe).fit(ci_data["X"], ci_data["y"])


def test_batch_size_grows_with_data_as_crabnet_does():
    rule = RECIPES["crabnet"].batch_size_for
    assert [rule(n) for n in (50, 250, 3683, 14000, 10**6)] == [128, 128, 256, 1024, 4096]
    assert RECIPES["roost"].batch_size_for(10**6) == 128


def test_crabnet_recipe_learns_and_averages_at_cycle_minima(crabnet_recipe_model, ci_data):
    model = crabnet_recipe_model
    assert model.recipe_ == RECIPES["crabnet"]
    assert mae(model.predict(ci_data["X_test"]), ci_data["y_test"]) < 0.6 * mae(np.mean(ci_data["y"]), ci_data["y_test"])
    # SWA stops only at the end of a learning-rate cycle
    assert len(model.history_) % RECIPES["crabnet"].cycle_epochs == 0


def test_return_std_gives_informative_uncertainty(crabnet_recipe_model, ci_data):
    model = crabnet_recipe_model
    mean, std = model.predict(ci_data["X_test"], return_std=True)
    np.testing.assert_allclose(mean, model.predict(ci_data["X_test"]))
    assert std.shape == mean.shape and np.all(np.isfinite(std)) and np.all(std > 0)
    # in target units: the typical predicted std is of the order of the errors
    typical_error = mae(mean, ci_data["y_test"])
    assert 0.2 * typical_error < np.median(std) < 5 * typical_error
    # rows the model finds harder have larger errors (on its training rows, where it has learned most)
    train_mean, train_std = model.predict(ci_data["X"], return_std=True)
    assert calibration(ci_data["y"], train_mean, train_std)["spearman"] > 0.2


def test_return_std_through_a_pipeline(crabnet_recipe_model, ci_data):
    pipe = make_pipeline(FunctionTransformer(), crabnet_recipe_model)  # already fitted: only predict is used
    pipe[0].fit(ci_data["X"])
    mean, std = pipe.predict(ci_data["X_test"], return_std=True)
    direct_mean, direct_std = crabnet_recipe_model.predict(ci_data["X_test"], return_std=True)
    np.testing.assert_allclose(mean, direct_mean)
    np.testing.assert_allclose(std, direct_std)


def test_roost_recipe_gives_std_with_a_teacher(ci_data, tiny):
    tiny.update(student="roost", student_params=TINY_ROOST, recipe="auto", learning_rate=None, batch_size=None,
                epochs=30, epochs_step1=10)
    model = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    mean, std = model.predict(ci_data["X_test"], return_std=True)
    assert model.recipe_ == RECIPES["roost"] and np.all(std > 0)
    assert mae(mean, ci_data["y_test"]) < 0.75 * mae(np.mean(ci_data["y"]), ci_data["y_test"])


def test_plain_recipe_has_no_std(ci_data, tiny):
    model = TSRegressor(teacher=None, **{**tiny, "epochs": 2}).fit(ci_data["X"], ci_data["y"])
    with pytest.raises(ValueError, match="return_std needs a recipe with the robust loss"):
        model.predict(ci_data["X_test"], return_std=True)


def test_diverging_training_stops_with_an_error(ci_data, tiny):
    model = TSRegressor(teacher=None, **{**tiny, "learning_rate": 1e12, "epochs": 5})
    with pytest.raises(FloatingPointError, match=r"step 2: the training loss became non-finite in epoch \d"):
        model.fit(ci_data["X"], ci_data["y"])


def test_fractional_jitter_keeps_compositions_normalised():
    student = CrabNetStudent(**TINY_CRABNET)
    batch = student.collate(student.encode([Composition(f) for f in
                                            ("Fe2O3", "NaCl", "LiFePO4")]), torch.device("cpu"))
    src, frac = student.augment(batch, 0.02)
    assert torch.allclose(frac.sum(dim=1), torch.ones(3))
    assert torch.all(frac[src == 0] == 0) and not torch.equal(frac, batch[1])
    assert student.augment(batch, 0.0) is batch


def test_calibration_of_a_calibrated_gaussian():
    rng = np.random.default_rng(0)
    std = rng.uniform(0.5, 2.0, 20000)
    y_true = rng.normal(0.0, std)
    scores = calibration(y_true, np.zeros_like(std), std)
    assert abs(scores["coverage_95"] - 0.95) < 0.01
    assert scores["miscalibration_area"] < 0.01 and scores["spearman"] > 0.3
    overconfident = calibration(y_true, np.zeros_like(std), std / 3)
    assert overconfident["coverage_95"] < 0.6 and overconfident["miscalibration_area"] > 0.2


def test_exactly_fitted_rows_keep_the_robust_loss_finite():
    # fitted exactly (e.g. a constant target), the log-std falls without bound; 0 * exp(-log_std) is NaN
    from matbench_ts.training import Rows, StudentWithProjection, batch_losses

    model = StudentWithProjection(CrabNetStudent(**TINY_CRABNET), None).eval()
    head = model.student.head
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor([0.7, -100.0, 50.0]))  # prediction 0.7 (gate open), log-std -100
    rows = Rows(model.student.encode([Composition("NaCl"), Composition("MgO")]), np.full(2, 0.7, np.float32))
    with torch.no_grad():
        _, _, loss, mae_, _ = batch_losses(model, rows, np.arange(2), torch.device("cpu"), objective="robust")
    assert float(mae_) == 0.0 and np.isfinite(float(loss))


def test_dropout_until_swa_trains_in_eval_mode_after_the_first_check(ci_data, monkeypatch):
    import matbench_ts.training as training

    train_modes = []
    original = training.batch_losses

    def recording(model, *args, **kwargs):
        if "jitter" in kwargs:  # a training batch (validation passes give no jitter)
            train_modes.append(model.training)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(training, "batch_losses", recording)
    for until_swa, expected in ((True, [True] * 4 + [False] * 4), (False, [True] * 8)):
        train_modes.clear()
        recipe = {"base": "crabnet", "cycle_epochs": 2, "dropout_until_swa": until_swa}
        TSRegressor(teacher=None, student_params=TINY_CRABNET, recipe=recipe, epochs=4, batch_size=120,
                    random_state=0, verbose=0).fit(ci_data["X"], ci_data["y"])
        assert train_modes == expected  # 2 batches an epoch; the first check ends epoch 2


def test_swa_checks_every_batch_and_counts_dry_cycles_as_asked(ci_data, monkeypatch):
    from matbench_ts._crabnet import SWA

    calls, script = [], iter([])
    original = SWA.update_swa

    def scripted(self, mae):
        original(self, mae)
        calls.append(mae)
        self.minimum_found = next(script, self.minimum_found)

    monkeypatch.setattr(SWA, "update_swa", scripted)
    fit = lambda recipe, epochs: TSRegressor(  # noqa: E731
        teacher=None, student_params=TINY_CRABNET, recipe={"base": "crabnet", **recipe}, epochs=epochs,
        batch_size=120, random_state=0, verbose=0).fit(ci_data["X"], ci_data["y"])
    fit({"cycle_epochs": 2, "swa_every_batch": True}, 4)
    assert len(calls) == 4  # 2 cycle-ending epochs x 2 batches
    for cumulative, expected_epochs in ((False, 8), (True, 3)):
        calls.clear()
        script = iter([False, True, False, True, False, True, False, True])  # never 2 dry cycles in a row
        model = fit({"cycle_epochs": 1, "patience_cycles": 2, "cumulative_patience": cumulative,
                     "early_stopping": True}, 8)
        assert len(model.history_) == expected_epochs


def test_stopping_rules_respect_early_stopping_and_min_epoch_fraction(ci_data, monkeypatch):
    """A validation score that never improves: patience stops the step unless the recipe turns early
    stopping off (Roost's) or a minimum share of the epochs must run first; the same for the cycle rule."""
    from matbench_ts import training
    from matbench_ts._crabnet import SWA

    original = training.evaluate
    worsening = iter(range(1, 10_000))

    def never_improving(*args, **kwargs):
        losses = original(*args, **kwargs)
        losses.target_sum = float(next(worsening)) * max(losses.target_rows, 1)
        return losses

    monkeypatch.setattr(training, "evaluate", never_improving)
    epochs_run = lambda recipe: len(TSRegressor(  # noqa: E731
        teacher=None, student_params=TINY_CRABNET, recipe=recipe, epochs=8, patience=2, batch_size=120,
        random_state=0, verbose=0).fit(ci_data["X"], ci_data["y"]).history_)
    assert epochs_run({"base": "plain"}) == 3  # the first epoch is the best; 2 more without progress
    assert epochs_run({"base": "plain", "min_epoch_fraction": 0.5}) == 4
    assert epochs_run({"base": "roost"}) == 8 and not RECIPES["roost"].early_stopping

    monkeypatch.setattr(SWA, "update_swa", lambda self, mae: setattr(self, "minimum_found", False))
    cycles = {"base": "crabnet", "cycle_epochs": 1, "patience_cycles": 2}
    assert epochs_run(cycles) == 8 and not RECIPES["crabnet"].early_stopping  # crabnet's runs every epoch
    assert epochs_run({**cycles, "early_stopping": True}) == 2
    assert epochs_run({**cycles, "early_stopping": True, "min_epoch_fraction": 0.75}) == 6


@pytest.mark.parametrize("field, value", [("min_epoch_fraction", 1.5), ("min_epoch_fraction", -0.1),
                                          ("early_stopping", "no")])
def test_bad_stopping_fields_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        resolve_recipe({"base": "crabnet", field: value}, "crabnet")
