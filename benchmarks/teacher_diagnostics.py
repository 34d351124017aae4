"""What can a composition-only student learn from the teacher? A diagnostic per task.

For each task and training fraction (official folds, the harness's nested fractions), ridge probes
on the frozen CHGNet embeddings (read from the teacher cache: run ``matbench-ts embed`` first):

* ``probe_structure``: ridge on each row's own teacher embedding (the teacher's MAE in the reports);
* ``probe_structure_kernel`` / ``probe_formula_mean_kernel``: the same with an RBF kernel ridge
  (alpha and gamma chosen by 5-fold CV on the training rows), a stronger read-out of what the frozen
  teacher knows; only up to ``--kernel-max-train`` training rows (cubic cost), else empty;
* ``probe_formula_mean``: ridge on the mean teacher embedding of the row's reduced formula (over all
  rows of the task). This is the most a student could take from the teacher: a composition model
  can only map a formula to one embedding, so polymorph-specific knowledge is out of its reach.
  (An upper bound for a diagnosis, not a result: the mean includes test rows' structures.)
* ``composition_floor``: MAE of the median target per reduced formula over all rows of the task (as
  in the reports: test rows are a sample of all rows, and a polymorph's twin is often in another fold);
* ``dummy``: MAE of the training mean;
* ``emb_variance_formula``: share of the (standardised) teacher embedding's variance that lies between
  formulas, i.e. that a composition model can fit at all; the rest is polymorph-to-polymorph variance.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/teacher_diagnostics.py \\
        --tasks matbench_log_gvrh,matbench_perovskites,matbench_dielectric,matbench_phonons,matbench_jdft2d \\
        --out benchmarks/results/teacher_diagnostics.csv
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from matbench_ts.bench.data import composition_floor, fraction_indices, load_task, reduced_formula
from matbench_ts.bench.scores import ridge_probe
from matbench_ts.cache import TeacherCache
from matbench_ts.teachers.chgnet import CHGNetTeacher


def kernel_probe() -> GridSearchCV:
    """RBF kernel ridge on standardised embeddings, regularisation and width chosen by 5-fold CV."""
    return GridSearchCV(make_pipeline(StandardScaler(), KernelRidge(kernel="rbf")),
                        {"kernelridge__alpha": np.logspace(-3, 0, 4), "kernelridge__gamma": np.logspace(-4, -1, 7)},
                        cv=5, scoring="neg_mean_absolute_error")


def probe_mae(probe, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> float:
    return float(np.mean(np.abs(probe().fit(x_train, y_train).predict(x_test) - y_test)))


def diagnose(task_name: str, fractions: list[float], folds: list[int], data_dir: str | None,
             kernel_max_train: int) -> list[dict]:
    task = load_task(task_name, data_dir)
    rows_with = np.flatnonzero(task.frame["structure"].notna().to_numpy())
    teacher = CHGNetTeacher()
    with TeacherCache() as cache:
        emb = cache.embeddings(teacher.cache_id(), task.structures(rows_with), teacher.fit([]).transform)
    formulas = pd.Series([reduced_formula(c) for c in task.compositions(rows_with)])
    mean_emb = pd.DataFrame(emb).groupby(formulas.to_numpy()).transform("mean").to_numpy()
    y = task.targets(rows_with)
    fold_of = task.frame["fold"].to_numpy()[rows_with]
    floor = composition_floor(task.frame["composition"], task.frame["target"])
    std = emb.std(axis=0)
    z = (emb - emb.mean(axis=0)) / np.where(std > 1e-8, std, 1.0)
    z_mean = pd.DataFrame(z).groupby(formulas.to_numpy()).transform("mean").to_numpy()
    between = float(np.sum(z_mean**2) / np.sum(z**2))
    out = []
    for fold in folds:
        train_all, test = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
        for fraction in fractions:
            train = train_all[fraction_indices(len(train_all), fraction, task=task.name, fold=fold, seed=0)]
            kernel = len(train) <= kernel_max_train
            out.append(dict(
                task=task.name, fold=fold, fraction=fraction, n_train=len(train),
                probe_structure=probe_mae(ridge_probe, emb[train], y[train], emb[test], y[test]),
                probe_formula_mean=probe_mae(ridge_probe, mean_emb[train], y[train], mean_emb[test], y[test]),
                probe_structure_kernel=probe_mae(kernel_probe, emb[train], y[train], emb[test], y[test])
                if kernel else np.nan,
                probe_formula_mean_kernel=probe_mae(kernel_probe, mean_emb[train], y[train], mean_emb[test], y[test])
                if kernel else np.nan,
                composition_floor=floor,
                dummy=float(np.mean(np.abs(y[test] - y[train].mean()))), emb_variance_formula=between,
            ))
            print(out[-1], flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", required=True)
    parser.add_argument("--fractions", default="0.05,0.25,1")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--data-dir")
    parser.add_argument("--kernel-max-train", type=int, default=2000, help="largest training set for kernel probes")
    parser.add_argument("--out", default="benchmarks/results/teacher_diagnostics.csv")
    args = parser.parse_args()
    rows = []
    for name in args.tasks.split(","):
        rows += diagnose(name, [float(f) for f in args.fractions.split(",")],
                         [int(f) for f in args.folds.split(",")], args.data_dir, args.kernel_max_train)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    summary = table.groupby(["task", "fraction"])[["probe_structure", "probe_structure_kernel", "probe_formula_mean",
                                                   "probe_formula_mean_kernel", "composition_floor", "dummy",
                                                   "emb_variance_formula"]].mean()
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
