"""Where does a composition student lose what the teacher knows? Probes after step 1.

Runs step 1 alone (the student learns to reproduce the frozen CHGNet embeddings from compositions) on
the unlabelled structures of the whole training fold or on an mp2018 sample, then fits the same
read-outs on the labelled rows of the fraction and scores the test fold:

* ``teacher``: ridge / RBF kernel ridge on the teacher's own embeddings (what the teacher knows);
* ``student``: the same read-outs on the student's embeddings of the compositions (what survived
  step 1), and ``emb_mse``: the mean squared error of the student's projected embedding against the
  teacher's standardised embedding on the test rows (the step-1 error on unseen compositions).

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/student_probe.py --task matbench_log_gvrh \\
        --fraction 0.05 --folds 0 --out benchmarks/results/student_probe.csv
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import pandas as pd
import torch
from matbench_ts import TSRegressor
from matbench_ts.bench.data import fraction_indices, load_task
from matbench_ts.bench.config import PRETRAIN_MAX, BenchConfig, estimator_kwargs
from matbench_ts.bench.runner import library_pretrain
from matbench_ts.bench.scores import ridge_probe
from matbench_ts.cache import TeacherCache
from teacher_diagnostics import kernel_probe, probe_mae


def step1_student(task, train, train_all, test, library: str | None, library_max: int) -> TSRegressor:
    """A cpu-profile CrabNet after step 1 only (step 2 is one epoch with a negligible target weight)."""
    kwargs = estimator_kwargs(BenchConfig(out="-", tasks=[task.name], profile="cpu"), "crabnet", "chgnet", "ts", 0)
    kwargs.update(epochs=1, alpha=1e6, verbose=0)
    if library:
        pretrain, _ = library_pretrain(library, library_max, 0, task.compositions(test))
    else:
        pretrain = [s for s in task.structures(train_all) if s is not None]
    return TSRegressor(**kwargs).fit(task.compositions(train), task.targets(train),
                                     structures=task.structures(train), pretrain_structures=pretrain)


def probe_fold(task, fold: int, fraction: float, library: str | None, library_max: int) -> dict:
    train_all, test = task.split(fold)
    train = train_all[fraction_indices(len(train_all), fraction, task=task.name, fold=fold, seed=0)]
    model = step1_student(task, train, train_all, test, library, library_max)
    y_train, y_test = task.targets(train), task.targets(test)
    student_train, student_test = model.transform(task.compositions(train)), model.transform(task.compositions(test))
    with TeacherCache() as cache:  # filled by the runs (matbench-ts embed)
        teacher_train, teacher_test = (
            cache.embeddings(model.teacher_id_, task.structures(rows), model.teacher_.transform) for rows in (train, test)
        )
    with torch.no_grad():
        projected = model.model_.projection(torch.tensor(student_test)).numpy()
    scaled_teacher = (teacher_test - model.teacher_mean_) / model.teacher_std_
    return dict(
        task=task.name, fold=fold, fraction=fraction,
        step1_data=f"library (max {library_max})" if library else "training fold",
        teacher_ridge=probe_mae(ridge_probe, teacher_train, y_train, teacher_test, y_test),
        teacher_kernel=probe_mae(kernel_probe, teacher_train, y_train, teacher_test, y_test),
        student_ridge=probe_mae(ridge_probe, student_train, y_train, student_test, y_test),
        student_kernel=probe_mae(kernel_probe, student_train, y_train, student_test, y_test),
        emb_mse=float(np.mean((projected - scaled_teacher) ** 2)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="matbench_log_gvrh")
    parser.add_argument("--fraction", type=float, default=0.05)
    parser.add_argument("--folds", default="0")
    parser.add_argument("--library", help="step 1 on this structure library instead of the training fold")
    parser.add_argument("--library-max", type=int, default=PRETRAIN_MAX, help="0: all of it")
    parser.add_argument("--out", default="benchmarks/results/student_probe.csv")
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = load_task(args.task, None)
    rows = [probe_fold(task, int(f), args.fraction, args.library, args.library_max) for f in args.folds.split(",")]
    table = pd.DataFrame(rows)
    print(table.round(4).to_string())
    table.to_csv(args.out, mode="a", header=not os.path.exists(args.out), index=False)


if __name__ == "__main__":
    main()
