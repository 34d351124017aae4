"""Demo: plain student, teacher-student and pretrained students with 5% of the training data, on two Matbench tasks.

Runs offline on the rebuilt Matbench structure tasks in ``<data>/matbench_proxy`` (see the data
README): perovskites (formation energy; each formula has polymorphs of very different energy,
so a composition model is near its floor) and log_gvrh (shear modulus). CHGNet never learned
either target. Prints the MAE of each model per fold and on average, and saves parity plots.
The models (the first two with the same student and settings, so only the teacher differs):

- ``baseline``: the plain student, trained on the 5% rows with targets;
- ``ts``: teacher-student, steps 1 and 2 on those rows and their structures;
- ``pretrained``: the shipped student already aligned to CHGNet on Materials Project structures
  (``--pretrained``), fine-tuned on the 5% rows with their formulas only: no teacher, no structure.
  The default checkpoint is the leak-safe one, built without any formula of these tasks; it has
  the checkpoint's (CPU) size, not the demo's;
- ``pretrained_ts``: the same checkpoint guided by the teacher on the 5% rows and their
  structures: what ``TSRegressor(teacher="chgnet")`` does by default (from ``crabnet-chgnet-mp``,
  whose library holds these tasks' structures; the demo's checkpoint does not);
- ``ts_transfer``: step 1 on a larger set of structures *without targets* from the same
  training fold (``--library-size``), then step 2 on the 5% rows: the small-data case where
  structures are plentiful and labels are not. No test-fold structure is used.

    python -m matbench_ts.demo --data ../shared/data --out out/demo
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from . import TSRegressor  # noqa: E402
from .inputs import parse_structure  # noqa: E402

#: A CrabNet small enough for CPU, trained with crabnet's own recipe (the default); same settings
#: for the plain and the teacher-student models so only the teacher differs.
DEMO_SETTINGS = dict(
    student="crabnet",
    student_params=dict(d_model=64, N=2, heads=4, out_hidden=(128, 64), dim_feedforward=128, dropout=0.0),
    epochs=200,
    epochs_step1=100,
)
#: The pretrained student's settings: its sizes come from the checkpoint.
PRETRAINED_SETTINGS = {k: v for k, v in DEMO_SETTINGS.items() if k != "student_params"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("MATBENCH_TS_DATA", "../shared/data"),
                        help="offline data folder (default: $MATBENCH_TS_DATA or ../shared/data)")
    parser.add_argument("--tasks", default="matbench_perovskites,matbench_log_gvrh",
                        help="comma-separated task files in <data>/matbench_proxy")
    parser.add_argument("--fraction", type=float, default=0.05, help="share of each training fold used")
    parser.add_argument("--folds", default="0,1,2", help="comma-separated test folds")
    parser.add_argument("--teacher", default="chgnet")
    parser.add_argument("--out", default="out/demo", help="folder for the table, JSON and parity plot")
    parser.add_argument("--pretrained", default="crabnet-chgnet-mp2018-leaksafe",
                        help="checkpoint of the pretrained model (a shipped name or a .pt file; empty: skip it)")
    parser.add_argument("--library-size", type=int, default=0,
                        help="unlabelled training-fold structures for step 1 of ts_transfer (0: skip it)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_task(data: Path, task: str) -> pd.DataFrame:
    path = data / "matbench_proxy" / f"{task}.jsonl.gz"
    if not path.exists():
        raise SystemExit(f"{path} not found: pass --data pointing at the offline data folder")
    return pd.read_json(path, lines=True)


def run_fold(df: pd.DataFrame, fold: int, args: argparse.Namespace) -> dict:
    """Train the models on a seeded subsample of the training fold; score on the whole test fold."""
    pool = df[df.fold != fold]
    train = pool.sample(frac=args.fraction, random_state=args.seed)
    test = df[df.fold == fold]
    structures = [parse_structure(cif, i) for i, cif in enumerate(train.structure)]  # without pymatgen's CIF notices
    # (name, estimator parameters, fit keywords)
    runs = [("baseline", dict(teacher=None, **DEMO_SETTINGS), {}),
            ("ts", dict(teacher=args.teacher, **DEMO_SETTINGS), dict(structures=structures))]
    if args.pretrained:
        runs.append(("pretrained", dict(teacher=None, pretrained=args.pretrained, **PRETRAINED_SETTINGS), {}))
        runs.append(("pretrained_ts", dict(teacher=args.teacher, pretrained=args.pretrained, **PRETRAINED_SETTINGS),
                     dict(structures=structures)))
    if args.library_size > 0:
        library = pool.sample(n=min(args.library_size, len(pool)), random_state=args.seed + 1)
        runs.append(("ts_transfer", dict(teacher=args.teacher, **DEMO_SETTINGS),
                     dict(structures=structures,
                          pretrain_structures=[parse_structure(cif, i) for i, cif in enumerate(library.structure)])))
    result = {"fold": fold, "n_train": len(train), "n_test": len(test), "y_test": test.target.to_numpy()}
    for name, params, fit_kwargs in runs:
        start = time.perf_counter()
        model = TSRegressor(random_state=args.seed, verbose=0, **params)
        model.fit(train.composition.tolist(), train.target.to_numpy(), **fit_kwargs)
        pred = model.predict(test.composition.tolist())
        result[f"pred_{name}"] = pred
        result[f"mae_{name}"] = float(np.mean(np.abs(pred - test.target.to_numpy())))
        result[f"seconds_{name}"] = time.perf_counter() - start
        print(f"  fold {fold} {name:12s} MAE {result[f'mae_{name}']:.4f}  ({result[f'seconds_{name}']:.0f} s)", flush=True)
    return result


def model_names(results: list[dict]) -> list[str]:
    return [k[4:] for k in results[0] if k.startswith("mae_")]


def parity_plot(results: dict[str, list[dict]], path: Path) -> None:
    """One row of parity plots per task, one column per model."""
    names = model_names(next(iter(results.values())))
    fig, axes = plt.subplots(len(results), len(names), figsize=(4.2 * len(names), 4.0 * len(results)), squeeze=False)
    for row, (task, task_results) in zip(axes, results.items()):
        y = np.concatenate([r["y_test"] for r in task_results])
        for ax, name in zip(row, names):
            pred = np.concatenate([r[f"pred_{name}"] for r in task_results])
            ax.scatter(y, pred, s=3, alpha=0.3)
            lims = [min(y.min(), pred.min()), max(y.max(), pred.max())]
            ax.plot(lims, lims, "k--", lw=1)
            ax.set_title(f"{task.replace('matbench_', '')} {name}: MAE {np.mean(np.abs(pred - y)):.3f}", fontsize=10)
            ax.set_xlabel("true")
        row[0].set_ylabel("predicted")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folds = [int(f) for f in args.folds.split(",")]
    results, tables = {}, []
    for task in args.tasks.split(","):
        df = load_task(Path(args.data), task)
        print(f"{task}: {len(df)} rows; {args.fraction:.0%} of each training fold; teacher {args.teacher}", flush=True)
        results[task] = [run_fold(df, fold, args) for fold in folds]
        names = model_names(results[task])
        columns = ["fold", "n_train", "n_test"] + [f"mae_{n}" for n in names]
        table = pd.DataFrame([{k: r[k] for k in columns} for r in results[task]])
        table.insert(0, "task", task)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    for name in names[1:]:
        table[f"gain_{name}_%"] = 100 * (1 - table[f"mae_{name}"] / table.mae_baseline)
    print("\n" + table.to_string(index=False, float_format="%.4f"))
    print("\nmean MAE over folds:")
    print(table.groupby("task")[[f"mae_{n}" for n in names] + [f"gain_{n}_%" for n in names[1:]]].mean()
          .to_string(float_format="%.4f"))
    table.to_csv(out / "demo_mae.csv", index=False)
    (out / "demo_mae.json").write_text(json.dumps({"fraction": args.fraction, "teacher": args.teacher,
                                                   "library_size": args.library_size, "settings": DEMO_SETTINGS,
                                                   "pretrained": args.pretrained,
                                                   "folds": table.to_dict(orient="records")}, indent=2, default=str))
    parity_plot(results, out / "demo_parity.png")
    print(f"wrote {out / 'demo_mae.csv'} and {out / 'demo_parity.png'}")


if __name__ == "__main__":
    main()
