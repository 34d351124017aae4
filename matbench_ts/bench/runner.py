"""The benchmark grid: (task, fraction, strategy, student, teacher, fold, seed) runs of
:class:`~matbench_ts.TSRegressor`, each stored as one JSON file as soon as it finishes.

* **Resumable**: a run whose JSON exists is skipped; results are written atomically
  (temporary file + ``os.replace``), and a run in flight keeps its training state beside its
  would-be result (``<run>.partial/``), so an interrupted grid loses at most a minute of each.
* **Safe**: ``config.json`` in the output directory records the settings; a rerun with other
  model/data settings is refused (:class:`ConfigMismatchError`). Harmless fields
  (:data:`HARMLESS_FIELDS`) may change, and grid axes (:data:`GRID_FIELDS`) may be extended.
* **Parallel**: runs are dispatched with joblib (``n_jobs``), or onto a Dask cluster
  (``scheduler`` address) through joblib's Dask backend.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
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

from ..cache import atomic_write
from ..pretrained import load as load_checkpoint
from .data import (
    DATA_ENV,
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

#: Strategy -> what it changes in the estimator (see :func:`estimator_kwargs`).
STRATEGIES: dict[str, str] = {
    "baseline": "student alone (teacher=None)",
    "ts": "teacher-student: step 1 (embedding) then step 2 (target + embedding, alpha='auto')",
    "ts-no-step1": "step 2 only (epochs_step1=0)",
    "step1-only": "step 1, then a target-only fine-tune (alpha=0)",
    "transfer": "step 1 on a structure library (pretrain_structures), then step 2",
    "transfer-fold": "step 1 on every structure of the training fold (targets of rows outside the fraction "
                     "unused), then step 2",
    "pretrained": "start from a pretrained student (--pretrained) and fine-tune on the targets: formulas only",
    "pretrained-ts": "start from a pretrained student, then step 2 guided by the task's structures",
}
#: Strategies that train without a teacher.
NO_TEACHER = ("baseline", "pretrained")
#: Strategies that start from the ``--pretrained`` checkpoint.
PRETRAINED = ("pretrained", "pretrained-ts")
#: Library structures that ``transfer`` runs step 1 on by default (0 in a config: all of them).
PRETRAIN_MAX = 5000
STUDENTS = ("crabnet", "roost")
TEACHERS = ("chgnet", "alignn")
#: Config fields that may differ between runs into the same directory.
HARMLESS_FIELDS = ("n_jobs", "scheduler", "threads", "verbose", "cache_dir", "device", "out")
#: Grid axes: each result is keyed by them, so a rerun may add values.
GRID_FIELDS = ("tasks", "fractions", "strategies", "folds", "seeds", "students", "teachers")

_TINY_CRABNET = dict(d_model=32, N=1, heads=2, out_hidden=(64, 32), dim_feedforward=64)
_TINY_ROOST = dict(elem_fea_len=16, n_graph=1, elem_heads=1, cry_heads=1, trunk_hidden=(64,), out_hidden=(32,))
#: Presets: student and teacher sizes and training length. "gpu" = the published sizes. The student
#: trains with its own published recipe (``recipe="auto"``), which also sets the batch size.
#: ``published_sizes_up_to``: runs with at most this many training rows use the published student
#: sizes (small data needs them: a CPU-sized CrabNet stays near the mean predictor on
#: matbench_steels, see docs/results.md, parity), larger runs the profile's own.
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "student_params": {"crabnet": _TINY_CRABNET, "roost": _TINY_ROOST},
        "teacher_params": {
            "alignn": dict(alignn_layers=1, gcn_layers=1, hidden_features=32, embedding_features=16, epochs=5),
        },
        "estimator": dict(epochs=20, epochs_step1=10, batch_size=64, patience=10),
    },
    "cpu": {
        "student_params": {
            "crabnet": dict(d_model=128, N=2, heads=4, out_hidden=(256, 128, 64), dim_feedforward=256),
            "roost": dict(elem_fea_len=32, n_graph=2, trunk_hidden=(256,), out_hidden=(128, 64)),
        },
        "teacher_params": {
            "alignn": dict(alignn_layers=2, gcn_layers=2, hidden_features=64, embedding_features=32, epochs=30),
        },
        "estimator": dict(epochs=300, epochs_step1=100, patience=30),
        "published_sizes_up_to": 1000,
    },
    "gpu": {
        "student_params": {"crabnet": {}, "roost": {}},
        "teacher_params": {"alignn": dict(epochs=300)},
        "estimator": dict(epochs=300, epochs_step1=100, patience=30),
    },
}

#: Teacher provenance: what a pretrained teacher was trained on, and which tasks that leaks into.
TEACHER_PROVENANCE: dict[str, dict[str, Any]] = {
    "chgnet": {
        "pretrained_on": "Materials Project relaxation trajectories (MPtrj): energies, forces, stresses, magmoms",
        # MP-derived formation-energy tasks (matbench_mp_e_form, mp2018 e_form, the CI set...)
        "leaky_tasks": re.compile(r"(^|[_\-])mp\d*[_\-].*(e_?form|formation|energy)", re.IGNORECASE),
    },
}


class ConfigMismatchError(ValueError):
    """The output directory holds results of a different configuration."""


# ----------------------------------------------------------------------------- configuration
@dataclass
class BenchConfig:
    """Everything that defines a benchmark grid (saved as ``config.json`` in ``out``)."""

    out: str
    tasks: list[str]
    fractions: list[float] = field(default_factory=lambda: [1.0])
    strategies: list[str] = field(default_factory=lambda: ["baseline", "ts"])
    folds: list[int] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    seeds: list[int] = field(default_factory=lambda: [0])
    students: list[str] = field(default_factory=lambda: ["crabnet"])
    teachers: list[str] = field(default_factory=lambda: ["chgnet"])
    profile: str = "auto"
    student_params: dict[str, Any] | None = None  # overrides the preset (or {student: {...}})
    teacher_params: dict[str, Any] | None = None  # overrides the preset (or {teacher: {...}})
    estimator_params: dict[str, Any] = field(default_factory=dict)  # epochs, alpha, batch_size...
    data_dir: str | None = None
    source: str = "auto"
    structure_library: str | None = None  # formula look-up for rows without a structure
    pretrain_library: str | None = None  # step-1 data of "transfer" (default: structure_library)
    pretrain_max: int = PRETRAIN_MAX
    pretrained: str | None = None  # checkpoint of the "pretrained" strategies (shipped name or .pt path)
    save_predictions: bool = True
    n_embed: int = 500  # test rows whose student/teacher embeddings are saved (.npz)
    inner_validation: float = 0.0  # > 0: score on this share of each training fold, not on its test fold
    cache_dir: str | None = None
    device: str | None = None
    n_jobs: int = 1
    scheduler: str | None = None
    threads: int | None = None  # torch threads per run (None: leave torch's setting)
    verbose: int = 1

    def __post_init__(self) -> None:
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown:
            raise ValueError(f"unknown strategies {unknown}; choose from {list(STRATEGIES)}")
        if self.profile == "auto":
            import torch

            self.profile = "gpu" if torch.cuda.is_available() else "cpu"
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}; choose from {list(PROFILES)}")
        for f in self.fractions:
            if not 0 < f <= 1:
                raise ValueError(f"fractions must be in (0, 1], got {f}")
        self.fractions = sorted({float(f) for f in self.fractions})
        self.folds, self.seeds = [int(f) for f in self.folds], [int(s) for s in self.seeds]
        self.teachers = [t for t in self.teachers if t and str(t).lower() != "none"]
        for kind, names, known in (("student", self.students, STUDENTS), ("teacher", self.teachers, TEACHERS)):
            if not names and kind == "student" or any(n not in known for n in names):
                raise ValueError(f"unknown {kind}(s) {names}; choose from {list(known)}")
        if any(s not in NO_TEACHER for s in self.strategies) and not self.teachers:
            raise ValueError(f"strategies {self.strategies} need a teacher")
        if any(s in PRETRAINED for s in self.strategies) and not self.pretrained:
            raise ValueError(f"strategies {[s for s in self.strategies if s in PRETRAINED]} need a checkpoint "
                             "(--pretrained NAME|PATH)")
        self.pretrain_library = self.pretrain_library or self.structure_library
        if not 0 <= self.inner_validation < 1:
            raise ValueError(f"inner_validation must be in [0, 1), got {self.inner_validation}")
        if "transfer" in self.strategies:
            if not self.pretrain_library:
                raise ValueError(
                    "strategy 'transfer' needs a structure library (--pretrain-library or --structure-library)"
                )

    def to_dict(self) -> dict[str, Any]:
        """JSON form, with the resolved estimator settings of every (student, teacher)."""
        d = dataclasses.asdict(self)
        d["resolved"] = {
            f"{student}__{teacher}": estimator_kwargs(self, student, teacher, "ts", seed=0, jsonable=True)
            for student in self.students for teacher in (self.teachers or [None])
        }
        return _jsonable(d)


def _pick(params: dict[str, Any] | None, name: str) -> dict[str, Any]:
    """``params`` itself, or ``params[name]`` when keyed by model name."""
    params = dict(params or {})
    if params and all(isinstance(v, dict) for v in params.values()):
        return dict(params.get(name, {}))
    return params


def preset_student_params(profile: str, student: str, n_train: int | None = None) -> dict[str, Any]:
    """The profile's student sizes for a run with ``n_train`` rows (None: the profile's own)."""
    preset = PROFILES[profile]
    if n_train is not None and n_train <= preset.get("published_sizes_up_to", -1):
        return {}
    return dict(preset["student_params"].get(student, {}))


def estimator_kwargs(
    config: BenchConfig, student: str, teacher: str | None, strategy: str, seed: int, jsonable: bool = False,
    n_train: int | None = None,
) -> dict[str, Any]:
    """The :class:`~matbench_ts.TSRegressor` arguments of one run (strategy applied) with ``n_train``
    training rows (None: the profile's sizes for large data)."""
    preset = PROFILES[config.profile]
    kwargs: dict[str, Any] = dict(preset["estimator"])
    kwargs.update(config.estimator_params)
    student_params = {**preset_student_params(config.profile, student, n_train), **_pick(config.student_params, student)}
    kwargs.update(student=student, student_params=student_params or None, random_state=seed,
                  cache_dir=config.cache_dir, device=config.device, verbose=config.verbose)
    if strategy in PRETRAINED:  # the student and its sizes come from the checkpoint
        kwargs.update(pretrained=config.pretrained, student_params=None)
    else:  # a strategy means what it says, whatever the estimator's default
        kwargs["pretrained"] = None
    if strategy in NO_TEACHER or teacher is None:
        kwargs.update(teacher=None, teacher_params=None)
    else:
        teacher_params = {**preset["teacher_params"].get(teacher, {}), **_pick(config.teacher_params, teacher)}
        if teacher == "alignn":
            teacher_params.setdefault("random_state", seed)
            teacher_params.setdefault("device", config.device)
        kwargs.update(teacher=teacher, teacher_params=teacher_params or None)
    if strategy == "ts-no-step1":
        kwargs["epochs_step1"] = 0
    elif strategy == "step1-only":
        kwargs["alpha"] = 0.0
    if jsonable:
        for key in ("cache_dir", "device", "verbose", "random_state"):
            kwargs.pop(key)
        return _jsonable(kwargs)
    return kwargs


def teacher_provenance(teacher: str | None, task: str, teacher_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where the teacher's knowledge comes from, and whether it saw data outside the training fold."""
    if teacher is None:
        return {"teacher": None, "leaky": False, "leak_reason": "no teacher"}
    if teacher == "alignn":
        checkpoint = (teacher_params or {}).get("checkpoint")
        if checkpoint:
            return {"teacher": teacher, "pretrained_on": f"checkpoint {checkpoint}", "leaky": None,
                    "leak_reason": "unknown: pretrained checkpoint (check what it was trained on)"}
        return {"teacher": teacher, "pretrained_on": "training rows of the fold (trained inside fit)",
                "leaky": False, "leak_reason": "trained on the training fold only"}
    known = TEACHER_PROVENANCE.get(teacher)
    if known is None:
        return {"teacher": teacher, "pretrained_on": "unknown", "leaky": None, "leak_reason": "unknown teacher"}
    leaky = bool(known["leaky_tasks"].search(task_name_of(task)))
    reason = ("pretrained on Materials Project energies, which include this task's targets (test folds included)"
              if leaky else "pretrained targets differ from this task's target")
    return {"teacher": teacher, "pretrained_on": known["pretrained_on"], "leaky": leaky, "leak_reason": reason}


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


# ----------------------------------------------------------------------------- storage
def _jsonable(obj: Any) -> Any:
    """Plain JSON types (numpy scalars/arrays, tuples, Paths converted)."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON through :func:`matbench_ts.cache.atomic_write`, synced to disk before the rename."""
    def write(fh: Any) -> None:
        fh.write(json.dumps(_jsonable(data), indent=1).encode())
        fh.flush()
        os.fsync(fh.fileno())

    atomic_write(path, write, mode=0o644)


def atomic_save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` through :func:`matbench_ts.cache.atomic_write`."""
    atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays), mode=0o644)


#: Config fields that override the profile's presets.
PARAMS_FIELDS = ("student_params", "teacher_params", "estimator_params")


def _setting(key: str, value: Any) -> Any:
    """A saved setting as it acts: ``data_dir`` None means ``$MATBENCH_TS_DATA``."""
    if key == "data_dir":
        value = value or os.environ.get(DATA_ENV)
        return str(Path(value).resolve()) if value else None
    return value


def _effective_params(saved: dict[str, Any], key: str, other: dict[str, Any]) -> Any:
    """``saved[key]`` applied to the presets of ``saved``'s profile, for the models of both configs."""
    preset = PROFILES.get(saved.get("profile"), {})
    if key == "estimator_params":
        value = {**preset.get("estimator", {}), **(saved.get(key) or {})}
    else:
        kind = "students" if key == "student_params" else "teachers"
        names = dict.fromkeys([*saved.get(kind, []), *other.get(kind, [])])
        value = {n: {**preset.get(key, {}).get(n, {}), **_pick(saved.get(key), n)} for n in names}
    return json.loads(json.dumps(_jsonable(value)))


def prepare_out(config: BenchConfig) -> dict[str, Any]:
    """Create ``out`` and its ``config.json``; refuse a mismatching existing one.

    Returns the saved configuration (grid axes merged with the previous ones).
    """
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    new = json.loads(json.dumps(config.to_dict()))
    # settings bind an --out only once a run finished under them (a typo must not lock it)
    if path.exists() and any((out / "runs").rglob("*.json")):
        # A field missing from the saved file was added to BenchConfig later: its runs used the default.
        defaults = {f.name: f.default for f in dataclasses.fields(BenchConfig) if f.default is not dataclasses.MISSING}
        old = {**_jsonable(defaults), **json.loads(path.read_text())}
        ignored = set(HARMLESS_FIELDS) | set(GRID_FIELDS) | set(PARAMS_FIELDS) | {"matbench_ts_version", "resolved"}
        diffs = {k: (old.get(k), new.get(k)) for k in sorted(set(old) | set(new))
                 if k not in ignored and _setting(k, old.get(k)) != _setting(k, new.get(k))}
        if old.get("pretrained") is None:  # no run used a checkpoint yet: one may be named now
            diffs.pop("pretrained", None)
        for key in PARAMS_FIELDS:  # compared as the settings they give with the profile's presets
            a, b = _effective_params(old, key, new), _effective_params(new, key, old)
            if a != b:
                diffs[key] = (old.get(key), new.get(key))
        old_resolved, new_resolved = old.get("resolved", {}), new["resolved"]
        for pair in sorted(set(old_resolved) & set(new_resolved)):  # settings each model pair resolves to
            a, b = old_resolved[pair], new_resolved[pair]
            for key in sorted(set(a) | set(b)):
                if a.get(key) != b.get(key):
                    diffs[f"{pair}.{key}"] = (a.get(key), b.get(key))
        if diffs:
            lines = "\n".join(f"  {k}: saved {a!r}, now {b!r}" for k, (a, b) in diffs.items())
            raise ConfigMismatchError(
                f"{out} holds results of another configuration ({path}):\n{lines}\n"
                f"Use a new --out directory, or rerun with the saved settings. Only {', '.join(HARMLESS_FIELDS)} "
                f"may change, and the grid ({', '.join(GRID_FIELDS)}) may be extended."
            )
        for key in GRID_FIELDS:
            new[key] = list(dict.fromkeys([*old.get(key, []), *new[key]]))
        new["resolved"] = {**old_resolved, **new_resolved}
    from .. import __version__

    new["matbench_ts_version"] = __version__
    atomic_write_json(path, new)
    return new


# ----------------------------------------------------------------------------- one run
def result_path(config: BenchConfig, spec: RunSpec) -> Path:
    return Path(config.out) / spec.relpath


def _task(config: BenchConfig, name: str) -> Task:
    return load_task(name, config.data_dir, config.source, config.structure_library)


def ridge_probe() -> Any:
    """The linear read-out that stands for a frozen teacher's own MAE (reports, diagnostics)."""
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13)))


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


def calibration(y_true: np.ndarray, y_pred: np.ndarray, y_std: np.ndarray) -> dict[str, float]:
    """How well predicted standard deviations match the errors.

    ``spearman``: rank correlation of |error| with std; ``coverage_95``: share of rows within
    +-1.96 std (0.95 when calibrated); ``miscalibration_area``: mean |observed - expected| share
    inside the central Gaussian intervals over 99 confidence levels (0 when calibrated).
    """
    from scipy.stats import norm, spearmanr

    err = np.abs(np.asarray(y_pred) - np.asarray(y_true))
    z = err / np.maximum(np.asarray(y_std), 1e-12)
    levels = np.linspace(0.01, 0.99, 99)
    observed = np.array([np.mean(z <= norm.ppf(0.5 + p / 2)) for p in levels])
    return {"spearman": float(spearmanr(err, y_std).statistic), "coverage_95": float(np.mean(z <= 1.96)),
            "miscalibration_area": float(np.mean(np.abs(observed - levels))), "mean_std": float(np.mean(y_std))}


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


def regression_scores(y_true: np.ndarray, y_pred: np.ndarray, y_train: np.ndarray) -> dict[str, Any]:
    """MAE (Matbench's regression metric), RMSE and the MAE of the training mean."""
    err = y_pred - y_true
    return {"metric": "mae", "mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "dummy_mae": float(np.mean(np.abs(y_true - y_train.mean())))}


def classification_scores(labels: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    """ROC-AUC from probabilities (Matbench's classification metric), and accuracy, F1 and balanced
    accuracy of the labels at probability 0.5."""
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

    predicted = proba > 0.5
    return {"metric": "roc_auc", "roc_auc": float(roc_auc_score(labels, proba)),
            "accuracy": float(accuracy_score(labels, predicted)), "f1": float(f1_score(labels, predicted)),
            "balanced_accuracy": float(balanced_accuracy_score(labels, predicted))}


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
    result = {
        "run_id": spec.run_id, "status": "done", **dataclasses.asdict(spec), "task": task.name, "kind": task.kind,
        **scores,
        "n_train": len(train), "n_train_fold": len(train_all), "n_test": len(test),
        "n_train_with_structure": sum(s is not None for s in fit_kwargs.get("structures", [])),
        "n_pretrain": n_pretrain, "n_pretrain_excluded_test_formulas": n_excluded, "pretrained": pretrained,
        "scored_on": (f"inner validation ({config.inner_validation:g} of the training fold)"
                      if config.inner_validation else "test fold"),
        "recipe": dataclasses.asdict(model.recipe_), "calibration": None if y_std is None else calibration(y_test, y_pred, y_std),
        "alpha": float(model.alpha_), "alpha_rule": model.alpha_rule_, "epochs_run": {s: steps.count(s) for s in dict.fromkeys(steps)},
        "epochs_resumed": model.epochs_resumed_,  # loaded from <run>.partial/: fit_time_s is this sitting's
        "teacher_mae": probe.get("teacher_mae"), "teacher_probe": probe.get("teacher_probe"),
        "n_teacher_test": probe.get("n_teacher_test"),
        "teacher_info": {**teacher_provenance(provenance_teacher, task.name, kwargs["teacher_params"]),
                         "teacher_id": model.teacher_id_, "n_teacher_computed": model.n_teacher_computed_,
                         "structure_source": task.structure_source, "structure_match_rate": task.match_rate,
                         "pretrain_library": config.pretrain_library if n_pretrain else None},
        "params": estimator_kwargs(config, spec.student, spec.teacher, spec.strategy, spec.seed, jsonable=True,
                                   n_train=len(train)),
        "history": model.history_,
        "fit_time_s": fit_time, "wall_time_s": time.perf_counter() - start,
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
            t: teacher_provenance(t, task.name, _pick(config.teacher_params, t)) for t in config.teachers
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
