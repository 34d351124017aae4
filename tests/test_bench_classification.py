"""The harness on classification tasks: mp2018_is_metal, the official matbench_glass, report and submit."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DATA_DIR

from matbench_ts.bench.data import load_local_task, load_task
from matbench_ts.bench.report import write_report
from matbench_ts.bench import BenchConfig, run_grid
from matbench_ts.bench.submit import CLASSIFICATION_NOTE, make_submission

QUICK = dict(epochs=12, epochs_step1=4, recipe="plain", learning_rate=2e-3)


def test_mp2018_is_metal_labels_metals_by_a_zero_gap():
    task = load_task("mp2018_is_metal", str(DATA_DIR))
    gap = load_task("mp2018_band_gap", str(DATA_DIR))
    assert task.is_classification and not gap.is_classification
    assert np.array_equal(task.labels(np.arange(len(task.frame))), gap.targets(np.arange(len(gap.frame))) == 0)
    assert 0.2 < task.labels(np.arange(len(task.frame))).mean() < 0.6


def test_classification_grid_scores_probabilities_and_reports_roc_auc(tmp_path, cache_dir):
    config = BenchConfig(out=str(tmp_path / "runs"), tasks=["mp2018_is_metal"], fractions=[0.01], folds=[0],
                         strategies=["baseline", "ts"], teachers=["chgnet"], profile="tiny", estimator_params=QUICK,
                         data_dir=str(DATA_DIR), cache_dir=cache_dir, n_embed=20, threads=1, verbose=0)
    summary = run_grid(config)
    assert not summary.failed and len(summary.executed) == 2
    for path in sorted((tmp_path / "runs" / "runs").rglob("*.json")):
        r = json.loads(path.read_text())
        assert r["kind"] == "classification" and r["metric"] == "roc_auc" and "mae" not in r
        assert 0.6 < r["roc_auc"] <= 1 and 0 <= r["balanced_accuracy"] <= 1
        proba = np.asarray(r["predictions"]["y_pred"])
        assert proba.min() >= 0 and proba.max() <= 1 and len(np.unique(proba)) > 10
    written = write_report(tmp_path / "runs", out=tmp_path / "report", tsne=False)
    page = (tmp_path / "report" / "mp2018_is_metal.md").read_text()
    assert "ROC-AUC" in page and "| ts |" in page.replace("  ", " ")
    assert any(Path(p).name == "mp2018_is_metal_roc_auc_vs_fraction.png" for p in written["plots"])


def test_glass_submission_records_probabilities(tmp_path, cache_dir, monkeypatch):
    if not (DATA_DIR / "matminer" / "matbench_glass.json.gz").is_file():
        pytest.skip("official matbench files not available")
    monkeypatch.setenv("MATMINER_DATA", str(DATA_DIR / "matminer"))
    from matbench.bench import MatbenchBenchmark

    paths = make_submission(["matbench_glass"], tmp_path / "sub", strategy="baseline", teacher=None, profile="tiny",
                            estimator_params=dict(QUICK, epochs=6), cache_dir=cache_dir, threads=1, verbose=0,
                            authors="Test Author")
    task = next(iter(MatbenchBenchmark.from_file(str(paths["results"])).tasks))
    assert task.all_folds_recorded
    predictions = task.results["fold_0"]["data"]
    assert all(isinstance(p, float) and 0 <= p <= 1 for p in predictions.values())
    assert task.scores["rocauc"]["mean"] > 0.65  # a real ROC-AUC from probabilities (dummy: 0.50)
    assert CLASSIFICATION_NOTE in json.loads(paths["info"].read_text())["notes"]


def labelled_ci_task(tmp_path: Path, name: str, labels) -> Path:
    frame = pd.read_json(DATA_DIR / "ci" / "mp_e_form_300.jsonl.gz", lines=True).head(len(labels))
    frame["target"] = labels
    path = tmp_path / f"{name}.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return path


def test_local_task_files_with_boolean_labels_or_a_matbench_classification_name_are_classification(tmp_path):
    labels = [True, False, True, True, False, False]
    task = load_local_task(labelled_ci_task(tmp_path, "my_labels", labels))
    assert task.is_classification and task.labels(np.arange(6)).tolist() == labels
    as_numbers = load_local_task(labelled_ci_task(tmp_path, "matbench_mp_is_metal", [1, 0, 1, 1, 0, 0]))
    assert as_numbers.is_classification  # Matbench's own task type, from its name
    assert not load_local_task(labelled_ci_task(tmp_path, "my_numbers", [1, 0, 1, 1, 0, 0])).is_classification
    assert not load_local_task(labelled_ci_task(tmp_path, "matbench_expt_gap", labels)).is_classification


@pytest.mark.parametrize("bad, problem", [(2, "a classification label must be true/false (or 1/0), got 2.0"),
                                          (None, "the target must be a finite number, got nan")])
def test_a_bad_label_in_a_classification_file_is_named_by_row_and_id(tmp_path, bad, problem):
    labels = [1, 0, 1, bad, 0, 0]
    path = labelled_ci_task(tmp_path, "matbench_mp_is_metal", labels)
    with pytest.raises(ValueError, match=r"column 'target', row 3 \(id '.+'\): " + re.escape(problem)):
        load_local_task(path)
