"""End-to-end tests of the benchmark harness (matbench_ts.bench, matbench-ts CLI).

Data: ``$MATBENCH_TS_DATA`` or ``../shared/data`` beside the repository (CI set
``ci/mp_e_form_300.jsonl.gz``, official Matbench files in ``matminer/``).
All runs use a tiny CrabNet, few epochs, one torch thread per run and the session's teacher
cache (the ``cache_dir`` fixture of conftest.py).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matbench_ts.bench import BenchConfig, ConfigMismatchError, build_grid, run_grid
from matbench_ts.bench.data import (
    composition_floor,
    find_task_file,
    fraction_indices,
    load_local_task,
    load_structure_library,
    load_task,
)
from matbench_ts.bench.report import fit_time, leaderboard_refs, strategy_label, write_report
from matbench_ts.bench.config import teacher_provenance
from matbench_ts.bench.runner import check_grid
from matbench_ts.cli import main

DATA = Path(os.environ.get("MATBENCH_TS_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")).resolve()
CI_FILE = DATA / "ci" / "mp_e_form_300.jsonl.gz"


class Interrupt(Exception):
    """Stands for a kill in the middle of a grid."""


def tiny_config(out: Path, cache_dir: str, **overrides) -> BenchConfig:
    settings = dict(
        out=str(out), tasks=[str(CI_FILE)], fractions=[0.5, 1.0], strategies=["baseline", "ts"], folds=[0, 1],
        teachers=["chgnet"], profile="tiny", estimator_params=dict(epochs=15, epochs_step1=5), cache_dir=cache_dir,
        n_embed=40, threads=1, verbose=0,
    )
    settings.update(overrides)
    return BenchConfig(**settings)


def result_files(out: Path) -> list[Path]:
    return sorted(Path(out, "runs").rglob("*.json"))


@pytest.fixture(scope="module")
def grid(tmp_path_factory, cache_dir):
    """A 2 folds x 2 fractions x (baseline, ts) grid, interrupted after 3 runs, then resumed."""
    out = tmp_path_factory.mktemp("grid")
    config = tiny_config(out, cache_dir)
    seen = []

    def kill_after_three(result):
        seen.append(result["run_id"])
        if len(seen) == 3:
            raise Interrupt

    with pytest.raises(Interrupt):
        run_grid(config, on_result=kill_after_three)
    first = {p: p.stat().st_mtime_ns for p in result_files(out)}
    resumed = run_grid(config)
    return {"out": out, "config": config, "first": first, "first_ids": list(seen), "resumed": resumed}


# ----------------------------------------------------------------------------- data helpers
def test_fractions_are_nested_seeded_and_sized():
    small, mid, full = (fraction_indices(240, f, task="t", fold=1, seed=0) for f in (0.05, 0.25, 1.0))
    assert len(small) == math.ceil(0.05 * 240) and len(mid) == 60 and len(full) == 240
    assert set(small) <= set(mid) <= set(full) == set(range(240))
    assert np.array_equal(small, fraction_indices(240, 0.05, task="t", fold=1, seed=0))
    assert not np.array_equal(mid, fraction_indices(240, 0.25, task="t", fold=1, seed=1))
    assert not np.array_equal(mid, fraction_indices(240, 0.25, task="t", fold=2, seed=0))
    with pytest.raises(ValueError):
        fraction_indices(10, 0.0, task="t", fold=0, seed=0)


def test_composition_floor_uses_median_per_reduced_formula():
    # NaCl and Na2Cl2 share a reduced formula: median 2, errors 1 and 1; KBr is alone (error 0)
    assert composition_floor(["NaCl", "Na2Cl2", "KBr"], [1.0, 3.0, 5.0]) == pytest.approx(2 / 3)
    assert composition_floor(["NaCl", "KBr"], [1.0, 5.0]) == 0.0


def test_local_task_discovery_and_folds():
    assert find_task_file("mp_e_form_300", DATA) == CI_FILE
    if (DATA / "matbench_proxy").is_dir():
        assert find_task_file("matbench_perovskites", DATA).parent.name == "matbench_proxy"
    task = load_task(str(CI_FILE))
    assert task.name == "mp_e_form_300" and task.folds == [0, 1, 2, 3, 4] and task.n_with_structure == 300
    train, test = task.split(2)
    assert len(train) == 240 and len(test) == 60 and not set(train) & set(test)


def test_structure_library_lookup_prefers_lowest_energy(tmp_path):
    ci = pd.read_json(CI_FILE, lines=True)
    a, b, c = ci.iloc[0], ci.iloc[1], ci.iloc[2]
    library = pd.DataFrame({
        "id": ["x", "y", "z"], "composition": [a.composition, a.composition, b.composition],
        "e_form": [0.5, -0.5, 0.0], "structure": [b.structure, a.structure, b.structure],
    })
    lib_path = tmp_path / "library.jsonl.gz"
    library.to_json(lib_path, orient="records", lines=True)
    lib = load_structure_library(str(lib_path))
    assert lib.energy_column == "e_form"
    assert lib.lookup([a.composition, b.composition, c.composition]) == [a.structure, b.structure, None]
    # a composition-only task: 2 of its 3 rows are found in the library
    comp_only = ci.iloc[:3][["id", "composition", "target", "fold"]]
    task_path = tmp_path / "comp_only.jsonl.gz"
    comp_only.to_json(task_path, orient="records", lines=True)
    assert load_local_task(task_path).n_with_structure == 0
    task = load_task(str(task_path), structure_library=str(lib_path))
    assert task.match_rate == pytest.approx(2 / 3) and task.n_with_structure == 2
    assert task.structure_source.startswith("library:")
    # without a library a teacher strategy is refused before any training
    config = tiny_config(tmp_path / "out", None, tasks=[str(task_path)], folds=[c.fold])
    with pytest.raises(ValueError, match="structure library"):
        check_grid(config, {"comp_only": load_task(str(task_path))})


def test_teacher_provenance_flags_leaks():
    assert teacher_provenance("chgnet", "matbench_mp_e_form")["leaky"] is True
    assert teacher_provenance("chgnet", "mp2018_e_form")["leaky"] is True
    assert teacher_provenance("chgnet", "/data/ci/mp_e_form_300.jsonl.gz")["leaky"] is True
    for task in ("matbench_perovskites", "matbench_log_gvrh", "matbench_dielectric", "matbench_phonons"):
        assert teacher_provenance("chgnet", task)["leaky"] is False
    assert teacher_provenance("alignn", "matbench_mp_e_form")["leaky"] is False
    assert teacher_provenance("alignn", "x", {"checkpoint": "m.pt"})["leaky"] is None
    assert teacher_provenance(None, "matbench_mp_e_form")["leaky"] is False


# ----------------------------------------------------------------------------- the grid
def test_interrupted_grid_resumes_without_duplicate_work(grid):
    config, resumed = grid["config"], grid["resumed"]
    all_ids = {spec.run_id for spec in build_grid(config)}
    assert len(all_ids) == 8
    assert len(grid["first"]) == 3 and len(grid["first_ids"]) == 3  # the 3 finished before the "kill"
    assert resumed.total == 8 and resumed.skipped == 3 and not resumed.failed
    assert len(resumed.executed) == 5 and set(resumed.executed) | set(grid["first_ids"]) == all_ids
    assert not set(resumed.executed) & set(grid["first_ids"])
    for path, mtime in grid["first"].items():  # results of the first pass were not rewritten
        assert path.stat().st_mtime_ns == mtime
    assert len(result_files(grid["out"])) == 8
    assert not list(grid["out"].rglob("*.tmp")) and not list(grid["out"].rglob("*.failed"))
    assert not list(grid["out"].rglob("*.partial"))  # a run's training state goes when its result is written


def test_a_resumed_run_records_the_fit_time_of_all_its_sittings(tmp_path, cache_dir, monkeypatch):
    """A run stopped in step 2 and resumed from its <run>.partial/ state records the training time of
    its earlier sitting too; a run file from before that was counted reads as an unknown fit time."""
    import time

    from conftest import stop_fits_in_step2

    out = tmp_path / "out"
    config = tiny_config(out, cache_dir, fractions=[1.0], strategies=["ts"], folds=[0])
    run_through = stop_fits_in_step2(monkeypatch, after_epochs=5)
    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_grid(config)
    first_sitting = time.perf_counter() - start
    run_through()
    run_grid(config)
    (path,) = result_files(out)
    result = json.loads(path.read_text())
    assert result["epochs_resumed"] == {"step 1": 5, "step 2": 5}
    earlier = result["fit_time_s"] - result["fit_time_sitting_s"]  # step 1 and 5 epochs of step 2
    assert 0 < earlier < first_sitting
    assert fit_time(result) == result["fit_time_s"]
    before = {k: v for k, v in result.items() if k != "fit_time_sitting_s"}  # fit_time_s was the last sitting's
    assert math.isnan(fit_time(before))
    assert fit_time({**before, "epochs_resumed": {}}) == result["fit_time_s"]  # not resumed: whole


def test_result_files_hold_scores_and_provenance(grid):
    task = load_task(str(CI_FILE))
    maes = {}
    for path in result_files(grid["out"]):
        r = json.loads(path.read_text())
        _, test = task.split(r["fold"])
        assert r["status"] == "done" and r["task"] == "mp_e_form_300"
        assert np.isfinite(r["mae"]) and r["rmse"] >= r["mae"] > 0
        assert r["n_train"] == math.ceil(r["fraction"] * 240) and r["n_test"] == 60
        assert r["predictions"]["ids"] == task.ids(test) and len(r["predictions"]["y_pred"]) == 60
        err = np.asarray(r["predictions"]["y_pred"]) - task.targets(test)
        assert np.mean(np.abs(err)) == pytest.approx(r["mae"])
        emb = np.load(path.with_suffix(".npz"))
        assert emb["student"].shape[0] == 40 and np.isfinite(emb["student"]).all()
        if r["strategy"] == "ts":
            assert r["teacher"] == "chgnet" and r["teacher_info"]["leaky"] is True
            assert r["teacher_info"]["teacher_id"].startswith("chgnet") and r["alpha"] > 0
            assert r["epochs_run"]["step 1"] >= 1 and np.isfinite(r["teacher_mae"])
            assert emb["teacher"].shape[0] == 40 and np.isfinite(emb["teacher"]).all()
        else:
            assert r["teacher"] is None and r["alpha"] == 0 and "step 1" not in r["epochs_run"]
            assert r["teacher_info"]["leaky"] is False and "teacher" not in emb.files
        maes[(r["strategy"], r["fraction"], r["fold"])] = (r["mae"], r["dummy_mae"])
    # the baseline learns something: better than predicting the training mean
    base = [maes[("baseline", 1.0, fold)] for fold in (0, 1)]
    assert np.mean([m for m, _ in base]) < 0.9 * np.mean([d for _, d in base])
    config = json.loads((grid["out"] / "config.json").read_text())
    assert config["folds"] == [0, 1] and config["profile"] == "tiny"
    info = json.loads((grid["out"] / "tasks" / "mp_e_form_300.json").read_text())
    assert info["n_rows"] == 300 and info["teachers"]["chgnet"]["leaky"] is True


def test_deleted_results_are_the_only_reruns_in_parallel(grid):
    files = result_files(grid["out"])
    victims = [next(p for p in files if "/baseline/" in p.as_posix()), next(p for p in files if "/ts/" in p.as_posix())]
    for victim in victims:
        victim.unlink()
    config = dataclasses.replace(grid["config"], n_jobs=2)  # n_jobs may change between reruns
    summary = run_grid(config)
    assert summary.skipped == 6 and not summary.failed
    expected = [v.relative_to(grid["out"] / "runs").with_suffix("").as_posix() for v in victims]
    assert sorted(summary.executed) == sorted(expected)
    for victim in victims:  # rewritten by the joblib (loky) worker processes
        assert json.loads(victim.read_text())["pid"] != os.getpid()


def test_failed_run_is_reported_and_retried(tmp_path, cache_dir):
    frame = pd.read_json(CI_FILE, lines=True)
    bad = int(np.flatnonzero(frame["fold"].to_numpy() != 0)[0])  # a training row of fold 0's run
    frame.loc[bad, "composition"] = "Qq2"
    frame.to_json(tmp_path / "bad_formula.jsonl", orient="records", lines=True)
    config = tiny_config(tmp_path / "bad", cache_dir, tasks=[str(tmp_path / "bad_formula.jsonl")], fractions=[1.0],
                         strategies=["baseline"], folds=[0])
    summary = run_grid(config)
    assert summary.executed == []
    assert list(summary.failed.values()) == [
        f"ValueError: task bad_formula, row {bad} (id '{frame.id[bad]}'): unknown element Qq in 'Qq2'"]
    assert not result_files(tmp_path / "bad") and len(list((tmp_path / "bad").rglob("*.failed"))) == 1
    assert len(run_grid(config).failed) == 1  # not marked done: the next call tries again
    with pytest.raises(ValueError, match="unknown teacher"):
        tiny_config(tmp_path / "x", cache_dir, teachers=["megnet"])


def test_config_mismatch_is_refused_and_harmless_changes_pass(grid, cache_dir):
    out = grid["out"]
    before = {p: p.stat().st_mtime_ns for p in result_files(out)}
    changed = tiny_config(out, cache_dir, estimator_params=dict(epochs=16, epochs_step1=5))
    with pytest.raises(ConfigMismatchError, match="epochs"):
        run_grid(changed)
    with pytest.raises(ConfigMismatchError, match="profile"):
        run_grid(tiny_config(out, cache_dir, profile="cpu"))
    harmless = tiny_config(out, cache_dir, n_jobs=2, threads=2, verbose=0)
    summary = run_grid(harmless)
    assert summary.executed == [] and summary.skipped == 8
    assert {p: p.stat().st_mtime_ns for p in result_files(out)} == before
    saved = json.loads((out / "config.json").read_text())  # written before a field was added: default holds
    (out / "config.json").write_text(json.dumps({k: v for k, v in saved.items() if k != "inner_validation"}))
    assert run_grid(harmless).skipped == 8
    with pytest.raises(ConfigMismatchError, match="inner_validation: saved 0.0, now 0.2"):
        run_grid(tiny_config(out, cache_dir, inner_validation=0.2))


def test_report_tables_plots_and_tsne(grid, tmp_path):
    written = write_report(grid["out"], out=tmp_path / "report")
    names = {p.name for group in written.values() for p in group}
    for name in ("mp_e_form_300.md", "mp_e_form_300.csv", "mp_e_form_300.json", "summary.csv", "README.md",
                 "mp_e_form_300_mae_vs_fraction.png", "mp_e_form_300_tsne_crabnet_chgnet.png"):
        assert name in names and (tmp_path / "report" / name).stat().st_size > 0
    table = pd.read_csv(tmp_path / "report" / "mp_e_form_300.csv")
    assert len(table) == 4 and set(table["strategy"]) == {"baseline", "ts"}
    assert (table["n_runs"] == 2).all()
    results = [json.loads(p.read_text()) for p in result_files(grid["out"])]
    for row in table.itertuples():
        maes = [r["mae"] for r in results if r["strategy"] == row.strategy and r["fraction"] == row.fraction]
        assert row.mae_mean == pytest.approx(np.mean(maes)) and row.mae_std == pytest.approx(np.std(maes))
        base = table[(table.strategy == "baseline") & (table.fraction == row.fraction)].mae_mean.item()
        if row.strategy == "ts":
            assert row.gain_vs_baseline == pytest.approx((base - row.mae_mean) / base)
            assert np.isfinite(row.teacher_mae)
            room = base - max(row.composition_floor, row.teacher_mae)
            if room > 0.05 * base:
                assert row.gap_closed == pytest.approx((base - row.mae_mean) / room)
            else:  # the baseline is already about as good as the reference: undefined
                assert np.isnan(row.gap_closed)
        else:
            assert np.isnan(row.gain_vs_baseline) and np.isnan(row.teacher_mae)
    task = load_task(str(CI_FILE))
    floor = composition_floor(task.frame["composition"], task.frame["target"])
    assert table["composition_floor"].iloc[0] == pytest.approx(floor)
    page = (tmp_path / "report" / "mp_e_form_300.md").read_text()
    assert "LEAKY" in page and "| crabnet | chgnet | ts | 1 |" in page


def test_paired_p_value_separates_a_consistent_shift_from_fold_noise():
    from matbench_ts.bench.report import paired_p_value

    base = np.array([0.40, 0.45, 0.38, 0.50, 0.42])
    shifted = pd.DataFrame({"mae": base - 0.02 + [0.001, -0.001, 0.002, 0.0, -0.002], "mae_base": base})
    noisy = pd.DataFrame({"mae": base + [0.03, -0.03, 0.02, -0.025, 0.004], "mae_base": base})
    assert paired_p_value(shifted) < 0.01
    assert paired_p_value(noisy) > 0.5
    assert np.isnan(paired_p_value(shifted.head(2)))  # too few folds to tell


def test_leaderboard_references():
    board = json.loads((DATA / "leaderboard" / "matbench_v0.1_mean_scores.json").read_text())
    refs = leaderboard_refs(board, "matbench_perovskites")
    assert refs["leaderboard_crabnet"] == board["matbench_perovskites"]["CrabNet"][1]
    assert refs["leaderboard_best_composition_name"] in ("CrabNet", "Finder_v1.2_composition")
    steels = leaderboard_refs(board, "matbench_steels")  # composition task: any non-dummy entry counts
    best = min(v[1] for k, v in board["matbench_steels"].items() if k != "dummy")
    assert steels["leaderboard_best_composition"] == best
    assert leaderboard_refs(board, "mp_e_form_300")["leaderboard_crabnet"] is None


# ----------------------------------------------------------------------------- Dask, CLI, submission
def test_dask_backend_runs_on_the_cluster(tmp_path, cache_dir):
    from distributed import LocalCluster

    config = tiny_config(tmp_path / "dask", cache_dir, fractions=[1.0], strategies=["baseline"], n_embed=0)
    # two worker threads: with a single one, joblib's Dask backend runs everything in the caller
    with LocalCluster(n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None) as cluster:
        config.scheduler = cluster.scheduler_address
        summary = run_grid(config)
        workers = set(cluster.scheduler.workers)
    assert len(summary.executed) == 2 and not summary.failed
    for path in result_files(tmp_path / "dask"):
        r = json.loads(path.read_text())
        assert r["dask_worker"] in workers and np.isfinite(r["mae"]) and r["pid"] == os.getpid()


def test_cli_bench_report_and_mismatch(tmp_path, cache_dir, capsys):
    out = tmp_path / "cli"
    args = ["bench", "--tasks", str(CI_FILE), "--strategies", "baseline", "--folds", "3", "--profile", "tiny",
            "--epochs", "5", "--cache-dir", cache_dir, "--threads", "1", "--n-embed", "0", "-q", "--out", str(out)]
    assert main(args) == 0
    assert "1 runs: 1 executed" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 executed, 1 already done" in capsys.readouterr().out
    assert main([*args[:-2], "--epochs", "6", "--out", str(out)]) == 2
    assert "another configuration" in capsys.readouterr().err
    assert main(["report", str(out), "--no-tsne"]) == 0
    assert "| crabnet | none | baseline | 1 |" in capsys.readouterr().out
    assert (out / "report" / "mp_e_form_300.csv").exists()
    help_text = subprocess.run([sys.executable, "-m", "matbench_ts.cli", "submit", "--help"],
                               capture_output=True, text=True, check=True).stdout
    assert "--authors" in help_text


def test_submit_official_matbench_steels(tmp_path, cache_dir, monkeypatch):
    """All 5 official folds through MatbenchBenchmark, read back by matbench itself."""
    if not (DATA / "matminer" / "matbench_steels.json.gz").is_file():
        pytest.skip("official matbench files not available")
    monkeypatch.setenv("MATMINER_DATA", str(DATA / "matminer"))
    from matbench.bench import MatbenchBenchmark

    from matbench_ts.bench.submit import make_submission

    paths = make_submission(["matbench_steels"], tmp_path / "sub", strategy="baseline", teacher=None,
                            profile="tiny", estimator_params=dict(epochs=15), cache_dir=cache_dir, threads=1,
                            verbose=0, authors="Test Author")
    mb = MatbenchBenchmark.from_file(str(paths["results"]))
    # is_complete needs all 13 Matbench tasks; for a subset "complete" means every fold recorded
    assert mb.is_recorded and mb.is_valid
    task = next(iter(mb.tasks))
    assert task.dataset_name == "matbench_steels" and task.all_folds_recorded
    for fold in task.folds:
        params = task.results[f"fold_{fold}"]["parameters"]
        assert params["strategy"] == "baseline" and params["teacher"] == "none" and params["n_train"] > 240
    mae = task.scores["mae"]["mean"]
    assert np.isfinite(mae) and mae < 229.7445  # leaderboard "dummy" (mean predictor) on steels
    # the robust loss's standard deviations are recorded with the predictions
    uncertainties = task.results["fold_0"][task._UNCERTAINTY_KEY]
    test_ids = [i for i in uncertainties if i.startswith("mb-steels-")]  # (it also holds empty 'std', 'ci' keys)
    assert len(test_ids) == len(task.results["fold_0"]["data"])
    assert all(uncertainties[i]["std"] > 0 and uncertainties[i]["ci_lower"] < uncertainties[i]["ci_upper"]
               for i in test_ids)
    info = json.loads(paths["info"].read_text())
    for field in ("authors", "algorithm", "algorithm_long", "bibtex_refs", "requirements"):
        assert info[field], field
    assert "notes" in info and 5 <= len(info["algorithm"]) <= 15 and info["authors"] == "Test Author"
    assert any(r.startswith("matbench==") for r in info["requirements"]["python"])
    assert "make_submission" in paths["source"].read_text()


# ----------------------------------------------------------------------------- evidence helpers
def test_mp2018_tasks_share_one_seeded_80_20_split():
    e_form, gap = load_task("mp2018_e_form", str(DATA)), load_task("mp2018_band_gap", str(DATA))
    raw = pd.read_json(DATA / "mp2018" / "mp2018_eform_gap.jsonl.gz", lines=True)
    assert len(e_form.frame) == len(raw) and e_form.folds == [0, 1, 2, 3, 4]
    np.testing.assert_array_equal(e_form.frame["fold"], gap.frame["fold"])
    train, test = e_form.split(0)
    assert abs(len(test) / len(raw) - 0.2) < 1e-3 and len(train) + len(test) == len(raw)
    np.testing.assert_array_equal(e_form.targets(test), raw["e_form"].to_numpy()[test])
    np.testing.assert_array_equal(gap.targets(test), raw["band_gap"].to_numpy()[test])
    assert teacher_provenance("chgnet", "mp2018_e_form")["leaky"] is True
    assert teacher_provenance("chgnet", "mp2018_band_gap")["leaky"] is False


def test_transfer_fold_pretrains_on_the_whole_training_fold(tmp_path, cache_dir):
    config = tiny_config(tmp_path / "tf", cache_dir, fractions=[0.25], strategies=["transfer-fold"], folds=[2],
                         n_embed=0)
    summary = run_grid(config)
    assert not summary.failed, summary.failed
    (path,) = result_files(tmp_path / "tf")
    r = json.loads(path.read_text())
    assert r["n_train"] == 60 and r["n_pretrain"] == r["n_train_fold"] == 240
    assert r["epochs_run"]["step 1"] > 0 and np.isfinite(r["mae"])


def test_embed_command_fills_the_cache_for_the_runs(tmp_path, capsys):
    cache = str(tmp_path / "cache")
    args = ["embed", "--tasks", str(CI_FILE), "--teacher", "chgnet", "--cache-dir", cache]
    assert main(args) == 0
    assert "300 structures, 300 computed by chgnet-0.3.0-atom" in capsys.readouterr().out
    assert main(args) == 0
    assert "300 structures, 0 computed" in capsys.readouterr().out
    config = tiny_config(tmp_path / "warm", cache, fractions=[1.0], strategies=["ts"], folds=[1], n_embed=0)
    run_grid(config)
    (path,) = result_files(tmp_path / "warm")
    assert json.loads(path.read_text())["teacher_info"]["n_teacher_computed"] == 0
    assert main(["embed", "--tasks", str(CI_FILE), "--teacher", "alignn", "--cache-dir", cache]) == 2


def test_report_merges_run_directories_and_keeps_alpha_sweeps_apart(grid, tmp_path, cache_dir):
    sweep = tiny_config(tmp_path / "sweep", cache_dir, strategies=["ts"], fractions=[1.0], n_embed=0,
                        estimator_params=dict(epochs=15, epochs_step1=5, alpha=0.5))
    run_grid(sweep)
    write_report([grid["out"], tmp_path / "sweep"], out=tmp_path / "merged", tsne=False)
    table = pd.read_csv(tmp_path / "merged" / "mp_e_form_300.csv")
    assert set(table["strategy"]) == {"baseline", "ts", "ts alpha=0.5"}
    swept = table[table["strategy"] == "ts alpha=0.5"].iloc[0]
    assert swept.n_runs == 2 and swept.alpha_mean == 0.5 and np.isfinite(swept.gain_vs_baseline)
    assert (table["fit_time_s"] > 0).all()
    with pytest.raises(ValueError, match="same run is in two run directories"):
        write_report([grid["out"], grid["out"]], out=tmp_path / "dup", tsne=False)


def test_inner_validation_scores_inside_the_training_fold(tmp_path, cache_dir):
    config = tiny_config(tmp_path / "sel", cache_dir, fractions=[1.0], strategies=["ts"], folds=[0],
                         inner_validation=0.2, n_embed=0, estimator_params=dict(epochs=5, epochs_step1=2,
                                                                                 alpha="auto-init"))
    run_grid(config)
    (path,) = result_files(tmp_path / "sel")
    r = json.loads(path.read_text())
    test_ids = set(load_local_task(CI_FILE).frame.query("fold == 0")["id"])
    assert r["scored_on"].startswith("inner validation (0.2") and r["alpha_rule"] == "auto-init"
    assert r["n_test"] == 48 and r["n_train"] == 192 and r["n_train_fold"] == 192
    assert not test_ids & set(r["predictions"]["ids"])  # the official test fold is never scored
    with pytest.raises(ValueError, match="inner_validation"):
        tiny_config(tmp_path / "bad", cache_dir, inner_validation=1.0)


def test_strategy_labels_keep_alpha_rules_and_step1_libraries_apart():
    from matbench_ts.estimator import AUTO_ALPHA_RULE

    other = {"auto-init": "auto-step2", "auto-step2": "auto-init"}[AUTO_ALPHA_RULE]
    assert strategy_label({"strategy": "ts", "alpha_rule": AUTO_ALPHA_RULE}) == "ts"
    assert strategy_label({"strategy": "ts", "alpha_rule": other}) == f"ts alpha={other}"
    assert strategy_label({"strategy": "ts", "alpha_rule": 0.3}) == "ts alpha=0.3"
    assert strategy_label({"strategy": "ts-no-step1", "alpha_rule": other}) == "ts-no-step1"
    # a larger step-1 library than the default is another strategy in the tables
    transfer = {"strategy": "transfer", "alpha_rule": AUTO_ALPHA_RULE}
    assert strategy_label(transfer, pretrain_max=5000) == strategy_label(transfer) == "transfer"
    assert strategy_label(transfer, pretrain_max=0) == "transfer D1=all"
    assert strategy_label({**transfer, "alpha_rule": 1.0}, pretrain_max=20000) == "transfer D1=20000 alpha=1"
    legacy = strategy_label({"strategy": "ts", "params": {}})  # written before alpha_rule: "auto" was auto-step2
    assert legacy == ("ts" if AUTO_ALPHA_RULE == "auto-step2" else "ts alpha=auto-step2")


def test_cpu_profile_uses_published_sizes_on_small_data():
    from matbench_ts.bench.config import PROFILES, BenchConfig, estimator_kwargs

    config = BenchConfig(out="-", tasks=["x"], profile="cpu", strategies=["baseline"])
    small = estimator_kwargs(config, "crabnet", None, "baseline", 0, n_train=250)
    large = estimator_kwargs(config, "crabnet", None, "baseline", 0, n_train=3683)
    assert small["student_params"] is None  # the published sizes (the student's defaults)
    assert large["student_params"] == PROFILES["cpu"]["student_params"]["crabnet"]
    forced = BenchConfig(out="-", tasks=["x"], profile="cpu", strategies=["baseline"], student_params={"d_model": 64})
    assert estimator_kwargs(forced, "crabnet", None, "baseline", 0, n_train=250)["student_params"] == {"d_model": 64}
