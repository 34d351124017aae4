"""Issue #11's grid table of docs/results.md from a report's summary.csv: per task and fraction, the plain
student, ``ts`` and the pretrained strategies (MAE mean ± std over folds, change against the plain student,
folds better, paired p, as in headline.py), and the mean fit times of ``ts`` and ``pretrained``. CrabNet rows
are named by their task; another student's rows (Roost on the head tasks) add the student to the name.

    .venv/bin/python benchmarks/pretrained_table.py docs/results/pretrained/summary.csv
"""

from __future__ import annotations

import sys

import pandas as pd

from headline import cell

STRATEGIES = ["ts", "pretrained", "pretrained-ts"]


def fit_time(rows: pd.DataFrame, strategy: str) -> str:
    return f"{rows.loc[strategy, 'fit_time_s']:.0f} s" if strategy in rows.index else ""


def pretrained_table(summary: pd.DataFrame) -> str:
    summary = summary[summary["strategy"].isin(["baseline", *STRATEGIES])]
    header = ["task", "fraction", "folds", "plain student", *(f"`{s}`" for s in STRATEGIES),
              "fit time `ts`", "fit time `pretrained`"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = summary.assign(crabnet_last=summary["student"] != "crabnet")
    for (task, _, student, fraction), g in summary.groupby(["task", "crabnet_last", "student", "fraction"]):
        g = g.set_index("strategy")
        name = task.replace("matbench_", "") + ("" if student == "crabnet" else f" ({student.capitalize()})")
        if not g.index.isin(["pretrained", "pretrained-ts"]).any():
            continue
        base = g.loc["baseline"] if "baseline" in g.index else None
        runs = "/".join(sorted({str(int(n)) for n in g["n_runs"]}))
        lines.append("| " + " | ".join([
            name, f"{fraction:g}", runs,
            "" if base is None else f"{base.mae_mean:.4g} ± {base.mae_std:.2g}",
            *[cell(g.loc[s]) if s in g.index else "" for s in STRATEGIES],
            fit_time(g, "ts"), fit_time(g, "pretrained"),
        ]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(pretrained_table(pd.read_csv(sys.argv[1] if len(sys.argv) > 1 else "docs/results/pretrained/summary.csv")))
