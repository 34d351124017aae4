"""Small study: how alpha and step 1 change T-S at 5% of the training data.

CrabNet (the demo's size and settings) with the frozen CHGNet teacher on matbench_log_gvrh and
matbench_perovskites (proxy rows), test folds 1-3, 5% of each training fold, seed 0.
Writes benchmarks/results/alpha_step1_5pct.csv and prints a pivot table.

    OMP_WAIT_POLICY=PASSIVE .venv/bin/python benchmarks/alpha_step1_study.py [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import pandas as pd
from pymatgen.core import Structure

from matbench_ts import TSRegressor
from matbench_ts.demo import DEMO_SETTINGS

VARIANTS = {
    "base": dict(teacher=None),
    "ts-auto": {},
    "ts-a0.8": dict(alpha=0.8),
    "ts-a0.2": dict(alpha=0.2),
    "nostep1-auto": dict(epochs_step1=0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default=os.environ.get("MATBENCH_TS_DATA", "../shared/data"))
    parser.add_argument("--out", default="benchmarks/results/alpha_step1_5pct.csv")
    args = parser.parse_args()
    rows = []
    for task in ["matbench_log_gvrh", "matbench_perovskites"]:
        df = pd.read_json(Path(args.data) / "matbench_proxy" / f"{task}.jsonl.gz", lines=True)
        for fold in [1, 2, 3]:
            train = df[df.fold != fold].sample(frac=0.05, random_state=0)
            test = df[df.fold == fold]
            structures = [Structure.from_str(c, fmt="cif") for c in train.structure]
            for name, kw in VARIANTS.items():
                model = TSRegressor(**{**dict(teacher="chgnet", random_state=0, verbose=0), **DEMO_SETTINGS, **kw})
                model.fit(train.composition.tolist(), train.target.values, structures=structures)
                mae = float(np.abs(model.predict(test.composition.tolist()) - test.target).mean())
                rows.append(dict(task=task, fold=fold, variant=name, mae=mae, alpha=model.alpha_))
                print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(table.pivot_table(index=["task", "fold"], columns="variant", values="mae").to_string())


if __name__ == "__main__":
    main()
