"""The classification table of docs/results.md: ROC-AUC per task, fraction and strategy, against the plain student.

Usage: python benchmarks/classification_table.py RUN_DIR [[LABEL=]RUN_DIR ...]
The first RUN_DIR holds the reference `baseline` runs; a strategy from a later directory given as LABEL=RUN_DIR is
shown as ``strategy (LABEL)`` (e.g. a baseline at another size: ``"cpu size=benchmarks/results/classification_cpu_size"``).
Changes are paired over the folds both ran (t-test p over folds), by the report's own summary.
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from matbench_ts.bench.report import load_classification_results, summarize_classification


def read_runs(specs: list[str]) -> pd.DataFrame:
    """The finished classification runs of each directory, a labelled directory's strategies renamed."""
    frames = []
    for i, spec in enumerate(specs):
        label, _, path = spec.rpartition("=")
        runs = load_classification_results(path)
        if i and label and len(runs):
            runs["strategy"] = runs["strategy"] + f" ({label})"
        frames.append(runs)
    return pd.concat(frames, ignore_index=True)


def table(results: pd.DataFrame) -> str:
    summary = summarize_classification(results)
    summary = summary.assign(is_base=summary["strategy"] != "baseline").sort_values(
        ["task", "fraction", "is_base", "strategy"])
    lines = ["| task | fraction | strategy | folds | ROC-AUC | change vs baseline (better folds, p) | balanced acc. | fit time |",
             "|---|---|---|---|---|---|---|---|"]
    for r in summary.itertuples():
        change = ""
        if r.strategy != "baseline" and r.folds_paired > 0:
            p = f", p = {r.p_paired:.2g}" if np.isfinite(r.p_paired) else ""
            change = f"{r.roc_auc_change:+.3f} ({r.folds_better:.0f}/{r.folds_paired:.0f}{p})"
        lines.append(f"| {r.task.removeprefix('matbench_')} | {r.fraction:g} | {r.strategy} | {r.n_runs} | "
                     f"{r.roc_auc_mean:.3f} ± {np.nan_to_num(r.roc_auc_std):.3f} | {change} | "
                     f"{r.balanced_accuracy_mean:.3f} | {r.fit_time_s:.0f} s |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", help="RUN_DIR or LABEL=RUN_DIR; the first holds the baseline")
    print(table(read_runs(parser.parse_args().run_dirs)))


if __name__ == "__main__":
    main()
