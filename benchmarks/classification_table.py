"""The classification table of docs/results.md: ROC-AUC per task, fraction and strategy, against the plain student.

Usage: python benchmarks/classification_table.py RUN_DIR [[LABEL=]RUN_DIR ...]
The first RUN_DIR holds the reference `baseline` runs; a strategy from a later directory given as LABEL=RUN_DIR is
shown as ``strategy (LABEL)`` (e.g. a baseline at another size: ``"cpu size=benchmarks/results/classification_cpu_size"``).
Changes are paired over the folds both ran (t-test p over folds).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import ttest_rel


def read_runs(specs: list[str]) -> dict[tuple[str, float, str], dict[int, dict]]:
    """``{(task, fraction, label): {fold: run}}`` from the finished run files of each directory."""
    runs: dict[tuple[str, float, str], dict[int, dict]] = defaultdict(dict)
    for i, spec in enumerate(specs):
        label, _, path = spec.rpartition("=") if "=" in spec else ("", "", spec)
        for file in sorted(Path(path).glob("runs/*/*/*/*.json")):
            run = json.loads(file.read_text())
            if run.get("kind") != "classification":
                continue
            name = run["strategy"] if i == 0 or not label else f"{run['strategy']} ({label})"
            runs[(run["task"], run["fraction"], name)][run["fold"]] = run
    return runs


def table(runs: dict[tuple[str, float, str], dict[int, dict]]) -> str:
    lines = ["| task | fraction | strategy | folds | ROC-AUC | change vs baseline (better folds, p) | balanced acc. | fit time |",
             "|---|---|---|---|---|---|---|---|"]
    for task, fraction, name in sorted(runs, key=lambda k: (k[0], k[1], k[2] != "baseline", k[2])):
        by_fold = runs[(task, fraction, name)]
        auc = np.array([r["roc_auc"] for r in by_fold.values()])
        base = runs.get((task, fraction, "baseline"), {})
        common = sorted(set(by_fold) & set(base))
        change = ""
        if name != "baseline" and common:
            a = np.array([by_fold[f]["roc_auc"] for f in common])
            b = np.array([base[f]["roc_auc"] for f in common])
            p = f", p = {ttest_rel(a, b).pvalue:.2g}" if len(common) >= 3 and not np.allclose(a, b) else ""
            change = f"{np.mean(a - b):+.3f} ({int((a > b).sum())}/{len(common)}{p})"
        bacc = np.mean([r["balanced_accuracy"] for r in by_fold.values()])
        fit = np.mean([r["fit_time_s"] for r in by_fold.values()])
        lines.append(f"| {task.removeprefix('matbench_')} | {fraction:g} | {name} | {len(by_fold)} | "
                     f"{auc.mean():.3f} ± {auc.std():.3f} | {change} | {bacc:.3f} | {fit:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="RUN_DIR or LABEL=RUN_DIR; the first holds the baseline")
    print(table(read_runs(parser.parse_args().run_dirs)))


if __name__ == "__main__":
    main()
