"""Pretrained students: ``pretrain`` (resumable), checkpoints, ``TSRegressor(pretrained=...)``,
the featurizer, and the harness strategies that record what the checkpoint saw."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition
from sklearn.base import clone
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.pipeline import make_pipeline

from matbench_ts import TSRegressor
from matbench_ts.pretrain import pretrain, read_library
from matbench_ts.pretrained import PretrainedFeaturizer, available, load
from matbench_ts.recipe import RECIPES, recipe_settings, resolve_recipe
from matbench_ts.students import make_student
from matbench_ts.training import Rows, StepConfig, StudentWithProjection, train_step

from conftest import CI_SET, TINY_CRABNET, TINY_ROOST

TINY_PARAMS = {**TINY_CRABNET, "out_hidden": list(TINY_CRABNET["out_hidden"])}
PRETRAIN = dict(student="crabnet", student_params=TINY_CRABNET, recipe="plain", learning_rate=2e-3, batch_size=64,
                patience=5, random_state=0, verbose=0)
#: A short fine-tune from a tiny checkpoint on the CI set.
FINE_TUNE = dict(recipe="plain", epochs=40, learning_rate=2e-3, batch_size=64, patience=10, random_state=0, verbose=0)


@pytest.fixture(scope="module")
def library_without_test_fold(tmp_path_factory) -> str:
    """The CI set's training folds (1-4) as a structure library: fold 0 stays unseen."""
    df = pd.read_json(CI_SET, lines=True)
    path = tmp_path_factory.mktemp("library") / "library.jsonl.gz"
    df[df.fold != 0].to_json(path, orient="records", lines=True)
    return str(path)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, library_without_test_fold, cache_dir) -> str:
    out = tmp_path_factory.mktemp("pretrained") / "tiny-chgnet.pt"
    return str(pretrain(out, [library_without_test_fold], epochs=15, cache_dir=cache_dir, **PRETRAIN))


def test_checkpoint_records_what_it_was_built_from(checkpoint, ci_data):
    ckpt = load(checkpoint)
    data = ckpt.data
    assert data["student"] == "crabnet" and data["student_params"]["d_model"] == 32
    assert data["teacher_id"] == "chgnet-0.3.0-atom"
    assert data["library"]["size"] == 240 and len(data["library"]["hash"]) == 16
    assert 1 <= data["epochs"] <= 15 and np.isfinite(data["val_loss"])
    assert {"torch", "crabnet", "chgnet"} <= set(data["versions"])
    assert ckpt.n_seen(ci_data["X"]) == 240  # the library is the training folds
    assert ckpt.n_seen(ci_data["X_test"]) < 60  # fold 0 is not (a few polymorphs share formulas)
    # loadable without unpickling code (safe to ship)
    assert torch.load(checkpoint, weights_only=True)["format"] == data["format"]


def test_step1_lowers_the_embedding_loss(checkpoint):
    history = [h["val_emb"] for h in load(checkpoint).data["history"]]
    assert min(history) < 0.8 * history[0]


def test_library_drops_repeated_ids_and_excluded_formulas(library_without_test_fold):
    full = read_library([library_without_test_fold, library_without_test_fold])
    assert len(full.ids) == 240 and full.n_duplicates == 240
    some = set(full.formulas[:10])
    rest = read_library([library_without_test_fold], exclude_formulas=some)
    assert not some & set(rest.formulas) and rest.n_excluded == sum(f in some for f in full.formulas)


def test_a_library_read_once_gives_the_same_checkpoint(tmp_path, library_without_test_fold, cache_dir):
    """Leaving formulas out of a library already read, and parsing its structures elsewhere, records the
    same library as reading the files with those formulas excluded (benchmarks/pretrain_gpu.py relies on it)."""
    from matbench_ts.inputs import parse_structure

    some = set(read_library([library_without_test_fold]).formulas[:10])
    from_files = read_library([library_without_test_fold], exclude_formulas=some)
    derived = read_library([library_without_test_fold]).without(some)
    assert derived.ids == from_files.ids and derived.n_excluded == from_files.n_excluded
    assert derived.content_hash() == from_files.content_hash()
    parsed = derived.with_structures([parse_structure(s, i) for i, s in enumerate(derived.structures)])
    assert parsed.content_hash() == from_files.content_hash()
    with pytest.raises(ValueError, match="before replacing"):
        parsed.without(some)
    a = load(pretrain(tmp_path / "a.pt", [library_without_test_fold], exclude_formulas=some, epochs=2,
                      cache_dir=cache_dir, **PRETRAIN)).data
    b = load(pretrain(tmp_path / "b.pt", parsed, epochs=2, cache_dir=cache_dir, **PRETRAIN)).data
    assert a["library"] == b["library"] and a["val_loss"] == b["val_loss"]
    with pytest.raises(ValueError, match="exclude_formulas"):
        pretrain(tmp_path / "c.pt", parsed, exclude_formulas=some, epochs=2, cache_dir=cache_dir, **PRETRAIN)


def test_pretrain_resumes_to_the_same_checkpoint(tmp_path, library_without_test_fold, cache_dir, monkeypatch):
    """An interrupted pretraining goes on from its last epoch and ends where an uninterrupted one does."""
    import matbench_ts.resume as resume

    straight = pretrain(tmp_path / "a.pt", [library_without_test_fold], epochs=6, cache_dir=cache_dir, **PRETRAIN)
    monkeypatch.setattr(resume, "SAVE_EVERY_S", 0.0)  # save every epoch
    real_write, writes = resume.atomic_write, {"n": 0}

    def crash_after_three_epochs(path, write):
        real_write(path, write)
        writes["n"] += 1
        if writes["n"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(resume, "atomic_write", crash_after_three_epochs)
    with pytest.raises(KeyboardInterrupt):
        pretrain(tmp_path / "b.pt", [library_without_test_fold], epochs=6, cache_dir=cache_dir, **PRETRAIN)
    monkeypatch.setattr(resume, "atomic_write", real_write)
    assert not (tmp_path / "b.pt").exists() and (tmp_path / "b.pt.work" / "pretrain.pt").exists()
    resumed = pretrain(tmp_path / "b.pt", [library_without_test_fold], epochs=6, cache_dir=cache_dir, **PRETRAIN)
    a, b = load(straight).data, load(resumed).data
    assert a["epochs"] == b["epochs"] == 6
    for key, value in a["student_state"].items():
        torch.testing.assert_close(b["student_state"][key], value)
    written = (tmp_path / "b.pt").read_bytes()
    assert pretrain(tmp_path / "b.pt", [library_without_test_fold], epochs=6, cache_dir=cache_dir, **PRETRAIN) == resumed
    assert (tmp_path / "b.pt").read_bytes() == written  # a finished checkpoint is not rewritten (same id)
    with pytest.raises(ValueError, match="other settings"):
        pretrain(tmp_path / "b.pt", [library_without_test_fold], epochs=7, cache_dir=cache_dir, **PRETRAIN)


def test_crabnet_recipe_state_survives_a_restart(ci_data):
    """Lamb + Lookahead + crabnet's SWA + the cyclic schedule: resumed == uninterrupted."""
    recipe = resolve_recipe({"base": "crabnet", "cycle_epochs": 2, "jitter": 0.0}, "crabnet")
    student = make_student("crabnet", TINY_CRABNET)
    rows = Rows(student.encode([Composition(x) for x in ci_data["X"]]),
                ((ci_data["y"] - ci_data["y"].mean()) / ci_data["y"].std()).astype(np.float32))
    train, val = rows.subset(np.arange(200)), rows.subset(np.arange(200, 240))
    config = StepConfig("s", 6, 0.0, 1.0, recipe=recipe, learning_rate=2e-3, batch_size=64, patience=5, verbose=0,
                        objective="robust")

    def run(resume=None, stop_at=None):
        torch.manual_seed(0)
        model = StudentWithProjection(make_student("crabnet", TINY_CRABNET), None)
        saved = []

        def keep(state):
            saved.append(state)
            if stop_at is not None and state["epoch"] == stop_at:
                raise KeyboardInterrupt

        try:
            train_step(model, train, val, config, torch.device("cpu"), np.random.default_rng(0), keep, resume)
        except KeyboardInterrupt:
            pass
        return model, saved

    straight, _ = run()
    _, saved = run(stop_at=3)
    torch.manual_seed(123)  # the resumed run must not depend on the global random state
    resumed, _ = run(resume=pickle.loads(pickle.dumps(saved[-1])))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(b, a, msg=name)


def test_regressor_from_checkpoint(checkpoint, ci_data, cache_dir):
    kwargs = dict(FINE_TUNE, cache_dir=cache_dir)
    formulas_only = TSRegressor(teacher=None, pretrained=checkpoint, **kwargs)
    formulas_only.fit(ci_data["X"], ci_data["y"])
    mae = np.abs(formulas_only.predict(ci_data["X_test"]) - ci_data["y_test"]).mean()
    assert mae < 0.8 * np.abs(ci_data["y_test"] - ci_data["y"].mean()).mean()
    assert formulas_only.pretrained_id_ == load(checkpoint).id
    assert formulas_only.teacher_ is None and "step 1" not in {h["step"] for h in formulas_only.history_}
    again = clone(formulas_only).fit(ci_data["X"], ci_data["y"])
    np.testing.assert_allclose(again.predict(ci_data["X_test"]), formulas_only.predict(ci_data["X_test"]))
    guided = TSRegressor(teacher="chgnet", pretrained=checkpoint, **kwargs)
    guided.fit(ci_data["X"], ci_data["y"], structures=ci_data["structures"])
    mean, std = load(checkpoint).teacher_scaling()
    np.testing.assert_array_equal(guided.teacher_mean_, mean)  # the checkpoint's standardisation
    assert guided.alpha_ > 0 and "step 1" not in {h["step"] for h in guided.history_}


def test_roost_checkpoint_pretrains_fine_tunes_and_featurizes(tmp_path, library_without_test_fold, ci_data,
                                                             cache_dir):
    """Roost goes through the same path as CrabNet: pretrain, start a fit from it, use it as features."""
    settings = {**PRETRAIN, "student": "roost", "student_params": TINY_ROOST}
    ckpt = load(pretrain(tmp_path / "tiny-roost.pt", [library_without_test_fold], epochs=15, cache_dir=cache_dir,
                         **settings))
    assert ckpt.data["student"] == "roost" and ckpt.data["student_params"]["elem_fea_len"] == 32
    history = [h["val_emb"] for h in ckpt.data["history"]]
    assert min(history) < 0.9 * history[0]  # step 1 learned the alignment (Roost learns it slower than CrabNet)
    kwargs = dict(FINE_TUNE, cache_dir=cache_dir)
    model = TSRegressor(teacher=None, student="roost", pretrained=str(ckpt.path), **kwargs)
    model.fit(ci_data["X"], ci_data["y"])
    assert model.pretrained_id_ == ckpt.id and "step 1" not in {h["step"] for h in model.history_}
    mae = np.abs(model.predict(ci_data["X_test"]) - ci_data["y_test"]).mean()
    assert mae < 0.8 * np.abs(ci_data["y_test"] - ci_data["y"].mean()).mean()
    with pytest.raises(ValueError, match="'roost' student"):
        TSRegressor(teacher=None, student="crabnet", pretrained=str(ckpt.path)).fit(ci_data["X"], ci_data["y"])
    features = PretrainedFeaturizer(str(ckpt.path)).fit(ci_data["X"]).transform(ci_data["X_test"])
    assert features.shape == (60, ckpt.build().projection.in_features) and np.isfinite(features).all()


def test_default_students_taught_by_chgnet_start_from_the_shipped_checkpoints(ci_data, cache_dir):
    """pretrained="auto": the shipped student for a default CrabNet or Roost with CHGNet, nothing otherwise."""
    from matbench_ts import TSClassifier
    from matbench_ts.estimator import AUTO_PRETRAINED

    assert set(AUTO_PRETRAINED.values()) <= set(available())
    kwargs = dict(epochs=3, epochs_step1=3, cache_dir=cache_dir, random_state=0, verbose=0)
    X, y, structures = ci_data["X"][:60], ci_data["y"][:60], ci_data["structures"][:60]
    default = TSRegressor(**kwargs).fit(X, y, structures=structures)
    assert default.pretrained_id_ == load(AUTO_PRETRAINED["crabnet"]).id
    assert "step 1" not in {h["step"] for h in default.history_}  # the checkpoint holds step 1
    roost = TSRegressor(student="roost", **kwargs).fit(X, y, structures=structures)
    assert roost.pretrained_id_ == load("roost-chgnet-mp").id and "step 1" not in {h["step"] for h in roost.history_}
    assert TSRegressor(student="roost", teacher=None, **kwargs).fit(X, y).pretrained_id_ is None
    assert TSRegressor(pretrained=None, **kwargs).fit(X, y, structures=structures).pretrained_id_ is None
    sized = TSRegressor(student_params=TINY_CRABNET, **kwargs).fit(X, y, structures=structures)
    assert sized.pretrained_id_ is None and "step 1" in {h["step"] for h in sized.history_}
    assert TSRegressor(teacher=None, student_params=TINY_CRABNET, **kwargs).fit(X, y).pretrained_id_ is None
    assert TSRegressor(teacher=None, **kwargs).fit(X, y).pretrained_id_ is None  # formulas only: the plain student
    own_library = TSRegressor(**kwargs).fit(X, y, structures=structures, pretrain_structures=structures[:30])
    assert own_library.pretrained_id_ is None  # a step-1 library of one's own replaces the checkpoint
    assert TSClassifier(**kwargs).get_params()["pretrained"] is None  # decided for regression only


def test_checkpoint_clashes_are_refused_before_work(checkpoint, ci_data):
    X, y = ci_data["X"], ci_data["y"]
    with pytest.raises(ValueError, match="clash"):
        TSRegressor(teacher=None, pretrained=checkpoint, student_params={"d_model": 64}).fit(X, y)
    with pytest.raises(ValueError, match="'crabnet' student"):
        TSRegressor(teacher=None, student="roost", pretrained=checkpoint).fit(X, y)
    with pytest.raises(ValueError, match="no pretrained checkpoint 'no-such-student'"):
        TSRegressor(teacher=None, pretrained="no-such-student").fit(X, y)
    with pytest.raises(ValueError, match="pretrain_structures"):
        TSRegressor(teacher="chgnet", pretrained=checkpoint).fit(X, y, structures=ci_data["structures"],
                                                                pretrain_structures=ci_data["structures"])
    TSRegressor(teacher=None, pretrained=checkpoint, student_params=TINY_PARAMS)._check_params()  # repeating is fine


def test_featurizer_is_the_checkpoint_embedding(checkpoint, ci_data):
    featurizer = PretrainedFeaturizer(checkpoint)
    features = featurizer.fit(ci_data["X"]).transform(ci_data["X_test"])
    assert features.shape == (60, 32) and np.isfinite(features).all()
    frame = featurizer.featurize_dataframe(pd.DataFrame({"formula": ci_data["X_test"][:5]}), "formula", pbar=False)
    np.testing.assert_allclose(frame[featurizer.feature_labels()].to_numpy(), features[:5], rtol=1e-5, atol=1e-6)
    restored = pickle.loads(pickle.dumps(clone(featurizer)))
    np.testing.assert_allclose(restored.transform(ci_data["X_test"]), features)
    pipe = make_pipeline(PretrainedFeaturizer(checkpoint), RidgeCV()).fit(ci_data["X"], ci_data["y"])
    assert np.abs(pipe.predict(ci_data["X_test"]) - ci_data["y_test"]).mean() < np.abs(
        ci_data["y_test"] - ci_data["y"].mean()).mean()


def test_shipped_checkpoints_load_offline():
    for name in available():
        ckpt = load(name)
        model = ckpt.build()
        assert model.projection.out_features == ckpt.data["teacher_mean"].shape[0]
        assert ckpt.data["library"]["size"] > 10_000


def test_harness_records_what_the_checkpoint_saw(tmp_path, checkpoint, cache_dir):
    from matbench_ts.bench import BenchConfig, run_grid

    config = BenchConfig(out=str(tmp_path / "runs"), tasks=[str(CI_SET)], strategies=["pretrained", "pretrained-ts"],
                         folds=[0, 1], profile="tiny", pretrained=checkpoint, cache_dir=cache_dir, verbose=0,
                         n_embed=0)
    summary = run_grid(config)
    assert not summary.failed and len(summary.executed) == 4
    results = {(r["strategy"], r["fold"]): r for r in
               (json.loads(p.read_text()) for p in (tmp_path / "runs" / "runs").rglob("*.json"))}
    ckpt = load(checkpoint)
    for (strategy, fold), result in results.items():
        assert result["pretrained"]["id"] == ckpt.id
        assert result["params"]["student_params"] is None  # sizes from the checkpoint
    # fold 0 was left out of the library (only formulas it shares with other folds were seen); fold 1 was in it
    fold0 = results[("pretrained", 0)]["pretrained"]
    assert fold0["n_test_formulas_seen"] < 60 and fold0["transductive"] is (fold0["n_test_formulas_seen"] > 0)
    assert results[("pretrained", 1)]["pretrained"]["n_test_formulas_seen"] == 60
    assert results[("pretrained", 1)]["pretrained"]["transductive"] is True
    # the checkpoint's teacher (CHGNet, trained on MP energies) makes a formulas-only run on MP e_form leaky too
    assert results[("pretrained", 0)]["teacher_info"]["leaky"] is True
    from matbench_ts.bench.report import load_results

    labels = load_results(tmp_path / "runs").set_index(["strategy", "fold"]).index
    assert ("pretrained transductive", 1) in labels and ("pretrained-ts transductive", 1) in labels
    # a submission's info.json names the checkpoint, cites its teacher and says what its library saw
    import dataclasses

    from matbench_ts.bench.submit import BIBTEX, build_info

    formulas_only = dataclasses.replace(config, strategies=["pretrained"], teachers=[])
    runs = [results[("pretrained", 0)], results[("pretrained", 1)]]
    info = build_info(formulas_only, "Test Author", None, "", runs)
    assert ckpt.id in info["algorithm_long"] and BIBTEX["chgnet"] in info["bibtex_refs"]
    assert "transductive" in info["algorithm_long"] and "Teacher provenance" in info["notes"]
    unseen = [{**r, "pretrained": {**r["pretrained"], "n_test_formulas_seen": 0}} for r in runs]
    assert "leak-safe" in build_info(formulas_only, "Test Author", None, "", unseen)["algorithm_long"]
    assert BIBTEX["chgnet"] not in build_info(formulas_only, "Test Author", None, "")["bibtex_refs"]
    with pytest.raises(ValueError, match="--pretrained"):
        BenchConfig(out=str(tmp_path / "x"), tasks=[str(CI_SET)], strategies=["pretrained"], profile="tiny")


def test_harness_binds_an_output_folder_to_the_checkpoint_content(tmp_path, checkpoint):
    """A moved or renamed checkpoint may go on filling a folder; another file at the same path may not."""
    import shutil

    from matbench_ts.bench import BenchConfig, ConfigMismatchError
    from matbench_ts.bench.config import prepare_out

    def config(pretrained):
        return BenchConfig(out=str(tmp_path / "runs"), tasks=[str(CI_SET)], strategies=["pretrained"], profile="tiny",
                           pretrained=pretrained)

    prepare_out(config(checkpoint))
    run = tmp_path / "runs" / "runs" / "ci" / "crabnet__none" / "pretrained" / "frac1_fold0_seed0.json"
    run.parent.mkdir(parents=True)
    run.write_text(json.dumps({"status": "done", "pretrained": {"id": load(checkpoint).id}}))
    moved = tmp_path / "elsewhere" / "renamed.pt"
    moved.parent.mkdir()
    shutil.copy(checkpoint, moved)
    prepare_out(config(str(moved)))  # same content: accepted
    rebuilt = torch.load(checkpoint, weights_only=True)
    rebuilt["created"] = "another build"
    torch.save(rebuilt, moved)
    with pytest.raises(ConfigMismatchError, match="pretrained: saved .*tiny-chgnet@"):
        prepare_out(config(str(moved)))
    with pytest.raises(ConfigMismatchError, match="pretrained"):  # the folder's runs need their checkpoint
        prepare_out(BenchConfig(out=str(tmp_path / "runs"), tasks=[str(CI_SET)], strategies=["baseline"],
                                profile="tiny"))


def test_pretrain_command(tmp_path, library_without_test_fold, cache_dir, capsys):
    from matbench_ts.cli import main

    leave_out = read_library([library_without_test_fold]).formulas[:2]
    formulas = tmp_path / "leave_out.txt"
    formulas.write_text("# formulas to leave out\n" + "\n".join(leave_out) + "\n")
    out = tmp_path / "cli.pt"
    code = main(["pretrain", "--out", str(out), "--library", library_without_test_fold, "--exclude-formulas",
                 str(formulas), "--student-params", json.dumps(TINY_PARAMS), "--epochs", "2", "--recipe", "plain",
                 "--batch-size", "64", "--cache-dir", cache_dir, "-q"])
    assert code == 0
    ckpt = load(out)
    assert "cli@" in capsys.readouterr().out
    assert not set(leave_out) & ckpt.formulas and ckpt.data["library"]["n_excluded"] >= 2
    assert ckpt.data["epochs"] == 2
    small = tmp_path / "small.pt"
    assert main(["pretrain", "--out", str(small), "--library", library_without_test_fold, "--max-structures", "50",
                 "--student-params", json.dumps(TINY_PARAMS), "--epochs", "1", "--cache-dir", cache_dir, "-q"]) == 0
    assert load(small).data["library"]["size"] == 50 and len(load(small).formulas) <= 50
    assert ckpt.data["library"]["excluded_from"] == [str(formulas)]
    assert main(["pretrain", "--out", str(tmp_path / "bad.pt"), "--library", library_without_test_fold,
                 "--student", "crabnet", "--exclude-formulas", "no_such_task_anywhere", "-q"]) == 2


def test_classifier_from_checkpoint(checkpoint, ci_data):
    from sklearn.metrics import roc_auc_score

    from matbench_ts import TSClassifier

    labels = ci_data["y"] < np.median(ci_data["y"])
    clf = TSClassifier(teacher=None, pretrained=checkpoint, recipe="plain", epochs=30, learning_rate=2e-3,
                       batch_size=64, patience=10, random_state=0, verbose=0).fit(ci_data["X"], labels)
    assert clf.pretrained_id_ == load(checkpoint).id
    proba = clf.predict_proba(ci_data["X_test"])[:, 1]
    assert roc_auc_score(ci_data["y_test"] < np.median(ci_data["y"]), proba) > 0.7


def test_library_structures_the_teacher_cannot_embed_are_left_out(tmp_path, cache_dir):
    from pymatgen.core import Lattice, Structure

    df = pd.read_json(CI_SET, lines=True).head(20)[["mp_id", "composition", "structure"]]
    actinide = Structure(Lattice.cubic(4.0), ["Am", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])  # beyond CHGNet's Pu
    isolated = Structure(Lattice.cubic(15.0), ["Na"], [[0, 0, 0]])  # no neighbour within 6 A
    bad = pd.DataFrame({"mp_id": ["x-1", "x-2"], "composition": ["AmO", "Na"],
                        "structure": [s.to(fmt="cif") for s in (actinide, isolated)]})
    path = tmp_path / "library.jsonl.gz"
    pd.concat([df, bad]).to_json(path, orient="records", lines=True)
    ckpt = load(pretrain(tmp_path / "lib.pt", [str(path)], epochs=1, cache_dir=cache_dir, **PRETRAIN))
    assert ckpt.data["library"]["size"] == 20 and ckpt.data["library"]["n_unembeddable"] == 2
    assert not {"AmO", "Na"} & ckpt.formulas


def test_a_library_already_embedded_is_read_back_without_parsing(tmp_path, monkeypatch):
    """A second pass over structures the cache holds (another library, another work folder) parses no CIF
    and gives the same embeddings, compositions and formulas as the pass that parsed them."""
    import matbench_ts.pretrain as pretrain_module
    from matbench_ts.teachers import frozen_cache_id, make_teacher

    df = pd.read_json(CI_SET, lines=True).head(12)[["mp_id", "composition", "structure"]]
    path = tmp_path / "library.jsonl.gz"
    df.to_json(path, orient="records", lines=True)
    teacher = make_teacher("chgnet")
    real_parse, parsed = pretrain_module.parse_structure, []
    monkeypatch.setattr(pretrain_module, "parse_structure", lambda item, row: parsed.append(row) or real_parse(item, row))
    library = read_library([str(path)])
    cache_dir = str(tmp_path / "cache")  # empty: the first pass parses every row
    embed = lambda lib, work: pretrain_module.embed_library(lib, teacher, frozen_cache_id(teacher), work, cache_dir,  # noqa: E731
                                                            chunk_size=5, verbose=0)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = embed(library, tmp_path / "a")
    assert len(parsed) == 12
    some = set(library.formulas[:3])
    second = embed(library.without(some), tmp_path / "b")
    assert len(parsed) == 12  # nothing parsed again
    keep = [f not in some for f in library.formulas]
    np.testing.assert_array_equal(second["embeddings"], first["embeddings"][keep])
    assert list(second["compositions"]) == list(first["compositions"][keep])
    assert list(second["formulas"]) == [f for f in library.formulas if f not in some]


def test_fine_tuning_rate_falls_with_many_rows(checkpoint, ci_data, cache_dir):
    """A checkpoint fine-tuned on the targets alone on more than ``finetune_large_rows`` rows gets the recipe's
    lower peak; a fit without a checkpoint, one guided by the teacher, a small one and an explicit
    ``learning_rate`` keep theirs."""
    crabnet = resolve_recipe("crabnet", "crabnet")
    large = crabnet.finetune_large_rows + 1
    assert crabnet.learning_rate_for(large, from_checkpoint=True) == crabnet.finetune_learning_rate < crabnet.learning_rate
    assert crabnet.learning_rate_for(large, from_checkpoint=False) == crabnet.learning_rate
    assert crabnet.learning_rate_for(large, from_checkpoint=True, guided=True) == crabnet.learning_rate
    assert crabnet.learning_rate_for(large - 1, from_checkpoint=True) == crabnet.learning_rate
    assert resolve_recipe("roost", "roost").learning_rate_for(10**6, from_checkpoint=True) == 3e-4  # not measured
    X, y = ci_data["X"], ci_data["y"]  # 240 rows, about 216 of them for training: the threshold moved below
    recipe = {"base": "plain", "finetune_learning_rate": 1e-4, "finetune_large_rows": 100}
    kwargs = dict(FINE_TUNE, epochs=2, learning_rate=None, recipe=recipe, cache_dir=cache_dir)
    assert TSRegressor(teacher=None, pretrained=checkpoint, **kwargs).fit(X, y).learning_rate_ == 1e-4
    no_checkpoint = TSRegressor(teacher=None, pretrained=None, student_params=TINY_CRABNET, **kwargs).fit(X, y)
    assert no_checkpoint.learning_rate_ == RECIPES["plain"].learning_rate
    small = TSRegressor(teacher=None, pretrained=checkpoint, **{**kwargs, "recipe": {**recipe, "finetune_large_rows": 500}})
    assert small.fit(X, y).learning_rate_ == RECIPES["plain"].learning_rate
    explicit = TSRegressor(teacher=None, pretrained=checkpoint, **{**kwargs, "learning_rate": 3e-3}).fit(X, y)
    assert explicit.learning_rate_ == 3e-3
    guided = TSRegressor(teacher="chgnet", pretrained=checkpoint, **kwargs).fit(X, y, structures=ci_data["structures"])
    assert guided.alpha_ > 0 and guided.learning_rate_ == RECIPES["plain"].learning_rate


def test_fine_tuning_can_start_from_a_linear_probe_head(checkpoint, ci_data, cache_dir):
    """``probe_head``: a checkpoint's fine-tune starts from the ridge fit of the targets on its embeddings,
    not from a random head; the default recipe keeps the random head and its old resume keys."""
    X, y = ci_data["X"], ci_data["y"]
    kwargs = dict(FINE_TUNE, epochs=1, learning_rate=1e-9, cache_dir=cache_dir)  # one epoch that barely moves
    fresh = TSRegressor(teacher=None, pretrained=checkpoint, **{**kwargs, "recipe": "roost"}).fit(X, y)
    probed = TSRegressor(teacher=None, pretrained=checkpoint, **{**kwargs, "recipe": {"base": "roost", "probe_head": True}})
    probed.fit(X, y)
    dummy = np.abs(ci_data["y_test"] - y.mean()).mean()
    mae = lambda model: np.abs(model.predict(ci_data["X_test"]) - ci_data["y_test"]).mean()  # noqa: E731
    assert mae(probed) < 0.8 * dummy and mae(probed) < 0.8 * mae(fresh)
    # the probe is a linear model of the checkpoint's embedding
    features = PretrainedFeaturizer(checkpoint).fit(X).transform(ci_data["X_test"])
    linear = LinearRegression().fit(features, probed.predict(ci_data["X_test"]))
    assert linear.score(features, probed.predict(ci_data["X_test"])) > 0.999
    _, std = probed.predict(ci_data["X_test"], return_std=True)
    assert np.isfinite(std).all() and np.ptp(std) < 1e-3 * std.mean()  # one constant log-std from the residuals
    assert "probe_head" not in recipe_settings(resolve_recipe("roost", "roost"))
    assert recipe_settings(resolve_recipe({"base": "roost", "probe_head": True}, "roost"))["probe_head"] is True
