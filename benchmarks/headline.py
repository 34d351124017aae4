"""Headline tables of docs/results.md from a report's summary.csv (``matbench-ts report ... --out DIR``).

    .venv/bin/python benchmarks/headline.py docs/results/summary.csv

Per task, student, teacher and fraction: the baseline, every teacher strategy's MAE (mean ± std over
folds, relative change, folds where it beat the baseline, paired t-test p over folds), the teacher's
MAE, the reachable floor (max of composition floor and teacher MAE) and the fraction of the gap to it
that ``ts`` closed.
"""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

ORDER = ["ts", "ts-no-step1", "step1-only", "transfer", "transfer-fold"]


def cell(row: pd.Series) -> str:
    text = f"{row.mae_mean:.4g} ± {row.mae_std:.2g}"
    if np.isfinite(row.gain_vs_baseline):
        text += f" ({-100 * row.gain_vs_baseline:+.1f} %, {row.folds_better:.0f}/{row.folds_paired:.0f}"
        text += f", p={row.p_paired:.2g})" if np.isfinite(row.p_paired) else ")"
    return text


def headline(summary: pd.DataFrame) -> str:
    summary = summary[~summary["strategy"].str.contains("alpha=")]
    present = set(summary["strategy"])
    strategies = [s for s in ORDER if s in present] + sorted(s for s in present if s.startswith("transfer D1="))
    header = ["task", "student", "teacher", "fraction", "folds", "baseline", *strategies, "teacher MAE",
              "reachable floor", "ts: gap closed"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    base = summary[summary["strategy"] == "baseline"].set_index(["task", "student", "fraction"])
    others = summary[summary["strategy"] != "baseline"]
    for (task, student, teacher, fraction), g in others.groupby(["task", "student", "teacher", "fraction"]):
        g = g.set_index("strategy")
        b = base.loc[(task, student, fraction)] if (task, student, fraction) in base.index else None
        teacher_mae = g["teacher_mae"].mean()
        floor = max(g["composition_floor"].iloc[0], teacher_mae) if np.isfinite(teacher_mae) else np.nan
        leaky = " (LEAKY)" if g["leaky"].astype(str).eq("True").any() else ""
        runs = "/".join(sorted({str(int(n)) for n in g["n_runs"]}))
        gap = g.loc["ts", "gap_closed"] if "ts" in g.index else np.nan
        lines.append("| " + " | ".join([
            task.replace("matbench_", ""), student, teacher + leaky, f"{fraction:g}", runs,
            "" if b is None else f"{b.mae_mean:.4g} ± {b.mae_std:.2g}",
            *[cell(g.loc[s]) if s in g.index else "" for s in strategies],
            f"{teacher_mae:.4g}", f"{floor:.4g}", "" if not np.isfinite(gap) else f"{100 * gap:.0f} %",
        ]) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(headline(pd.read_csv(sys.argv[1] if len(sys.argv) > 1 else "docs/results/summary.csv")))
