"""Benchmark data: tasks from local files or the official ``matbench`` package, teacher
structures by formula look-up, nested training fractions and the composition floor.

A task is a table with columns ``id, composition, target, fold`` and optionally
``structure`` (CIF strings or pymatgen Structures), ``fold`` being the official test fold
(0-4) of each row: a run on fold ``k`` trains on the rows of the other folds.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import Composition, Structure

from ..inputs import parse_structure

#: Environment variable naming the data directory (a folder of task files, or the root of
#: the shared data with ``matbench_proxy/``, ``ci/``... inside).
DATA_ENV = "MATBENCH_TS_DATA"
TASK_SUFFIXES = (".jsonl.gz", ".jsonl", ".json.gz", ".json", ".csv.gz", ".csv", ".parquet")
TASK_SUBDIRS = ("", "matbench_proxy", "ci", "tasks", "mp2018")
REQUIRED_COLUMNS = ("id", "composition", "target", "fold")
#: Library columns ranked as "energy" when choosing among polymorphs (lowest wins).
ENERGY_COLUMNS = ("e_form", "formation_energy_per_atom", "energy_per_atom", "e_above_hull", "target")
#: Tasks made from the MP 2018 file (one file, two targets): task name -> target column.
MP2018_TASKS = {"mp2018_e_form": "e_form", "mp2018_band_gap": "band_gap", "mp2018_is_metal": "band_gap"}
#: mp2018 classification tasks: the column's value -> label 1.0 (metal: PBE band gap 0) or 0.0.
MP2018_CLASSIFICATION = {"mp2018_is_metal": lambda gap: np.where(np.isfinite(gap), (gap == 0).astype(float), np.nan)}
MP2018_FILE = "mp2018_eform_gap"


# ----------------------------------------------------------------------------- helpers
@lru_cache(maxsize=None)
def _reduced_formula_of(formula: str) -> str | None:
    try:
        return Composition(formula).reduced_formula
    except Exception:  # unparsable formula: it simply matches nothing
        return None


def reduced_formula(item: Any) -> str | None:
    """Reduced formula of a formula string, Composition or Structure (None if unparsable)."""
    if isinstance(item, Structure):
        return item.composition.reduced_formula
    if isinstance(item, Composition):
        return item.reduced_formula
    return _reduced_formula_of(str(item))


def task_name_of(path: str | Path) -> str:
    """``/x/mp_e_form_300.jsonl.gz`` -> ``mp_e_form_300``."""
    name = Path(path).name
    for suffix in TASK_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def read_table(path: str | Path) -> pd.DataFrame:
    """Read a JSON-lines, CSV or Parquet table (optionally gzip-compressed)."""
    if not Path(path).is_file():  # pandas would read a missing path as JSON text ("Expected object or value")
        raise FileNotFoundError(f"no such file: {path}")
    path = str(path)
    if path.endswith((".jsonl", ".jsonl.gz")):
        return pd.read_json(path, lines=True)
    if path.endswith((".json", ".json.gz")):
        try:
            return pd.read_json(path, lines=True)
        except ValueError:
            return pd.read_json(path)
    if path.endswith((".csv", ".csv.gz")):
        return pd.read_csv(path)
    if path.endswith(".parquet"):
        return pd.read_parquet(path)
    raise ValueError(f"unsupported table format: {path} (use .jsonl[.gz], .json[.gz], .csv[.gz] or .parquet)")


def data_dirs(data_dir: str | Path | None = None) -> list[Path]:
    """Directories searched for task files: ``data_dir``, then ``$MATBENCH_TS_DATA``."""
    dirs = [Path(d) for d in (data_dir, os.environ.get(DATA_ENV)) if d]
    return list(dict.fromkeys(dirs))


def searched_dirs(data_dir: str | Path | None = None) -> list[str]:
    """The searched data directories, for not-found messages."""
    return [str(d) for d in data_dirs(data_dir)] or ["(no --data-dir and no $MATBENCH_TS_DATA)"]


def find_task_file(name: str, data_dir: str | Path | None = None) -> Path | None:
    """The file of task ``name``: ``name`` itself when it is a file, else
    ``<dir>[/matbench_proxy|/ci|...]/<name>[<suffix>]``."""
    if Path(name).is_file():
        return Path(name)
    if Path(name).is_absolute():
        return None
    for directory in data_dirs(data_dir):
        for sub in TASK_SUBDIRS:
            for suffix in ("", *TASK_SUFFIXES):
                candidate = directory / sub / f"{name}{suffix}"
                if candidate.is_file():
                    return candidate
    return None


def find_data_file(name: str | Path, data_dir: str | Path | None = None, what: str = "file") -> Path:
    """Like :func:`find_task_file` (a path, or a name under the data directories), but a missing
    file raises FileNotFoundError naming it and where it was looked for."""
    path = find_task_file(str(name), data_dir)
    if path is None:
        where = "" if Path(name).is_absolute() else f" (nor under {searched_dirs(data_dir)} or their {TASK_SUBDIRS[1:]})"
        raise FileNotFoundError(f"{what} {name}: no such file{where}")
    return path


# ----------------------------------------------------------------------------- structure library
@dataclass
class StructureLibrary:
    """Structures without targets, indexed by reduced formula (teacher look-up, step-1 data)."""

    path: str
    formulas: list[str | None]
    structures: list[Any]  # CIF strings or Structures
    energy_column: str | None
    best: dict[str, int]  # reduced formula -> row of its lowest-energy (or first) structure

    def __len__(self) -> int:
        return len(self.structures)

    def lookup(self, compositions: Iterable[Any]) -> list[Any]:
        """The library structure of each composition's reduced formula, or None."""
        out = []
        for comp in compositions:
            row = self.best.get(reduced_formula(comp))
            out.append(None if row is None else self.structures[row])
        return out

    def sample(self, n: int, seed: int, exclude_formulas: Iterable[str] = ()) -> tuple[list[Any], int]:
        """Up to ``n`` seeded random library structures whose formula is not excluded.

        Returns ``(structures, n_excluded)``; used as step-1 (transfer) data.
        """
        excluded = set(exclude_formulas)
        keep = np.array([f is not None and f not in excluded for f in self.formulas])
        rows = np.flatnonzero(keep)
        rng = np.random.default_rng([seed, 7919])
        if n and len(rows) > n:
            rows = np.sort(rng.choice(rows, size=n, replace=False))
        return [self.structures[i] for i in rows], int((~keep).sum())


@lru_cache(maxsize=4)
def load_structure_library(path: str, data_dir: str | None = None) -> StructureLibrary:
    """Read a structure library (``composition`` and ``structure`` columns, e.g. the mp2018
    file or a matbench_proxy task file); per formula keep the structure with the lowest
    ``e_form`` (or other energy column, see :data:`ENERGY_COLUMNS`), else the first.
    ``path`` may also be a file name under the data directories (``mp2018_eform_gap.jsonl.gz``)."""
    path = str(find_data_file(path, data_dir, "structure library"))
    frame = read_table(path)
    if "structure" not in frame.columns:
        raise ValueError(f"structure library {path} has no 'structure' column")
    if "composition" in frame.columns:
        formulas = [reduced_formula(c) for c in frame["composition"]]
    else:
        formulas = [parse_structure(s, i).composition.reduced_formula for i, s in enumerate(frame["structure"])]
    energy_column = next((c for c in ENERGY_COLUMNS if c in frame.columns), None)
    order = np.arange(len(frame))
    if energy_column is not None:
        energy = pd.to_numeric(frame[energy_column], errors="coerce").to_numpy(dtype=float)
        order = np.lexsort((order, np.where(np.isnan(energy), np.inf, energy)))
    best: dict[str, int] = {}
    for row in order:
        formula = formulas[row]
        if formula is not None and formula not in best:
            best[formula] = int(row)
    return StructureLibrary(str(path), formulas, frame["structure"].tolist(), energy_column, best)


# ----------------------------------------------------------------------------- tasks
@dataclass
class Task:
    """One task: rows with official test folds, and structures where known. Classification
    tasks hold their labels as 1.0 / 0.0 in ``target`` (Matbench's True / False)."""

    name: str
    frame: pd.DataFrame  # id, composition (str), target (float), fold (int), structure (object or None)
    source: str  # "file:<path>" or "matbench:<benchmark>"
    input_type: str  # "structure" or "composition" (what the task itself gives)
    structure_source: str = "task"  # "task", "none", "library:<path>", "task+library:<path>"
    match_rate: float | None = None  # share of structure-less rows found in the library
    kind: str = "regression"  # or "classification"
    _parsed: dict[int, Structure | None] = field(default_factory=dict, repr=False, compare=False)

    @property
    def folds(self) -> list[int]:
        return sorted(int(f) for f in self.frame["fold"].unique())

    @property
    def n_with_structure(self) -> int:
        return int(self.frame["structure"].notna().sum())

    def split(self, fold: int) -> tuple[np.ndarray, np.ndarray]:
        """Row positions ``(train, test)`` of an official fold (test = rows of that fold)."""
        if fold not in self.folds:
            raise ValueError(f"task {self.name} has no fold {fold} (folds: {self.folds})")
        is_test = self.frame["fold"].to_numpy() == fold
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)

    def compositions(self, rows: Sequence[int]) -> list[str]:
        return self.frame["composition"].to_numpy()[np.asarray(rows, dtype=int)].tolist()

    def targets(self, rows: Sequence[int]) -> np.ndarray:
        return self.frame["target"].to_numpy(dtype=float)[np.asarray(rows, dtype=int)]

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def labels(self, rows: Sequence[int]) -> np.ndarray:
        """Boolean labels of a classification task."""
        return self.targets(rows) > 0.5

    def ids(self, rows: Sequence[int]) -> list[str]:
        return self.frame["id"].to_numpy()[np.asarray(rows, dtype=int)].tolist()

    def structures(self, rows: Sequence[int]) -> list[Structure | None]:
        """Parsed structures of ``rows`` (None where unknown); parsed once per process."""
        column = self.frame["structure"].to_numpy()
        out = []
        for row in np.asarray(rows, dtype=int):
            if row not in self._parsed:
                try:
                    self._parsed[row] = parse_structure(column[row], row)
                except ValueError as exc:
                    raise ValueError(f"task {self.name}, column 'structure', {exc} (id {self.ids([row])[0]!r}, "
                                     f"{self.source})") from None
            out.append(self._parsed[row])
        return out

    def info(self) -> dict[str, Any]:
        """JSON-able summary: sizes, structure coverage, composition floor."""
        target = self.frame["target"].to_numpy(dtype=float)
        return {
            "task": self.name,
            "kind": self.kind,
            "source": self.source,
            "input_type": self.input_type,
            "n_rows": len(self.frame),
            "fold_sizes": {str(k): int(v) for k, v in self.frame["fold"].value_counts().sort_index().items()},
            "structure_source": self.structure_source,
            "n_with_structure": self.n_with_structure,
            "structure_match_rate": self.match_rate,
            "composition_floor": composition_floor(self.frame["composition"], target),
            "target_mean": float(target.mean()),
            "target_std": float(target.std()),
            "target_mad": float(np.mean(np.abs(target - target.mean()))),
        }


def _refuse_rows(path: str | Path, frame: pd.DataFrame, column: str, bad: np.ndarray, problem: str) -> None:
    """Raise ValueError naming the file, column, first bad row (position in the table) and its id."""
    rows = np.flatnonzero(bad)
    if len(rows):
        row, value = rows[0], frame[column].iat[rows[0]]
        value = value.item() if isinstance(value, np.generic) else value  # 5, not np.int64(5)
        raise ValueError(f"task file {path}, column {column!r}, row {row} (id {frame['id'].iat[row]!r}): {problem}, "
                         f"got {value!r} ({len(rows)} such rows)")


def _checked_columns(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``id`` (str, unique), ``composition`` (str), ``target`` (finite float) and ``fold`` (int 0-4), or
    a ValueError naming the file, column, row and id of the first bad value."""
    if frame["id"].isna().any():
        row = int(np.flatnonzero(frame["id"].isna())[0])
        raise ValueError(f"task file {path}, column 'id', row {row}: missing id")
    frame["id"] = frame["id"].astype(str)
    _refuse_rows(path, frame, "id", frame["id"].duplicated(keep="first").to_numpy(), "duplicate id")
    _refuse_rows(path, frame, "composition", frame["composition"].isna().to_numpy(), "missing composition")
    frame["composition"] = [c.formula if isinstance(c, Composition) else str(c) for c in frame["composition"]]
    target = pd.to_numeric(frame["target"], errors="coerce").to_numpy(dtype=float)
    _refuse_rows(path, frame, "target", ~np.isfinite(target), "the target must be a finite number")
    fold = pd.to_numeric(frame["fold"], errors="coerce").to_numpy(dtype=float)
    # fractional, missing or out-of-range folds would be truncated or silently become a fold of their own
    _refuse_rows(path, frame, "fold", ~np.isin(fold, np.arange(5)), "the fold must be an integer 0-4")
    frame["target"], frame["fold"] = target, fold.astype(int)
    return frame


def task_kind(name: str, target: pd.Series) -> str:
    """``"classification"`` for a Matbench classification dataset's name or boolean targets (JSON true/false,
    CSV True/False), else ``"regression"``: a local copy of a Matbench task is scored as Matbench scores it."""
    from matbench.metadata import mbv01_metadata

    if name in mbv01_metadata:
        return mbv01_metadata[name].task_type
    labels = target.dropna()  # a missing label is refused by the checks that follow
    is_bool = pd.api.types.is_bool_dtype(labels) or (len(labels) > 0 and labels.map(type).eq(bool).all())
    return "classification" if is_bool else "regression"


def load_local_task(path: str | Path, name: str | None = None) -> Task:
    """A task from a table with columns ``id, composition, target, fold[, structure]``; classification when
    :func:`task_kind` says so (labels True/False or 1/0)."""
    frame = read_table(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"task file {path} lacks column(s) {missing}; need {list(REQUIRED_COLUMNS)} [+ structure]")
    name = name or task_name_of(path)
    kind = task_kind(name, frame["target"])
    has_structure = "structure" in frame.columns
    frame = frame[[*REQUIRED_COLUMNS, *(["structure"] if has_structure else [])]].reset_index(drop=True)
    frame = _checked_columns(frame, path)
    if kind == "classification":
        _refuse_rows(path, frame, "target", ~np.isin(frame["target"], [0.0, 1.0]),
                     "a classification label must be true/false (or 1/0)")
    if not has_structure:
        frame["structure"] = None
    frame["structure"] = frame["structure"].astype(object).where(frame["structure"].notna(), None)
    return Task(
        name, frame, f"file:{Path(path).resolve()}",
        "structure" if has_structure else "composition", "task" if has_structure else "none", kind=kind,
    )


def is_matbench_dataset(name: str) -> bool:
    """Whether ``name`` is a dataset of Matbench v0.1 (the official ``matbench`` package)."""
    from matbench.metadata import mbv01_metadata

    return name in mbv01_metadata


def load_matbench_task(name: str, benchmark: str = "matbench_v0.1") -> Task:
    """A task through the official ``matbench`` package: official rows and folds (it downloads
    the data, or reads ``$MATMINER_DATA`` offline). Classification labels become 1.0 / 0.0."""
    from matbench.bench import MatbenchBenchmark

    if not is_matbench_dataset(name):
        raise ValueError(f"{name!r} is not a Matbench v0.1 dataset")

    mb = MatbenchBenchmark(benchmark=benchmark, subset=[name], autoload=False)
    mb_task = next(iter(mb.tasks))
    kind = mb_task.metadata.task_type
    mb_task.load()
    input_col, target_col = mb_task.metadata.input_type, mb_task.metadata.target
    parts = []
    for fold in mb_task.folds:
        test = mb_task.get_test_data(fold, as_type="df", include_target=True)
        inputs = test[input_col].tolist()
        is_structure = input_col == "structure"
        parts.append(pd.DataFrame({
            "id": test.index.astype(str),
            "composition": [s.composition.formula if is_structure else str(s) for s in inputs],
            "target": test[target_col].to_numpy(dtype=float),
            "fold": int(fold),
            "structure": inputs if is_structure else [None] * len(inputs),
        }))
    frame = pd.concat(parts, ignore_index=True)
    return Task(name, frame, f"matbench:{benchmark}", input_col, "task" if input_col == "structure" else "none",
                kind=kind)


def attach_library(task: Task, library: StructureLibrary) -> Task:
    """Fill structure-less rows by reduced-formula look-up in ``library``; record the match rate."""
    missing = task.frame["structure"].isna().to_numpy()
    if not missing.any():
        return task
    found = library.lookup(task.frame.loc[missing, "composition"])
    frame = task.frame.copy()
    frame.loc[missing, "structure"] = pd.Series(found, index=frame.index[missing], dtype=object)
    frame["structure"] = frame["structure"].astype(object).where(frame["structure"].notna(), None)
    n_found = sum(s is not None for s in found)
    source = f"library:{library.path}" if missing.all() else f"task+library:{library.path}"
    return Task(task.name, frame, task.source, task.input_type, source, n_found / int(missing.sum()), kind=task.kind)


def load_mp2018_task(name: str, data_dir: str | Path | None = None) -> Task:
    """``mp2018_e_form``, ``mp2018_band_gap`` or ``mp2018_is_metal`` (PBE gap 0) from ``mp2018_eform_gap.jsonl.gz``.

    The file has no folds: rows get one seeded assignment to five folds of 20 %, the same for
    every target, so fold 0 is *the* fixed seeded 80/20 split and folds 1-4 are its repeats.
    """
    path = find_task_file(MP2018_FILE, data_dir)
    if path is None:
        raise FileNotFoundError(f"no {MP2018_FILE} file for task {name!r}; searched {searched_dirs(data_dir)}")
    raw = read_table(path)
    values = pd.to_numeric(raw[MP2018_TASKS[name]], errors="raise").astype(float)
    frame = pd.DataFrame({
        "id": raw["id"].astype(str), "composition": raw["composition"].astype(str),
        "target": MP2018_CLASSIFICATION[name](values) if name in MP2018_CLASSIFICATION else values,
        "fold": np.random.default_rng(_seed(0, MP2018_FILE)).permutation(len(raw)) % 5,
        "structure": raw["structure"].astype(object),
    })
    frame = frame[np.isfinite(frame["target"])].reset_index(drop=True)
    return Task(name, frame, f"file:{Path(path).resolve()}", "structure", "task",
                kind="classification" if name in MP2018_CLASSIFICATION else "regression")


@lru_cache(maxsize=8)
def load_task(
    name: str,
    data_dir: str | None = None,
    source: str = "auto",
    structure_library: str | None = None,
) -> Task:
    """Load task ``name`` (cached per process).

    ``source``: ``"local"`` (a file path, or ``<name>.jsonl.gz`` under ``data_dir`` or
    ``$MATBENCH_TS_DATA``, also in their ``matbench_proxy/`` and ``ci/`` folders), ``"matbench"``
    (the official package) or ``"auto"`` (local when such a file exists, else official).
    ``structure_library`` fills rows without a structure by reduced-formula look-up.
    """
    if source not in ("auto", "local", "matbench"):
        raise ValueError(f"source must be 'auto', 'local' or 'matbench', got {source!r}")
    path = find_task_file(name, data_dir) if source != "matbench" else None
    if path is None and name in MP2018_TASKS:
        task = load_mp2018_task(name, data_dir)
    elif path is not None:
        task = load_local_task(path, task_name_of(name) if Path(name).is_file() else name)
    elif source == "local" or not is_matbench_dataset(name):
        also = "" if source == "local" else ", and it is not a Matbench v0.1 dataset"
        raise FileNotFoundError(
            f"no local file for task {name!r}; searched {searched_dirs(data_dir)} (and {TASK_SUBDIRS[1:]} inside){also}"
        )
    else:
        task = load_matbench_task(name)
    if structure_library:
        task = attach_library(task, load_structure_library(str(structure_library), data_dir))
    return task


# ----------------------------------------------------------------------------- fractions, floor
def _seed(*parts: int | str) -> list[int]:
    return [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]


def fraction_indices(n: int, fraction: float, *, task: str, fold: int, seed: int) -> np.ndarray:
    """Positions (sorted) of the ``ceil(fraction * n)`` training rows kept for a run.

    One seeded permutation per (task, fold, seed), cut at its first ``ceil(fraction * n)``
    rows, so smaller fractions are nested inside larger ones.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    perm = np.random.default_rng(_seed(seed, fold, task)).permutation(n)
    k = min(n, max(1, math.ceil(fraction * n - 1e-9)))
    return np.sort(perm[:k])


def inner_split(train: np.ndarray, share: float, *, task: str, fold: int) -> tuple[np.ndarray, np.ndarray]:
    """``(inner_train, inner_validation)`` rows of a training fold: a seeded ``share`` of it held out
    for model selection, so choices are made without the fold's test rows. Fixed per (task, fold)."""
    if not 0 < share < 1:
        raise ValueError(f"inner validation share must be in (0, 1), got {share}")
    perm = np.random.default_rng(_seed(fold, task, "inner")).permutation(len(train))
    k = max(1, round(share * len(train)))
    return np.sort(train[perm[k:]]), np.sort(train[perm[:k]])


def sample_positions(n: int, size: int, *, task: str, fold: int) -> np.ndarray:
    """A fixed sample (sorted) of up to ``size`` of ``n`` test rows, the same for every run of a fold."""
    if size <= 0:
        return np.arange(0)
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(_seed(fold, task, "sample")).choice(n, size=size, replace=False))


def composition_floor(compositions: Iterable[Any], targets: Sequence[float]) -> float:
    """MAE of predicting each row by the median target of its reduced formula (over the given rows).

    No composition-only model can beat it on rows whose formula repeats with different targets
    (polymorphs); 0 when every formula is unique.
    """
    frame = pd.DataFrame({"formula": [reduced_formula(c) or str(c) for c in compositions],
                          "target": np.asarray(targets, dtype=float)})
    median = frame.groupby("formula")["target"].transform("median")
    return float(np.mean(np.abs(frame["target"] - median)))
