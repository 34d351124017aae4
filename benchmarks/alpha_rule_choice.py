"""Which measured rule ``alpha="auto"`` stands for, from the inner-validation study.

Reads the runs of ``bash benchmarks/evidence.sh alpha_rule`` (CrabNet cpu profile, CHGNet teacher,
``ts`` with ``alpha="auto-init"`` and with ``alpha="auto-step2"``, scored on 20 % of each training
fold: the test folds are not used) and prints a markdown table: per task and fraction, the MAE of
each rule, the change of auto-init against auto-step2 and the folds where auto-init was better.
The rule with the lower mean change over the cells is the default (decided before the runs).

    .venv/bin/python benchmarks/alpha_rule_choice.py benchmarks/results/alpha_rule > benchmarks/results/alpha_rule/choice.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

def load(study: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(study.glob("*/runs/**/*.json")):
        d = json.loads(path.read_text())
        if d.get("status") == "done":
            rows.append({"task": d["task"].removeprefix("matbench_"), "fraction": d["fraction"], "fold": d["fold"],
                         "rule": d["alpha_rule"], "mae": d["mae"], "alpha": d["alpha"], "scored_on": d["scored_on"]})
    return pd.DataFrame(rows)


def choice_table(runs: pd.DataFrame) -> tuple[str, str]:
    """The markdown table and the chosen rule."""
    paired = runs.pivot_table(index=["task", "fraction", "fold"], columns="rule", values=["mae", "alpha"]).dropna()
    paired["change"] = paired["mae"]["auto-init"] / paired["mae"]["auto-step2"] - 1
    lines = ["| task | fraction | folds | MAE auto-init (alpha) | MAE auto-step2 (alpha) | auto-init vs auto-step2 "
             "| folds auto-init better |", "|---|---|---|---|---|---|---|"]
    cells = []
    for (task, fraction), group in paired.groupby(level=["task", "fraction"]):
        change = group["change"].mean()
        cells.append(change)
        init, step2 = group["mae"]["auto-init"], group["mae"]["auto-step2"]
        lines.append(f"| {task} | {fraction:g} | {len(group)} | {init.mean():.4g} ({group['alpha']['auto-init'].mean():.2g}) "
                     f"| {step2.mean():.4g} ({group['alpha']['auto-step2'].mean():.2g}) | {100 * change:+.1f} % "
                     f"| {(init < step2).sum()}/{len(group)} |")
    mean_change = sum(cells) / len(cells)
    chosen = "auto-init" if mean_change < 0 else "auto-step2"
    lines += ["", f"Mean change over {len(cells)} cells: {100 * mean_change:+.2f} %; auto-init better in "
              f"{sum(c < 0 for c in cells)}/{len(cells)} cells and {(paired['change'] < 0).sum()}/{len(paired)} folds. "
              f"Chosen: `{chosen}`. Scored on: {', '.join(sorted(runs['scored_on'].unique()))}."]
    return "\n".join(lines), chosen


def main() -> None:
    study = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/alpha_rule")
    table, _ = choice_table(load(study))
    print(table)


if __name__ == "__main__":
    main()
