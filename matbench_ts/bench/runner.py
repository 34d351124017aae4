"""The benchmark grid: (task, fraction, strategy, student, teacher, fold, seed) runs of
:class:`~matbench_ts.TSRegressor`, each stored as one JSON file as soon as it finishes.

* **Resumable**: a run whose JSON exists is skipped; results are written atomically
  (temporary file + ``os.replace``), and a run in flight keeps its training state beside its
  would-be result (``<run>.partial/``), so an interrupted grid loses at most a minute of each.
* **Safe**: ``config.json`` in the output directory records the settings; a rerun with other
  model/data settings is refused (:class:`~.config.ConfigMismatchError`). Harmless fields
  (:data:`~.config.HARMLESS_FIELDS`) may change, and grid axes (:data:`~.config.GRID_FIELDS`) may be extended.
* **Parallel**: runs are dispatched with joblib (``n_jobs``), or onto a Dask cluster
  (``scheduler`` address) through joblib's Dask backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import platform
import re
import shutil
import signal
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from joblib import Parallel, delayed, parallel_config
from tqdm.auto import tqdm

from ..pretrained import load as load_checkpoint
from .config import NO_TEACHER, BenchConfig, estimator_kwargs, params_for, prepare_out, teacher_provenance
from .data import (
    Task,
    find_data_file,
    fraction_indices,
    inner_split,
    load_structure_library,
    load_task,
    parse_structure,
    reduced_formula,
    sample_positions,
    task_name_of,
)
from .scores import calibration, classification_scores, regression_scores, ridge_probe
from .store import atomic_save_npz, atomic_write_json

# ----------------------------------------------------------------------------- grid
@dataclass(frozen=True)
class RunSpec:
    """One run of the grid."""

    task: str
    fraction: float
    strategy: str
    student: str
    teacher: str | None
    fold: int
    seed: int

    @property
    def relpath(self) -> Path:
        """Result path inside the output directory."""
        pair = f"{self.student}__{self.teacher or 'none'}"
        return Path("runs", task_name_of(self.task), pair, self.strategy,
                    f"frac{self.fraction:g}_fold{self.fold}_seed{self.seed}.json")

    @property
    def run_id(self) -> str:
        return self.relpath.with_suffix("").as_posix()[len("runs/"):]


def build_grid(config: BenchConfig) -> list[RunSpec]:
    """All runs of ``config``; the baseline (no teacher) appears once per student."""
    specs = []
    for task in config.tasks:
        for fraction in config.fractions:
            for fold in config.folds:
                for seed in config.seeds:
                    for student in config.students:
                        for strategy in config.strategies:
                            teachers = [None] if strategy in NO_TEACHER else config.teachers
                            for teacher in teachers:
                                specs.append(RunSpec(task, fraction, strategy, student, teacher, fold, seed))
    return specs


@dataclass
class GridSummary:
    """What a :func:`run_grid` call did."""

    total: int = 0
    skipped: int = 0
    executed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        if result["status"] == "done":
            self.executed.append(result["run_id"])
        elif result["status"] == "failed":
            self.failed[result["run_id"]] = result["error"]
        else:
            self.skipped += 1


# ----------------------------------------------------------------------------- one run
def result_path(config: BenchConfig, spec: RunSpec) -> Path:
    return Path(config.out) / spec.relpath


def _task(config: BenchConfig, name: str) -> Task:
    return load_task(name, config.data_dir, config.source, config.structure_library)


def _teacher_probe(
    model: Any, task: Task, train: np.ndarray, test: np.ndarray, cache_dir: str | None
) -> dict[str, Any]:
    """The teacher's own test MAE: its ``predict`` when it learned this target (ALIGNN trained
    inside fit), else a ridge probe on its embeddings fitted on the training rows."""
    from ..cache import TeacherCache
    from ..teachers import unembeddable_element

    teacher = model.teacher_
    train_s, test_s = task.structures(train), task.structures(test)
    # test rows with elements the teacher cannot embed are left out of its score (fit refuses them in training)
    tr = [i for i, s in enumerate(train_s) if s is not None]
    te = [i for i, s in enumerate(test_s) if s is not None and unembeddable_element(teacher, s) is None]
    out: dict[str, Any] = {
        "teacher_mae": None, "teacher_probe": None, "n_teacher_test": len(te), "test_embeddings": None,
    }
    if not te:
        return out
    y_test = task.targets(test)[te]
    with TeacherCache(cache_dir) as cache:
        test_emb = cache.embeddings(model.teacher_id_, [test_s[i] for i in te], teacher.transform)
        if hasattr(teacher, "predict") and not getattr(teacher, "checkpoint", None):
            pred, probe = teacher.predict([test_s[i] for i in te]), "teacher.predict"
        elif len(tr) >= 2:
            train_emb = cache.embeddings(model.teacher_id_, [train_s[i] for i in tr], teacher.transform)
            pred, probe = ridge_probe().fit(train_emb, task.targets(train)[tr]).predict(test_emb), "ridge on embeddings"
        else:
            return out
    full = np.full((len(test), test_emb.shape[1]), np.nan, dtype=np.float32)
    full[te] = test_emb
    out.update(teacher_mae=float(np.mean(np.abs(pred - y_test))), teacher_probe=probe, test_embeddings=full)
    return out


def _dask_worker() -> str | None:
    """Address of the Dask worker running this code, or None outside a Dask worker."""
    try:
        from distributed import get_worker

        return get_worker().address
    except (ImportError, ValueError):
        return None


def library_pretrain(
    library: str, n: int, seed: int, test_compositions: Any, data_dir: str | None = None
) -> tuple[list[Any], int]:
    """Step-1 structures of ``transfer``: up to ``n`` seeded library structures (0: all) whose reduced
    formula is not among the test rows', parsed; and how many library rows that exclusion removed."""
    test_formulas = {reduced_formula(c) for c in test_compositions}
    pretrain, n_excluded = load_structure_library(library, data_dir).sample(n, seed, exclude_formulas=test_formulas)
    return [parse_structure(s, i) for i, s in enumerate(pretrain)], n_excluded


@contextlib.contextmanager
def rows_named_in(task: Task, rows: np.ndarray) -> Iterator[None]:
    """The estimator names a bad row by its position in the data it was given: name the task's row
    and id instead (not for ``pretrain_structures``, whose rows are library rows)."""
    try:
        yield
    except ValueError as exc:
        message = str(exc)
        match = re.match(r"((?:structures: )?row )(\d+)", message)
        if match is None or int(match.group(2)) >= len(rows):
            raise
        row = int(rows[int(match.group(2))])
        located = f"task {task.name}, {match.group(1)}{row} (id {task.ids([row])[0]!r})"
        raise ValueError(located + message[match.end():]) from None


def partial_dir(path: Path) -> Path:
    """Where a run's fit keeps its training state until its result is written: a stopped run
    goes on from there (at most a minute lost) instead of from its first epoch."""
    return path.with_suffix(".partial")


def _fit_and_score(spec: RunSpec, config: BenchConfig, path: Path) -> dict[str, Any]:
    from .. import TSClassifier, TSRegressor, __version__

    start = time.perf_counter()
    task = _task(config, spec.task)
    train_all, test = task.split(spec.fold)
    if config.inner_validation:  # model selection: the test fold is set aside, unseen
        train_all, test = inner_split(train_all, config.inner_validation, task=task.name, fold=spec.fold)
    train = train_all[fraction_indices(len(train_all), spec.fraction, task=task.name, fold=spec.fold, seed=spec.seed)]
    kwargs = estimator_kwargs(config, spec.student, spec.teacher, spec.strategy, spec.seed, n_train=len(train))
    fit_kwargs: dict[str, Any] = {"resume_dir": partial_dir(path)}
    n_pretrain = n_excluded = 0
    if kwargs["teacher"] is not None:
        fit_kwargs["structures"] = task.structures(train)
        if spec.strategy == "transfer":
            pretrain, n_excluded = library_pretrain(str(config.pretrain_library), config.pretrain_max, spec.seed,
                                                    task.compositions(test), config.data_dir)
            fit_kwargs["pretrain_structures"], n_pretrain = pretrain, len(pretrain)
        elif spec.strategy == "transfer-fold":  # unlabelled structures of the whole training fold
            pretrain = [s for s in task.structures(train_all) if s is not None]
            fit_kwargs["pretrain_structures"], n_pretrain = pretrain, len(pretrain)
    y_train, y_test = task.targets(train), task.targets(test)
    classify = task.is_classification
    model = (TSClassifier if classify else TSRegressor)(**kwargs)
    fit_start = time.perf_counter()
    with rows_named_in(task, train):
        model.fit(task.compositions(train), task.labels(train) if classify else y_train, **fit_kwargs)
    fit_time = time.perf_counter() - fit_start
    y_std = None
    with rows_named_in(task, test):
        if classify:  # the probability of the positive label (True)
            y_pred = model.predict_proba(task.compositions(test))[:, list(model.classes_).index(True)]
        elif model.predicts_std:
            y_pred, y_std = model.predict(task.compositions(test), return_std=True)
        else:
            y_pred = model.predict(task.compositions(test))
    scores = (classification_scores(task.labels(test), y_pred) if classify
              else regression_scores(y_test, y_pred, y_train))
    pretrained = None
    if model.pretrained_id_ is not None:  # how many test materials the checkpoint's library held
        checkpoint = load_checkpoint(kwargs["pretrained"])
        n_seen = checkpoint.n_seen(task.compositions(test))
        pretrained = {"id": model.pretrained_id_, "n_test_formulas_seen": n_seen, "transductive": n_seen > 0,
                      "library": checkpoint.data["library"], "teacher_id": checkpoint.teacher_id}
    # the checkpoint's teacher taught the student even when this run has none (leak labels follow it)
    provenance_teacher = kwargs["teacher"] or (None if pretrained is None else checkpoint.data["teacher"])
    # the teacher probe reads the teacher's embeddings with a regression
    probe = {} if model.teacher_ is None or classify else _teacher_probe(model, task, train, test, config.cache_dir)
    if config.n_embed > 0:
        pos = sample_positions(len(test), config.n_embed, task=task.name, fold=spec.fold)
        arrays = dict(ids=np.array(task.ids(test[pos])), y_true=y_test[pos], y_pred=y_pred[pos],
                      student=model.transform(task.compositions(test[pos])))
        if probe.get("test_embeddings") is not None:
            arrays["teacher"] = probe["test_embeddings"][pos]
        atomic_save_npz(path.with_suffix(".npz"), **arrays)
    steps = [h["step"] for h in model.history_]
    earlier = list(model.seconds_resumed_.values())
    result = {
        "run_id": spec.run_id, "status": "done", **dataclasses.asdict(spec), "task": task.name, "kind": task.kind,
        **scores,
        "n_train": len(train), "n_train_fold": len(train_all), "n_test": len(test),
        "n_train_with_structure": sum(s is not None for s in fit_kwargs.get("structures", [])),
        "n_pretrain": n_pretrain, "n_pretrain_excluded_test_formulas": n_excluded, "pretrained": pretrained,
        "scored_on": (f"inner validation ({config.inner_validation:g} of the training fold)"
                      if config.inner_validation else "test fold"),
        "recipe": dataclasses.asdict(model.recipe_), "learning_rate": model.learning_rate_,  # the peak used
        "calibration": None if y_std is None else calibration(y_test, y_pred, y_std),
        "alpha": float(model.alpha_), "alpha_rule": model.alpha_rule_, "epochs_run": {s: steps.count(s) for s in dict.fromkeys(steps)},
        "epochs_resumed": model.epochs_resumed_,  # loaded from <run>.partial/, trained in earlier sittings
        "teacher_mae": probe.get("teacher_mae"), "teacher_probe": probe.get("teacher_probe"),
        "n_teacher_test": probe.get("n_teacher_test"),
        "teacher_info": {**teacher_provenance(provenance_teacher, task.name, kwargs["teacher_params"]),
                         "teacher_id": model.teacher_id_, "n_teacher_computed": model.n_teacher_computed_,
                         "structure_source": task.structure_source, "structure_match_rate": task.match_rate,
                         "pretrain_library": config.pretrain_library if n_pretrain else None},
        "params": estimator_kwargs(config, spec.student, spec.teacher, spec.strategy, spec.seed, jsonable=True,
                                   n_train=len(train)),
        "history": model.history_,
        # a resumed run's fit time adds the earlier sittings' training of the epochs it loaded (their lost
        # epochs since the last save are retrained in this one); unknown (None) when a state did not record it
        "fit_time_s": None if None in earlier else fit_time + sum(earlier), "fit_time_sitting_s": fit_time,
        "wall_time_s": time.perf_counter() - start,
        "device": str(config.device or "auto"), "host": platform.node(), "pid": os.getpid(),
        "dask_worker": _dask_worker(),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"), "matbench_ts_version": __version__,
        "source": task.source,
    }
    if config.save_predictions:
        result["predictions"] = {"ids": task.ids(test), "y_pred": y_pred, **({} if y_std is None else {"y_std": y_std})}
    return result


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"users": 0, "previous": None}


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with ``n`` torch intra-op threads (None: unchanged); the process-wide setting is
    restored when the last concurrent run (threaded Dask workers) leaves."""
    if not n:
        yield
        return
    import torch

    with _THREADS_LOCK:
        if _THREADS_STATE["users"] == 0:
            _THREADS_STATE["previous"] = torch.get_num_threads()
        _THREADS_STATE["users"] += 1
        torch.set_num_threads(n)
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["users"] -= 1
            if _THREADS_STATE["users"] == 0:
                torch.set_num_threads(_THREADS_STATE["previous"])


def execute_run(spec: RunSpec, config: BenchConfig) -> dict[str, Any]:
    """Run one grid point unless its result exists; write the result JSON atomically.

    Failures are caught and returned (``status="failed"``, with a ``.failed`` note beside the
    would-be result) so one bad run does not stop a grid; its rerun is attempted next time.
    """
    path = result_path(config, spec)
    if path.exists():
        return {"run_id": spec.run_id, "status": "skipped"}
    failed_note = path.with_suffix(".failed")
    try:
        with torch_threads(config.threads):
            result = _fit_and_score(spec, config, path)
    except Exception as exc:  # reported in the summary; the grid goes on
        error = f"{type(exc).__name__}: {exc}"
        path.parent.mkdir(parents=True, exist_ok=True)
        failed_note.write_text(traceback.format_exc())
        return {"run_id": spec.run_id, "status": "failed", "error": error}
    atomic_write_json(path, result)
    failed_note.unlink(missing_ok=True)
    shutil.rmtree(partial_dir(path), ignore_errors=True)  # the result is the run's state now
    return {"run_id": spec.run_id, "status": "done", "metric": result["metric"], "score": result[result["metric"]],
            "wall_time_s": result["wall_time_s"]}


# ----------------------------------------------------------------------------- the grid
def check_settings(config: BenchConfig) -> None:
    """Refuse estimator settings that every run would refuse (``--epochs -1``), and a missing step-1 library."""
    from ..estimator import TSRegressor

    for student in config.students:
        for strategy in config.strategies:
            for teacher in [None] if strategy in NO_TEACHER else config.teachers:
                kwargs = estimator_kwargs(config, student, teacher, strategy, config.seeds[0])
                try:
                    TSRegressor(**kwargs)._check_params()
                except ValueError as exc:
                    raise ValueError(f"{strategy} ({student}, teacher {teacher}): {exc}") from None
    if "transfer" in config.strategies:
        find_data_file(str(config.pretrain_library), config.data_dir, "pretrain library")


def check_grid(config: BenchConfig, tasks: dict[str, Task]) -> None:
    """Refuse, before any training, runs that cannot work (bad settings, missing folds, no teacher structures)."""
    check_settings(config)
    needs_structures = [s for s in config.strategies if s not in (*NO_TEACHER, "transfer")]
    for name, task in tasks.items():
        missing = sorted(set(config.folds) - set(task.folds))
        if missing:
            raise ValueError(f"task {name} has no fold(s) {missing} (folds: {task.folds})")
        if needs_structures and task.n_with_structure == 0:
            raise ValueError(
                f"task {name} has no structures for the teacher (strategies {needs_structures}): give a "
                "structure library for formula look-up (--structure-library, e.g. the mp2018 file)"
            )


def write_task_info(config: BenchConfig, tasks: dict[str, Task]) -> None:
    """``out/tasks/<task>.json``: sizes, structure coverage, composition floor, teacher provenance."""
    for task in tasks.values():
        info = task.info()
        info["teachers"] = {
            t: teacher_provenance(t, task.name, params_for(config.teacher_params, t)) for t in config.teachers
        }
        atomic_write_json(Path(config.out) / "tasks" / f"{task.name}.json", info)


class GridInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the grid; finished runs are kept, the next call resumes."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`GridInterrupted` in this thread, so joblib aborts the grid and
    ends its workers. By default SIGTERM ends only this process (the workers would run on), and a
    shell starts a background job (``bench ... &``) with SIGINT ignored."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def interrupt(signum: int, _frame: Any) -> None:
        raise GridInterrupted(signum)

    previous = {signum: signal.signal(signum, interrupt) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_grid(
    config: BenchConfig,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> GridSummary:
    """Run every missing run of ``config``'s grid; return what was done.

    ``on_result`` is called in this process after each finished run (progress hooks; an
    exception raised there stops the grid, as an interruption would). SIGINT or SIGTERM stops
    the grid with :class:`GridInterrupted` once its workers are ended.
    """
    tasks = {task_name_of(name): _task(config, name) for name in config.tasks}
    check_grid(config, tasks)
    prepare_out(config)  # only once everything checked: a refused setting must not bind --out
    write_task_info(config, tasks)
    specs = build_grid(config)
    pending = [s for s in specs if not result_path(config, s).exists()]
    summary = GridSummary(total=len(specs), skipped=len(specs) - len(pending))
    if not pending:
        return summary
    sequential = config.n_jobs == 1 and not config.scheduler
    run_config = dataclasses.replace(config, verbose=config.verbose if sequential else 0)
    with contextlib.ExitStack() as stack:
        stack.enter_context(stop_on_signals())  # entered first, left last: the workers are ended by then
        n_jobs = config.n_jobs
        if config.scheduler:
            from distributed import Client

            client = stack.enter_context(Client(config.scheduler))
            stack.enter_context(parallel_config(backend="dask"))
            n_jobs = -1
            if sum(client.nthreads().values()) == 1:
                warnings.warn(f"the Dask cluster at {config.scheduler} has a single worker thread: joblib then runs "
                              "the grid in this process, not on the cluster", stacklevel=2)
        results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(
            delayed(execute_run)(spec, run_config) for spec in pending
        )
        stack.callback(results.close)
        bar = stack.enter_context(tqdm(total=len(pending), desc="bench", unit="run", disable=config.verbose < 1))
        for result in results:
            summary.add(result)
            bar.update()
            bar.set_postfix_str(f"{result['run_id']}: {result.get('score', result.get('error', ''))}"[:80])
            if on_result is not None:
                on_result(result)
    return summary
