"""Issue #12: no silent NaN, no cryptic crash. Each test names the item of the issue it covers."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from matbench_ts import TSRegressor


class NoTeacherWork:
    """Fails the test if any teacher work starts (settings must be refused before)."""

    def fit(self, structures, y=None):
        raise AssertionError("teacher work started before the settings were checked")

    def transform(self, structures):
        raise AssertionError("teacher work started before the settings were checked")


# ----------------------------------------------------------------------------- 1, 11: settings
@pytest.mark.parametrize(
    "settings, message",
    [
        (dict(beta=0, alpha="auto"), r"beta=0 .*needs a number alpha > 0, got alpha='auto'"),
        (dict(beta=0, alpha="auto-init"), r"beta=0 .*alpha='auto-init'"),
        (dict(beta=0, alpha="auto-step2"), r"beta=0 .*alpha='auto-step2'"),
        (dict(beta=0, alpha=0.0), r"beta=0 .*alpha=0.0"),
        (dict(beta=0, alpha=1.0, teacher=None), r"beta=0 .*needs a teacher"),
        (dict(beta=0, alpha="auto", teacher=None), r"beta=0 .*needs a teacher"),
        (dict(alpha=np.inf), r"alpha must be .* finite number >= 0, got inf"),
        (dict(alpha=np.nan), r"alpha must be .*got nan"),
        (dict(beta=np.nan), r"beta must be a finite number >= 0, got nan"),
        (dict(beta=np.inf), r"beta must be .*got inf"),
        (dict(beta="x"), r"beta must be .*got 'x'"),
        (dict(beta=-1.0), r"beta must be .*got -1.0"),
        (dict(learning_rate=np.inf), r"learning_rate must be None or a finite number > 0, got inf"),
        (dict(learning_rate=np.nan), r"learning_rate .*got nan"),
        (dict(learning_rate=0.0), r"learning_rate .*got 0.0"),
        (dict(learning_rate=-1e-3), r"learning_rate .*got -0.001"),
        (dict(learning_rate="fast"), r"learning_rate .*got 'fast'"),
        (dict(weight_decay=np.nan), r"weight_decay must be None or a finite number >= 0, got nan"),
        (dict(validation_fraction="x"), r"validation_fraction must be in \[0, 1\), got 'x'"),
        (dict(verbose="x"), r"verbose must be an integer, got 'x'"),
        (dict(random_state=np.random.RandomState(0)), r"random_state must be None or an integer, got RandomState"),
        (dict(batch_size=0), r"batch_size must be None or an integer >= 1, got 0"),
        (dict(epochs=0), r"epochs must be an integer >= 1, got 0"),
        (dict(epochs_step1=-1), r"epochs_step1 must be an integer >= 0, got -1"),
        (dict(patience=2.5), r"patience must be an integer >= 0, got 2.5"),
    ],
)
def test_invalid_settings_are_refused_up_front(tiny, settings, message):
    model = TSRegressor(**{**tiny, "teacher": NoTeacherWork(), **settings})
    with pytest.raises(ValueError, match=message):
        model.fit(["NaCl", "MgO"], [1.0, 2.0], structures=[None, None])


def test_beta_zero_without_any_structure_is_refused(tiny):
    with pytest.raises(ValueError, match="beta=0 .*no row of X has a structure"):
        TSRegressor(**{**tiny, "teacher": NoTeacherWork(), "beta": 0, "alpha": 1.0}).fit(["NaCl", "MgO"], [1.0, 2.0])


def test_beta_zero_makes_step2_a_second_step1(ci_data, tiny):
    model = TSRegressor(teacher="chgnet", alpha=1.0, beta=0, **{**tiny, "epochs": 3, "epochs_step1": 2})
    model.fit(ci_data["X"][:60], ci_data["y"][:60], structures=ci_data["structures"][:60])
    step2 = [h for h in model.history_ if h["step"] == "step 2"]
    assert step2 and np.isfinite([h["val_emb"] for h in step2]).all()
    assert np.isfinite(model.predict(ci_data["X_test"])).all()


# ----------------------------------------------------------------------------- 2: concurrent cache writers
def test_two_writers_of_one_fitted_teacher_do_not_collide(tmp_path, monkeypatch):
    """Both writers have written their file before either renames it: the race of two fits that
    train the same ALIGNN teacher at once, made deterministic."""
    import threading

    import joblib

    from matbench_ts import cache as cache_module
    from matbench_ts.cache import TeacherCache

    both_written = threading.Barrier(2, timeout=30)
    real_dump = joblib.dump

    def dump_then_wait(obj, target, *args, **kwargs):
        real_dump(obj, target, *args, **kwargs)
        both_written.wait()

    monkeypatch.setattr(cache_module.joblib, "dump", dump_then_wait)
    results, errors = [], []

    def fit_teacher(name):
        try:
            with TeacherCache(tmp_path) as cache:
                results.append(cache.fitted_teacher("same-key", lambda: {"fitted_by": name}))
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            errors.append(exc)

    threads = [threading.Thread(target=fit_teacher, args=(name,)) for name in "ab"]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert sorted(r["fitted_by"] for r in results) == ["a", "b"]
    stored = joblib.load(tmp_path / "teachers" / "same-key.joblib")
    assert stored["fitted_by"] in ("a", "b")  # one whole entry, no temporary file left
    assert [p.name for p in (tmp_path / "teachers").iterdir()] == ["same-key.joblib"]


# ----------------------------------------------------------------------------- 8: damaged cache files
def _filled_cache(directory, structures):
    from matbench_ts.cache import TeacherCache

    with TeacherCache(directory) as cache:
        cache.embeddings("t", structures, lambda chunk: np.ones((len(chunk), 4), dtype=np.float32))


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_damaged_embedding_store_is_rebuilt_with_a_warning(ci_data, tmp_path, damage):
    from matbench_ts.cache import TeacherCache

    structures = ci_data["structures"][:30]
    _filled_cache(tmp_path, structures)
    db = tmp_path / "embeddings" / "cache.db"
    if damage == "garbage":
        db.write_bytes(b"not a database" * 100)
    else:
        db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.warns(RuntimeWarning, match=rf"{re.escape(str(db))}.* damaged"), TeacherCache(tmp_path) as cache:
        emb = cache.embeddings("t", structures, lambda chunk: np.full((len(chunk), 4), 2.0, dtype=np.float32))
        assert cache.computed == 30
    np.testing.assert_array_equal(emb, 2.0)
    with TeacherCache(tmp_path) as cache:  # the rebuilt store serves the next call
        cache.embeddings("t", structures, lambda chunk: pytest.fail("recomputed"))


def test_a_flipped_bit_in_a_stored_embedding_is_detected(ci_data, tmp_path):
    import sqlite3

    from matbench_ts.cache import TeacherCache

    structures = ci_data["structures"][:3]
    _filled_cache(tmp_path, structures)
    db = sqlite3.connect(tmp_path / "embeddings" / "cache.db")
    rowid, blob = db.execute("SELECT rowid, value FROM Cache LIMIT 1").fetchone()
    at = bytes(blob).index(np.ones(4, dtype=np.float32).tobytes())  # the stored floats inside the pickle
    flipped = bytearray(blob)
    flipped[at + 1] ^= 0x01
    db.execute("UPDATE Cache SET value = ? WHERE rowid = ?", (bytes(flipped), rowid))
    db.commit()
    db.close()
    with pytest.warns(RuntimeWarning, match="1 damaged embedding"), TeacherCache(tmp_path) as cache:
        emb = cache.embeddings("t", structures, lambda chunk: np.ones((len(chunk), 4), dtype=np.float32))
        assert cache.computed == 1
    np.testing.assert_array_equal(emb, 1.0)


def test_damaged_fitted_teacher_file_is_refitted_with_a_warning(tmp_path):
    from matbench_ts.cache import TeacherCache

    path = tmp_path / "teachers" / "k.joblib"
    path.parent.mkdir()
    path.write_bytes(b"\x80\x04garbled pickle")
    calls = []
    with pytest.warns(RuntimeWarning, match=f"fitted teacher {re.escape(str(path))} is damaged"), \
            TeacherCache(tmp_path) as cache:
        assert cache.fitted_teacher("k", lambda: calls.append(1) or {"ok": True}) == {"ok": True}
    with TeacherCache(tmp_path) as cache:  # stored again, whole
        assert cache.fitted_teacher("k", lambda: pytest.fail("refitted")) == {"ok": True}
    assert calls == [1]


# ----------------------------------------------------------------------------- 11: what a custom teacher returns
class BadOutputTeacher:
    """A user teacher whose ``transform`` returns a bad output of kind ``kind``."""

    def __init__(self, kind: str = "ok"):
        self.kind = kind

    def get_params(self, deep=True):
        return {"kind": self.kind}

    def set_params(self, **params):
        self.kind = params.get("kind", self.kind)
        return self

    def fit(self, structures, y=None):
        return self

    def transform(self, structures):
        n = len(structures)
        emb = np.ones((n, 3))
        emb[1] = np.nan
        return {"missing_row": np.ones((n - 1, 3)), "1d": np.ones(n), "nan": emb, "text": ["x"] * n}[self.kind]


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing_row", r"transform returned shape \(19, 3\) for 20 structures"),
        ("1d", r"transform returned shape \(20,\) for 20 structures"),
        ("nan", r"non-finite embedding of structure"),
        ("text", r"transform did not return an array of numbers"),
    ],
)
def test_custom_teacher_output_is_checked(ci_data, tiny, tmp_path, kind, message):
    model = TSRegressor(teacher=BadOutputTeacher(kind), **{**tiny, "cache_dir": str(tmp_path), "epochs": 1})
    with pytest.raises(ValueError, match=rf"teacher BadOutputTeacher-\w+: {message}"):
        model.fit(ci_data["X"][:20], ci_data["y"][:20], structures=ci_data["structures"][:20])


# ----------------------------------------------------------------------------- 6: oxidation states
def _decorated(structure):
    """``structure`` with every site an oxidation-state species (``Lu0+``), as some CIFs give them."""
    structure = structure.copy()
    structure.add_oxidation_state_by_element({el.symbol: 0 for el in structure.composition.elements})
    return structure


def test_oxidation_state_decorated_structures_and_compositions_are_accepted(ci_data, tiny):
    from pymatgen.core import Species

    decorated = [_decorated(s) for s in ci_data["structures"][:40]]
    assert isinstance(decorated[0].species[0], Species)
    cifs = [s.to(fmt="cif") for s in decorated]  # CIFs with _atom_type_oxidation_number
    model = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 2, "epochs_step1": 1})
    model.fit(ci_data["X"][:40], ci_data["y"][:40], structures=ci_data["structures"][:40])
    model.fit([s.composition for s in decorated], ci_data["y"][:40], structures=decorated)
    assert model.n_teacher_computed_ == 0  # the same structures as the undecorated ones, to the teacher
    model.fit(ci_data["X"][:40], ci_data["y"][:40], structures=cifs)
    np.testing.assert_array_equal(model.predict(decorated[:5]), model.predict(ci_data["X"][:5]))


# ----------------------------------------------------------------------------- 7: elements a teacher cannot embed
def _with_element(structure, symbol):
    """``structure`` with its first element replaced by ``symbol`` (e.g. Am, beyond CHGNet's table)."""
    structure = structure.copy()
    structure.replace_species({structure.composition.elements[0]: symbol})
    return structure


@pytest.mark.parametrize("teacher, symbol, z, max_z", [("chgnet", "Am", 95, 94), ("alignn", "Md", 101, 100)])
def test_element_beyond_the_teachers_table_is_refused_before_work(ci_data, tiny, tmp_path, teacher, symbol, z, max_z):
    from conftest import TINY_ALIGNN

    structures = list(ci_data["structures"][:12])
    structures[3] = _with_element(structures[3], symbol)
    X = [s.composition.formula for s in structures]
    params = TINY_ALIGNN if teacher == "alignn" else None
    model = TSRegressor(teacher=teacher, teacher_params=params, **{**tiny, "cache_dir": str(tmp_path), "epochs": 1})
    name = {"chgnet": "CHGNetTeacher", "alignn": "ALIGNNTeacher"}[teacher]
    with pytest.raises(ValueError, match=rf"structures: row 3: element {symbol} \(Z={z}\) in \S+ cannot be "
                                         rf"embedded by {name} \(elements up to Z={max_z}\)"):
        model.fit(X, ci_data["y"][:12], structures=structures)
    with pytest.raises(ValueError, match=rf"pretrain_structures: row 3: element {symbol}"):
        model.fit(ci_data["X"][:12], ci_data["y"][:12], pretrain_structures=structures)
    assert not (tmp_path / "embeddings").exists()  # refused before the teacher cache was opened


def test_embed_command_refuses_an_element_beyond_the_teachers_table(ci_data, tmp_path):
    import pandas as pd

    from matbench_ts.bench.embed import embed_tasks

    structures = [ci_data["structures"][0], _with_element(ci_data["structures"][1], "Am")]
    path = tmp_path / "actinides.jsonl"
    pd.DataFrame({"id": ["a", "b"], "composition": [s.composition.formula for s in structures], "target": [0.0, 1.0],
                  "fold": [0, 1], "structure": [s.to(fmt="cif") for s in structures]}).to_json(path, orient="records",
                                                                                             lines=True)
    with pytest.raises(ValueError, match=r"task actinides: row 1: element Am \(Z=95\)"):
        embed_tasks([str(path)], "chgnet", cache_dir=str(tmp_path / "cache"))


# ----------------------------------------------------------------------------- 4: step 1's validation rows
def _structures_only_on(ci_data, rows, n=100):
    keep = set(rows)
    return [s if i in keep else None for i, s in enumerate(ci_data["structures"][:n])]


def test_step1_validation_gets_rows_with_structures(ci_data, tiny, recwarn):
    from sklearn.model_selection import train_test_split

    # the plain seeded split puts no row with a structure in the validation rows
    train, val = train_test_split(np.arange(100), test_size=0.1, random_state=tiny["random_state"])
    structures = _structures_only_on(ci_data, train[:20])
    model = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 1, "epochs_step1": 5})
    model.fit(ci_data["X"][:100], ci_data["y"][:100], structures=structures)
    step1 = [h["val_emb"] for h in model.history_ if h["step"] == "step 1"]
    assert len(step1) == 5 and np.isfinite(step1).all()
    assert not [w for w in recwarn if "validation row" in str(w.message)]


def test_step1_without_any_validation_structure_warns_and_monitors_training_rows(ci_data, tiny):
    from sklearn.model_selection import train_test_split

    train, _ = train_test_split(np.arange(100), test_size=0.1, random_state=tiny["random_state"])
    structures = _structures_only_on(ci_data, train[:1])  # one structure: it cannot be on both sides
    model = TSRegressor(teacher="chgnet", **{**tiny, "epochs": 1, "epochs_step1": 5})
    with pytest.warns(UserWarning, match="no validation row has a structure"):
        model.fit(ci_data["X"][:100], ci_data["y"][:100], structures=structures)
    step1 = [h["val_emb"] for h in model.history_ if h["step"] == "step 1"]
    assert step1 and np.isfinite(step1).all()


# ----------------------------------------------------------------------------- 12: what the demo prints
def test_demo_prints_its_table_and_nothing_else(tmp_path, cache_dir):
    """As a user runs it (no pytest warning filters): no CIF notices, no torch warning, no CHGNet banner."""
    import os
    import subprocess
    import sys

    from conftest import DATA_DIR

    env = {**os.environ, "MATBENCH_TS_CACHE": cache_dir}
    result = subprocess.run(
        [sys.executable, "-m", "matbench_ts.demo", "--data", str(DATA_DIR), "--folds", "0", "--fraction", "0.004",
         "--out", str(tmp_path)], capture_output=True, text=True, env=env, timeout=600, check=True)
    assert result.stderr == ""
    assert "initialized" not in result.stdout and "Warning" not in result.stdout
    assert "mean MAE over folds:" in result.stdout and (tmp_path / "demo_parity.png").exists()
    assert "mae_pretrained " in result.stdout  # the shipped student, formulas only
    assert "mae_pretrained_ts" in result.stdout  # and guided by the teacher: the default with a teacher


def test_embeddings_computed_elsewhere_are_served_from_the_cache(ci_data, tmp_path):
    """``TeacherCache.add`` stores rows under their structure keys: a later call computes nothing."""
    from matbench_ts.cache import TeacherCache, structure_key

    structures = ci_data["structures"][:5]
    rows = np.arange(5 * 3, dtype=np.float32).reshape(5, 3)
    with TeacherCache(tmp_path) as cache:
        cache.add([f"t/{structure_key(s)}" for s in structures], rows)
        got = cache.embeddings("t", structures, lambda todo: pytest.fail(f"computed {len(todo)} structures"))
    np.testing.assert_array_equal(got, rows)
    with TeacherCache(tmp_path) as cache, pytest.raises(ValueError, match="2 keys for 5"):
        cache.add(["a", "b"], rows)


def test_chgnet_neighbour_check_in_workers_matches_one_process(ci_data):
    from pymatgen.core import Lattice, Structure

    from matbench_ts.teachers.chgnet import CHGNetTeacher

    isolated = Structure(Lattice.cubic(15.0), ["Na"], [[0, 0, 0]])  # no neighbour within 6 A
    structures = list(ci_data["structures"][:7]) + [isolated]
    one = CHGNetTeacher(batch_size=1).embeddable(structures)
    workers = CHGNetTeacher(batch_size=1, n_jobs=2).embeddable(structures)
    np.testing.assert_array_equal(one, workers)
    assert one.tolist() == [True] * 7 + [False]


# ----------------------------------------------------------------------------- CIF strings
def test_cif_strings_parse_to_pymatgens_structures(ci_data):
    """CIF rows (plain and oxidation-decorated) give the structures pymatgen's own reader gives."""
    from pymatgen.core import Structure

    from matbench_ts.inputs import parse_structures

    structures = ci_data["structures"][:30] + [_decorated(s) for s in ci_data["structures"][:5]]
    cifs = [s.to(fmt="cif") for s in structures]
    parsed = parse_structures(cifs, n_rows=len(cifs))
    assert parsed == [Structure.from_str(cif, fmt="cif") for cif in cifs]
    assert all(p.composition == s.composition for p, s in zip(parsed, structures))


def test_an_interrupted_fit_resumes_to_the_same_model(ci_data, tiny, tmp_path, monkeypatch):
    """fit(resume_dir=...) stopped in step 2 goes on from its saved epoch and ends as a straight fit."""
    import torch
    from conftest import stop_fits_in_step2

    import matbench_ts.training as training

    batches, real_losses = {"n": 0}, training.batch_losses

    def counted_losses(*args, **kwargs):
        batches["n"] += torch.is_grad_enabled()  # training batches, not evaluations
        return real_losses(*args, **kwargs)

    def fit(**kwargs):
        batches["n"] = 0
        model = TSRegressor(teacher="chgnet", **tiny).fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"],
                                                          **kwargs)
        return model, batches["n"]

    monkeypatch.setattr(training, "batch_losses", counted_losses)
    straight, straight_batches = fit()
    run_through = stop_fits_in_step2(monkeypatch, after_epochs=5)
    folder = tmp_path / "state"
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        fit(resume_dir=folder)
    stopped_after = time.perf_counter() - start
    assert sorted(p.name for p in folder.iterdir()) == ["step1.pt", "step2.pt"]
    done_before = batches["n"]
    run_through()
    resumed, resumed_batches = fit(resume_dir=folder)
    assert resumed_batches == straight_batches - done_before  # no epoch trained twice
    assert straight.epochs_resumed_ == {} and resumed.epochs_resumed_["step 2"] == 5
    # the training time of what was loaded: all of step 1 and 5 epochs of step 2, spent in the stopped call
    assert straight.seconds_resumed_ == {} and set(resumed.seconds_resumed_) == {"step 1", "step 2"}
    assert 0 < sum(resumed.seconds_resumed_.values()) < stopped_after
    np.testing.assert_equal(resumed.history_, straight.history_)  # NaN where a step has no target loss
    np.testing.assert_array_equal(resumed.predict(ci_data["X_test"]), straight.predict(ci_data["X_test"]))
    again, again_batches = fit(resume_dir=folder)  # both steps done: nothing to train
    assert again_batches == 0 and again.epochs_resumed_["step 2"] == sum(h["step"] == "step 2" for h in straight.history_)
    assert again.seconds_resumed_["step 2"] > resumed.seconds_resumed_["step 2"]  # both calls' step-2 training
    np.testing.assert_array_equal(again.predict(ci_data["X_test"]), straight.predict(ci_data["X_test"]))
    with pytest.raises(ValueError, match="state of another fit"):  # other settings: refused before any training
        TSRegressor(teacher="chgnet", **{**tiny, "epochs": 41}).fit(ci_data["X"], ci_data["y"], resume_dir=folder,
                                                                     structures=ci_data["structures"])
    with pytest.raises(ValueError, match="integer random_state"):
        TSRegressor(teacher=None, **{**tiny, "random_state": None}).fit(ci_data["X"], ci_data["y"],
                                                                         resume_dir=tmp_path / "other")
