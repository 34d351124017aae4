"""Issue #12 on the benchmark harness: missing files, bad task files, settings checked before
``config.json`` is written, a parallel grid that stops when asked. Each test names its item."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matbench_ts.bench import BenchConfig, run_grid
from matbench_ts.bench.data import find_data_file, load_local_task, load_task, read_table
from matbench_ts.cli import main

DATA = Path(os.environ.get("MATBENCH_TS_DATA", Path(__file__).parents[1] / ".." / "shared" / "data")).resolve()
CI_FILE = DATA / "ci" / "mp_e_form_300.jsonl.gz"


def tiny_config(out: Path, cache_dir: str, **overrides) -> BenchConfig:
    settings = dict(out=str(out), tasks=[str(CI_FILE)], fractions=[1.0], strategies=["baseline"], folds=[0],
                    teachers=["chgnet"], profile="tiny", estimator_params=dict(epochs=3), cache_dir=cache_dir,
                    n_embed=0, threads=1, verbose=0)
    settings.update(overrides)
    return BenchConfig(**settings)


def ci_frame(n: int = 10) -> pd.DataFrame:
    return pd.read_json(CI_FILE, lines=True).head(n)


# ----------------------------------------------------------------------------- 5: files by name, missing files
def test_a_missing_table_is_reported_by_its_path(tmp_path):
    missing = tmp_path / "nowhere.jsonl.gz"
    with pytest.raises(FileNotFoundError, match=f"no such file: {re.escape(str(missing))}"):
        read_table(missing)


def test_structure_library_names_resolve_under_the_data_directory(tmp_path):
    assert find_data_file("mp2018_eform_gap.jsonl.gz", DATA) == DATA / "mp2018" / "mp2018_eform_gap.jsonl.gz"
    library = ci_frame(5)[["id", "composition", "structure"]]
    library.to_json(tmp_path / "lib.jsonl.gz", orient="records", lines=True)
    ci_frame(5).drop(columns="structure").to_json(tmp_path / "comp.jsonl", orient="records", lines=True)
    task = load_task("comp", str(tmp_path), "local", "lib.jsonl.gz")  # both found by name under --data-dir
    assert task.n_with_structure == 5 and task.structure_source.startswith("library:")


def test_cli_names_a_missing_structure_library(tmp_path, cache_dir, capsys):
    args = ["bench", "--tasks", str(CI_FILE), "--strategies", "baseline", "--folds", "0", "--profile", "tiny",
            "--structure-library", "no_such_library.jsonl.gz", "--cache-dir", cache_dir, "-q", "--out",
            str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "structure library no_such_library.jsonl.gz: no such file" in err and "Expected object" not in err


# ----------------------------------------------------------------------------- 9: task files
def write_task(tmp_path: Path, frame: pd.DataFrame, name: str = "task") -> Path:
    path = tmp_path / f"{name}.jsonl"
    frame.to_json(path, orient="records", lines=True)
    return path


@pytest.mark.parametrize(
    "column, value, problem",
    [
        ("fold", 5, "the fold must be an integer 0-4, got 5"),
        ("fold", -1, "the fold must be an integer 0-4, got -1"),
        ("fold", 1.5, "the fold must be an integer 0-4, got 1.5"),
        ("fold", None, "the fold must be an integer 0-4, got nan"),
        ("fold", "two", "the fold must be an integer 0-4, got 'two'"),
        ("target", "abc", "the target must be a finite number, got 'abc'"),
        ("target", None, "the target must be a finite number, got nan"),
        ("composition", None, "missing composition, got None"),
    ],
)
def test_bad_task_file_values_name_file_column_row_and_id(tmp_path, column, value, problem):
    frame = ci_frame(6)
    frame[column] = frame[column].astype(object)
    frame.loc[3, column] = value
    path = write_task(tmp_path, frame)
    expected = f"task file {path}, column '{column}', row 3 (id '{frame.id[3]}'): {problem}"
    with pytest.raises(ValueError, match="^" + re.escape(expected)):
        load_local_task(path)


def test_duplicate_ids_are_refused(tmp_path):
    frame = ci_frame(6)
    frame.loc[4, "id"] = frame.id[1]
    with pytest.raises(ValueError, match=rf"column 'id', row 4 \(id '{frame.id[1]}'\): duplicate id"):
        load_local_task(write_task(tmp_path, frame))


def test_bad_rows_in_a_run_are_named_by_task_row_and_id(tmp_path, cache_dir):
    frame = pd.read_json(CI_FILE, lines=True)
    bad_formula = int(np.flatnonzero(frame.fold.to_numpy() == 1)[7])  # a training row of the run on fold 0
    bad_cif = int(np.flatnonzero(frame.fold.to_numpy() == 2)[3])
    frame.loc[bad_formula, "composition"] = "Xx2O3"
    frame.loc[bad_cif, "structure"] = "not a CIF"
    path = write_task(tmp_path, frame, "bad_rows")
    base = run_grid(tiny_config(tmp_path / "base", cache_dir, tasks=[str(path)]))
    (error,) = base.failed.values()
    assert error.startswith(f"ValueError: task bad_rows, row {bad_formula} (id '{frame.id[bad_formula]}'): "
                            "unknown element Xx")
    ts = run_grid(tiny_config(tmp_path / "ts", cache_dir, tasks=[str(path)], strategies=["ts"]))
    (error,) = ts.failed.values()
    assert f"task bad_rows, column 'structure', row {bad_cif}: cannot parse structure CIF" in error
    assert f"(id '{frame.id[bad_cif]}', file:{path})" in error


# ----------------------------------------------------------------------------- 10: check first, bind --out late
def test_bad_settings_are_refused_before_config_json_and_do_not_lock_out(tmp_path, cache_dir, capsys):
    out = tmp_path / "out"
    args = ["bench", "--tasks", str(CI_FILE), "--strategies", "baseline", "--folds", "0", "--profile", "tiny",
            "--threads", "1", "--n-embed", "0", "--cache-dir", cache_dir, "-q", "--out", str(out)]
    assert main([*args, "--epochs", "-1"]) == 2
    assert "epochs must be an integer >= 1, got -1" in capsys.readouterr().err
    assert not (out / "config.json").exists()
    assert main([*args, "--batch-size", "0"]) == 2
    assert main([*args, "--epochs", "2"]) == 0  # the typo did not lock the directory
    assert "1 runs: 1 executed" in capsys.readouterr().out


def test_out_without_finished_runs_takes_a_new_configuration(tmp_path, cache_dir):
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    first = tiny_config(out, cache_dir, estimator_params=dict(epochs=3))
    from matbench_ts.bench.config import prepare_out

    prepare_out(first)  # config.json of a grid interrupted before any run finished
    summary = run_grid(tiny_config(out, cache_dir, estimator_params=dict(epochs=2)))
    assert len(summary.executed) == 1
    assert json.loads((out / "config.json").read_text())["estimator_params"] == {"epochs": 2}


def test_equivalent_data_dir_and_student_params_are_not_configuration_changes(tmp_path, cache_dir, monkeypatch):
    from matbench_ts.bench.config import PROFILES, ConfigMismatchError

    monkeypatch.setenv("MATBENCH_TS_DATA", str(DATA))
    out = tmp_path / "out"
    assert len(run_grid(tiny_config(out, cache_dir)).executed) == 1
    same = tiny_config(out, cache_dir, data_dir=str(DATA) + "/", student_params=PROFILES["tiny"]["student_params"]["crabnet"])
    assert run_grid(same).skipped == 1
    keyed = tiny_config(out, cache_dir, student_params={"crabnet": {"d_model": 32}})  # the tiny preset's own value
    assert run_grid(keyed).skipped == 1
    with pytest.raises(ConfigMismatchError, match="student_params"):
        run_grid(tiny_config(out, cache_dir, student_params={"crabnet": {"d_model": 16}}))
    with pytest.raises(ConfigMismatchError, match="data_dir"):
        run_grid(tiny_config(out, cache_dir, data_dir=str(tmp_path)))


def test_a_missing_task_is_reported_as_missing(tmp_path, cache_dir):
    for name in ("matbench_no_such_task", str(tmp_path / "missing.jsonl.gz")):
        with pytest.raises(FileNotFoundError, match=f"no local file for task '{re.escape(name)}'.*not a Matbench"):
            run_grid(tiny_config(tmp_path / "out", cache_dir, tasks=[name]))
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- 3: stopping a parallel grid
def _bench_command(out: Path, cache_dir: str, fractions: str) -> list[str]:
    # 0.05 runs are short (12 rows), 1.0 runs long (300 epochs of 240 rows): runs are in flight at the signal
    return [sys.executable, "-m", "matbench_ts.cli", "bench", "--tasks", str(CI_FILE), "--strategies", "baseline",
            "--fractions", fractions, "--folds", "0,1,2,3,4", "--profile", "tiny", "--epochs", "300", "--patience",
            "300", "--threads", "1", "--n-embed", "0", "--n-jobs", "2", "--cache-dir", cache_dir, "-q",
            "--out", str(out)]


def _finished(out: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in (out / "runs").rglob("*.json")} if (out / "runs").exists() else {}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_a_parallel_grid_and_the_next_call_resumes(tmp_path, cache_dir, capsys, signum):
    """SIGINT is sent with SIGINT ignored at the start, as a shell starts a background job (``bench ... &``)."""
    import psutil

    out = tmp_path / "out"
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # noqa: E731
    log = tmp_path / "stderr.txt"
    with open(log, "w") as stderr:  # a file, not a pipe: workers inherit it, and must not hold a pipe open
        proc = subprocess.Popen(_bench_command(out, cache_dir, "0.05,1"), stdout=subprocess.DEVNULL, stderr=stderr,
                                preexec_fn=ignore_sigint)
    try:
        deadline = time.monotonic() + 180
        while not _finished(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        workers = psutil.Process(proc.pid).children(recursive=True)
        assert _finished(out) and proc.poll() is None and workers, "no run finished while the grid ran"
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        proc.kill()
    _, alive = psutil.wait_procs(workers, timeout=30)
    assert not alive, f"workers still running after the grid stopped: {alive}"
    assert proc.returncode == 128 + signum
    assert f"interrupted by {signal.Signals(signum).name}: finished runs are kept" in log.read_text()
    finished = _finished(out)
    time.sleep(1)
    assert _finished(out) == finished and 1 <= len(finished) < 10  # nothing written after the stop
    for path in finished:
        assert json.loads(path.read_text())["status"] == "done"
    if signum == signal.SIGTERM:  # the next call skips the finished runs (here only the short ones are rerun)
        short = {p for p in finished if p.name.startswith("frac0.05_")}
        args = _bench_command(out, cache_dir, "0.05")[3:]
        args[args.index("--n-jobs") + 1] = "1"  # n_jobs may change between calls
        assert main(args) == 0
        assert f"5 runs: {5 - len(short)} executed, {len(short)} already done" in capsys.readouterr().out
        assert {p: m for p, m in _finished(out).items() if p in finished} == finished  # not rewritten


# ----------------------------------------------------------------------------- 11: submission name, parquet
@pytest.mark.parametrize("algorithm", ["CrabNet+CHGNet-ts", "CNet"])
def test_submission_algorithm_name_outside_matbench_limits_is_refused_before_any_run(tmp_path, capsys, algorithm):
    args = ["submit", "--tasks", "matbench_steels", "--strategy", "baseline", "--teacher", "none", "--profile",
            "tiny", "--algorithm", algorithm, "--out", str(tmp_path / "sub")]
    assert main(args) == 2
    assert f"algorithm must have 5-15 characters (Matbench's limits), got '{algorithm}'" in capsys.readouterr().err
    assert not (tmp_path / "sub").exists()


def test_parquet_task_files_are_read(tmp_path):
    frame = ci_frame(8)
    frame.to_parquet(tmp_path / "small.parquet")
    task = load_local_task(tmp_path / "small.parquet")
    assert task.name == "small" and len(task.frame) == 8 and task.n_with_structure == 8
    assert task.frame["id"].tolist() == frame["id"].tolist()
