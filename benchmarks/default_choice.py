"""Issue #11 item 5: does ``TSRegressor`` start from the shipped checkpoint by default? Decided on inner validation.

Reads the runs of ``bash benchmarks/pretrained.sh default_choice`` (20 % of each training fold held out and
scored: the test folds are not used) and prints a markdown table: per task and fraction, the two routes a
default would change, paired by fold:

* formulas only (``teacher=None``): the plain student (``baseline``) against the checkpoint fine-tuned
  (``pretrained``);
* with a teacher: ``ts`` against ``pretrained-ts``.

The rule, written before the runs: a route starts from the checkpoint by default when starting from it lowers
the inner-validation MAE on average over the cells (task x fraction) *and* no cell is worse by more than 5 %
(about the fold noise of the smallest tasks). Each route is decided on its own.

    .venv/bin/python benchmarks/default_choice.py benchmarks/results/pretrained/default_choice
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

ROUTES = {"formulas only": ("baseline", "pretrained"), "with a teacher": ("ts", "pretrained-ts")}
WORST_CELL = 0.05  # a route whose worst cell is worse than this keeps the plain student as its default


def load(study: Path) -> pd.DataFrame:
    rows = []
    for path in sorted(study.glob("*/runs/**/*.json")):
        d = json.loads(path.read_text())
        if d.get("status") == "done":
            if not d["scored_on"].startswith("inner validation"):
                raise SystemExit(f"{path}: scored on {d['scored_on']!r}, not on inner validation")
            rows.append({"task": d["task"].removeprefix("matbench_"), "fraction": d["fraction"], "fold": d["fold"],
                         "strategy": d["strategy"], "mae": d["mae"]})
    return pd.DataFrame(rows)


def route_table(runs: pd.DataFrame, route: str) -> list[str]:
    """Markdown lines of one route, ending with whether it starts from the checkpoint by default."""
    plain, start = ROUTES[route]
    mae = runs.pivot_table(index=["task", "fraction", "fold"], columns="strategy", values="mae")
    if not {plain, start} <= set(mae.columns):
        return [f"**{route}** (`{plain}` against `{start}`): no paired runs yet.", ""]
    paired = mae[[plain, start]].dropna()
    cells = (paired[start] / paired[plain] - 1).groupby(level=["task", "fraction"]).mean()
    lines = [f"**{route}** (`{plain}` against `{start}`):", "",
             f"| task | fraction | folds | MAE `{plain}` | MAE `{start}` | change | folds better |", "|---|---|---|---|---|---|---|"]
    for (task, fraction), group in paired.groupby(level=["task", "fraction"]):
        lines.append(f"| {task} | {fraction:g} | {len(group)} | {group[plain].mean():.4g} | {group[start].mean():.4g} "
                     f"| {100 * cells[(task, fraction)]:+.1f} % | {(group[start] < group[plain]).sum()}/{len(group)} |")
    chosen = bool(cells.mean() < 0 and cells.max() <= WORST_CELL)
    lines += ["", f"Mean change over {len(cells)} cells {100 * cells.mean():+.2f} %, better in {(cells < 0).sum()}/"
              f"{len(cells)} cells, worst cell {100 * cells.max():+.1f} % ({cells.idxmax()[0]} {cells.idxmax()[1]:g}): "
              + ("**start from the checkpoint by default**." if chosen else "**keep the plain student as the default**."),
              ""]
    return lines


def main() -> None:
    study = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/pretrained/default_choice")
    runs = load(study)
    if runs.empty:
        raise SystemExit(f"no finished runs under {study}")
    for route in ROUTES:
        print("\n".join(route_table(runs, route)))


if __name__ == "__main__":
    main()
