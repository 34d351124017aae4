"""Benchmark harness: "does the teacher help on my task, and by how much?".

* :mod:`.data` loads tasks (local ``id, composition, target, fold[, structure]`` files or the
  official ``matbench`` package), looks teacher structures up by formula, subsamples training
  folds and computes the composition floor;
* :mod:`.config` holds a grid's settings (strategies, profiles, :class:`BenchConfig`) and each run's
  estimator arguments;
* :mod:`.runner` runs the (task, fraction, strategy, student, teacher, fold, seed) grid through
  :class:`~matbench_ts.TSRegressor`, one resumable JSON result per run, with joblib or Dask;
* :mod:`.scores` scores a run (MAE or ROC-AUC and companions, calibration, the teacher's ridge probe);
* :mod:`.report` turns a run directory into tables, plots and t-SNE maps;
* :mod:`.submit` produces a Matbench leaderboard submission (``results.json.gz`` + ``info.json``).

The command line front end is :mod:`matbench_ts.cli` (``matbench-ts bench|report|submit``).
"""

from .data import Task, composition_floor, fraction_indices, load_structure_library, load_task
from .config import STRATEGIES, BenchConfig, ConfigMismatchError
from .runner import GridSummary, RunSpec, build_grid, run_grid

__all__ = [
    "STRATEGIES",
    "BenchConfig",
    "ConfigMismatchError",
    "GridSummary",
    "RunSpec",
    "Task",
    "build_grid",
    "composition_floor",
    "fraction_indices",
    "load_structure_library",
    "load_task",
    "run_grid",
]
