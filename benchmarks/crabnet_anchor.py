"""The anchor of the parity study (issue #14): the ``crabnet`` package's own ``CrabNet.fit`` on the
official Matbench folds, with its defaults (its recipe, 300 epochs), beside our student.

Each (task, fold) runs in its own process and working directory (crabnet's ``fit`` writes files
into the working directory and fails on a second call) and is stored as one JSON file as soon as it
finishes; a rerun skips finished folds. The validation split is crabnet's usual 10 % of the
training fold (seeded), which is what our estimator holds out too.

    MATMINER_DATA=../shared/data/matminer python benchmarks/crabnet_anchor.py \\
        --tasks matbench_steels,matbench_expt_gap --out benchmarks/results/parity/crabnet_anchor
    python benchmarks/crabnet_anchor.py ... --size cpu   # the harness's CPU size (large tasks)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CPU_SIZE = dict(d_model=128, N=2, heads=4, out_hidden=[256, 128, 64], dim_feedforward=256)


def fit_fold(task_name: str, fold: int, size: str, seed: int) -> dict:
    """crabnet's own fit and predict on one official fold (runs in the caller's cwd)."""
    import torch
    from crabnet.crabnet_ import CrabNet
    from sklearn.model_selection import train_test_split

    from matbench_ts.bench.data import load_task

    task = load_task(task_name, source="matbench")
    train, test = task.split(fold)
    frame = lambda idx: __import__("pandas").DataFrame(  # noqa: E731
        {"formula": [str(c) for c in task.compositions(idx)], "target": task.targets(idx)})
    tr, va = train_test_split(train, test_size=0.1, random_state=seed)
    model = CrabNet(**(CPU_SIZE if size == "cpu" else {}), verbose=False, losscurve=False, learningcurve=False,
                    save=False, random_state=seed, compute_device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    model.fit(frame(tr), frame(va))
    fit_s = time.perf_counter() - start
    pred, std = model.predict(frame(test), return_uncertainty=True)
    err = np.asarray(pred) - task.targets(test)
    return {"task": task_name, "fold": fold, "size": size, "seed": seed, "impl": "crabnet.CrabNet.fit",
            "mae": float(np.mean(np.abs(err))), "n_train": len(tr), "n_val": len(va), "n_test": len(test),
            "epochs_run": int(model.epoch + 1), "fit_time_s": fit_s, "mean_std": float(np.mean(std)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="matbench_steels,matbench_expt_gap")
    parser.add_argument("--folds", default="0,1,2,3,4")
    parser.add_argument("--size", choices=["published", "cpu"], default="published")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/parity/crabnet_anchor")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        task, fold = args.worker.rsplit(":", 1)
        print(json.dumps(fit_fold(task, int(fold), args.size, args.seed)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for task in args.tasks.split(","):
        for fold in map(int, args.folds.split(",")):
            path = out / f"{task}_{args.size}_fold{fold}_seed{args.seed}.json"
            if path.exists():
                continue
            with tempfile.TemporaryDirectory(prefix="crabnet_fit_") as cwd:
                proc = subprocess.run(
                    [sys.executable, str(Path(__file__).resolve()), "--worker", f"{task}:{fold}", "--size", args.size,
                     "--seed", str(args.seed)], cwd=cwd, capture_output=True, text=True,
                    env={**os.environ, "PYTHONWARNINGS": "ignore"})
            if proc.returncode != 0:
                print(f"{task} fold {fold} failed:\n{proc.stderr[-3000:]}", file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            path.write_text(json.dumps(result, indent=1))
            print(f"{task} fold {fold}: MAE {result['mae']:.4f} ({result['fit_time_s']:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
